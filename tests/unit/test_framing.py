"""Unit tests for pop3suite.proto.framing: command lines, CRLF, dot-stuffing, TOP.

The framing layer is where real servers break most often (byte-stuffing at
chunk boundaries, LIST sizes that disagree with RETR), so besides the
hand-picked cases these tests run Hypothesis over arbitrary bytes split into
arbitrary chunks.
"""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from pop3suite.proto.framing import (
    LINE_TOO_LONG,
    BodyReader,
    CrlfNormalizer,
    DotStuffer,
    LineBuffer,
    TopFilter,
    encode_body,
    wire_size,
)
from pop3suite.proto.limits import MAX_COMMAND_LINE

# ------------------------------------------------------------------ helpers


def drain(buffer: LineBuffer) -> list[object]:
    """Every line (or marker) the buffer can give right now."""
    out: list[object] = []
    while (line := buffer.next_line()) is not None:
        out.append(line)
    return out


def split(blob: bytes, cuts: list[int]) -> list[bytes]:
    """Split ``blob`` at the given cut points (taken modulo its length + 1).

    Repeated cut points yield empty chunks on purpose: feeding ``b""`` must be
    harmless everywhere.
    """
    points = sorted(c % (len(blob) + 1) for c in cuts)
    pieces, previous = [], 0
    for point in points:
        pieces.append(blob[previous:point])
        previous = point
    pieces.append(blob[previous:])
    return pieces


def normalise(message: bytes) -> bytes:
    """Reference CRLF normalisation: every LF not after a CR becomes CRLF, and a
    message that does not end in a line ending gets a final CRLF."""
    out = re.sub(rb"(?<!\r)\n", b"\r\n", message)
    if out and not out.endswith(b"\n"):
        out += b"\r\n"
    return out


def encode(chunks: list[bytes]) -> bytes:
    return b"".join(encode_body(chunks))


def top(message_chunks: list[bytes], lines: int) -> bytes:
    top_filter = TopFilter(lines)
    return b"".join(top_filter.feed(chunk) for chunk in message_chunks)


def top_oracle(message: bytes, lines: int) -> bytes:
    """RFC 1939 §7 TOP by hand: the header, the blank line, ``lines`` body lines."""
    if message.startswith(b"\r\n"):
        header_end = 2
    else:
        blank = message.find(b"\r\n\r\n")
        if blank < 0:
            return message
        header_end = blank + 4
    body = message[header_end:]
    end = 0
    for _ in range(lines):
        newline = body.find(b"\n", end)
        if newline < 0:
            return message
        end = newline + 1
    return message[: header_end + end]


# Messages built from the tokens that matter to framing, plus raw bytes.
TOKENS = [b".", b"..", b"\r", b"\n", b"\r\n", b".\r\n", b"\n.", b"a", b"+OK fake", b" "]
token_messages = st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join)
messages = st.one_of(token_messages, st.binary(max_size=200))
cut_lists = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)

# CRLF-normalised messages for TOP: lines joined with CRLF, blank lines likely.
LINE_TOKENS = [b"", b"", b"Subject: x", b"From: a@b", b"body", b".", b"..", b"a\rb"]
crlf_messages = st.lists(st.sampled_from(LINE_TOKENS), max_size=15).map(
    lambda lines: b"".join(line + b"\r\n" for line in lines)
)


# --------------------------------------------------------------- LineBuffer


def test_line_buffer_splits_crlf_lines():
    """Command lines end in CRLF (RFC 1939 §3); the CR is not part of the line."""
    buffer = LineBuffer()
    buffer.feed(b"STAT\r\nLIST 1\r\n")
    assert drain(buffer) == [b"STAT", b"LIST 1"]


def test_line_buffer_accepts_bare_lf():
    """A bare LF also ends a line (lenient like Dovecot), mixed with CRLF lines."""
    buffer = LineBuffer()
    buffer.feed(b"STAT\nLIST\r\nNOOP\n")
    assert drain(buffer) == [b"STAT", b"LIST", b"NOOP"]


def test_line_buffer_bare_cr_does_not_split():
    """A bare CR never ends a line: NOOP<CR>DELE 1<CRLF> is one malformed line, not two commands."""
    buffer = LineBuffer()
    buffer.feed(b"NOOP\rDELE 1\r\n")
    assert drain(buffer) == [b"NOOP\rDELE 1"]


def test_line_buffer_waits_for_complete_line():
    """A partial line stays buffered until its LF arrives, even with CR and LF in separate reads."""
    buffer = LineBuffer()
    buffer.feed(b"ST")
    assert buffer.next_line() is None
    buffer.feed(b"AT\r")
    assert buffer.next_line() is None
    buffer.feed(b"\n")
    assert buffer.next_line() == b"STAT"
    assert buffer.next_line() is None


def test_line_buffer_accepts_255_octets_including_crlf():
    """A command line of exactly 255 octets including CRLF is accepted (RFC 2449 §4)."""
    line = b"USER " + b"a" * (MAX_COMMAND_LINE - 2 - 5)
    assert len(line) + 2 == MAX_COMMAND_LINE
    whole = LineBuffer()
    whole.feed(line + b"\r\n")
    assert drain(whole) == [line]
    bytewise = LineBuffer()
    received = []
    for byte in line + b"\r\n":
        bytewise.feed(bytes([byte]))
        received += drain(bytewise)
    assert received == [line]


def test_line_buffer_accepts_255_octets_with_bare_lf():
    """A 254-octet line plus a bare LF is 255 octets with its terminator and is accepted (RFC 2449 §4)."""
    line = b"x" * (MAX_COMMAND_LINE - 1)
    bytewise = LineBuffer()
    received = []
    for byte in line + b"\n":
        bytewise.feed(bytes([byte]))
        received += drain(bytewise)
    assert received == [line]


def test_line_buffer_rejects_256_octets_including_crlf():
    """A 256-octet line (CRLF included) is one LINE_TOO_LONG (RFC 2449 §4); the next line parses."""
    line = b"x" * (MAX_COMMAND_LINE - 1)
    assert len(line) + 2 == MAX_COMMAND_LINE + 1
    whole = LineBuffer()
    whole.feed(line + b"\r\nNOOP\r\n")
    assert drain(whole) == [LINE_TOO_LONG, b"NOOP"]
    bytewise = LineBuffer()
    received = []
    for byte in line + b"\r\nNOOP\r\n":
        bytewise.feed(bytes([byte]))
        received += drain(bytewise)
    assert received == [LINE_TOO_LONG, b"NOOP"]


def test_line_buffer_huge_line_in_small_pieces_reported_once_with_bounded_memory():
    """A 1 MiB line fed in small pieces is one LINE_TOO_LONG and never buffers more than a line."""
    buffer = LineBuffer()
    piece = b"A" * 1000
    received: list[object] = []
    high_water = 0
    for _ in range(1024 * 1024 // len(piece) + 1):
        buffer.feed(piece)
        high_water = max(high_water, buffer.buffered)
        received += drain(buffer)
        high_water = max(high_water, buffer.buffered)
    assert received == [LINE_TOO_LONG]
    assert high_water <= MAX_COMMAND_LINE + len(piece)
    buffer.feed(b"AAAA\r\nNOOP\r\n")
    assert drain(buffer) == [b"NOOP"]


def test_line_buffer_huge_line_in_one_read():
    """A 1 MiB line arriving in one read is one LINE_TOO_LONG; the following line parses normally."""
    buffer = LineBuffer()
    buffer.feed(b"B" * (1024 * 1024) + b"\r\nSTAT\r\n")
    assert drain(buffer) == [LINE_TOO_LONG, b"STAT"]
    assert buffer.buffered == 0


def test_line_buffer_each_long_line_reported():
    """Two over-long lines in a row give two markers, one each, and normal lines around them survive."""
    buffer = LineBuffer(max_line=10)
    buffer.feed(b"OK1\r\n" + b"x" * 20 + b"\r\nOK2\r\n" + b"y" * 30)
    assert drain(buffer) == [b"OK1", LINE_TOO_LONG, b"OK2", LINE_TOO_LONG]
    buffer.feed(b"yyy\r\nOK3\r\n")
    assert drain(buffer) == [b"OK3"]


def test_line_buffer_discard_drops_everything_buffered():
    """discard() drops all buffered bytes (STLS: plaintext is never executed) and counts them."""
    buffer = LineBuffer()
    buffer.feed(b"CAPA\r\nNOOP\r\npart")
    assert buffer.discard() == len(b"CAPA\r\nNOOP\r\npart")
    assert buffer.next_line() is None
    assert buffer.buffered == 0
    buffer.feed(b"STAT\r\n")
    assert drain(buffer) == [b"STAT"]


def test_line_buffer_discard_ends_discarding_of_long_line():
    """discard() also ends the skipping of an unfinished over-long line, so the next stream starts clean."""
    buffer = LineBuffer(max_line=10)
    buffer.feed(b"z" * 50)
    assert drain(buffer) == [LINE_TOO_LONG]
    buffer.discard()
    buffer.feed(b"NOOP\r\n")
    assert drain(buffer) == [b"NOOP"]


# ------------------------------------------------- CrlfNormalizer / wire_size


def test_normalizer_bare_lf_becomes_crlf():
    """Stored bare-LF line endings go on the wire as CRLF (RFC 1939 §3), and the size counts the CRs."""
    normalizer = CrlfNormalizer()
    assert normalizer.feed(b"a\nb\n") == b"a\r\nb\r\n"
    assert normalizer.finish() == b""
    assert wire_size([b"a\nb\n"]) == 6


def test_normalizer_crlf_unchanged():
    """CRLF line endings pass unchanged and are counted once."""
    normalizer = CrlfNormalizer()
    assert normalizer.feed(b"a\r\nb\r\n") == b"a\r\nb\r\n"
    assert wire_size([b"a\r\nb\r\n"]) == 6


def test_normalizer_mixed_endings():
    """Mixed LF/CRLF storage normalises every line ending to CRLF; a lone CR is not a line ending."""
    normalizer = CrlfNormalizer()
    assert normalizer.feed(b"a\nb\r\nc\rd\n") == b"a\r\nb\r\nc\rd\r\n"
    assert wire_size([b"a\nb\r\nc\rd\n"]) == len(b"a\r\nb\r\nc\rd\r\n")


def test_normalizer_cr_at_chunk_end_lf_at_next_start():
    """A CR ending one chunk and an LF starting the next are one CRLF, not CR CR LF."""
    normalizer = CrlfNormalizer()
    out = normalizer.feed(b"a\r") + normalizer.feed(b"\nb\r") + normalizer.feed(b"") + normalizer.feed(b"\n")
    assert out == b"a\r\nb\r\n"
    assert wire_size([b"a\r", b"\nb\r", b"", b"\n"]) == 6


def test_wire_size_no_final_newline_adds_crlf():
    """A message without a final line ending is sent with one: 2 octets more (RFC 1939 §5, §11)."""
    normalizer = CrlfNormalizer()
    assert normalizer.feed(b"abc") == b"abc"
    assert normalizer.finish() == b"\r\n"
    assert normalizer.octets == 5
    assert wire_size([b"abc"]) == 5
    assert wire_size([b"a\nb"]) == 6


def test_wire_size_empty_message_is_zero():
    """An empty message has size 0 and needs no added line ending."""
    assert wire_size([]) == 0
    assert wire_size([b"", b""]) == 0
    assert CrlfNormalizer().finish() == b""


# ----------------------------------------------------- DotStuffer/encode_body


def test_stuffer_dot_at_line_start_is_doubled():
    """A line beginning with the termination octet is byte-stuffed (RFC 1939 §3)."""
    stuffer = DotStuffer()
    assert stuffer.feed(b"a\r\n.b\r\n") == b"a\r\n..b\r\n"
    assert stuffer.feed(b"c.d\r\n") == b"c.d\r\n"


def test_stuffer_dot_first_byte_of_chunk_after_lf():
    """A dot that is the first byte of a chunk after one ending in LF is stuffed (twisted's bug)."""
    stuffer = DotStuffer()
    assert stuffer.feed(b"a\r\n") == b"a\r\n"
    assert stuffer.feed(b".b\r\n") == b"..b\r\n"
    assert stuffer.feed(b"c") == b"c"
    assert stuffer.feed(b".d\r\n") == b".d\r\n"  # mid-line: not stuffed


def test_stuffer_message_starting_with_dot():
    """The very first line of a body is stuffed too when it begins with a dot."""
    assert DotStuffer().feed(b".x\r\n") == b"..x\r\n"
    assert encode([b".", b"x\n"]) == b"..x\r\n.\r\n"


def test_encode_body_line_that_is_only_a_dot():
    """A message line of only "." goes out as ".." so it cannot end the body early (RFC 1939 §3)."""
    assert encode([b"a\r\n.\r\nb\r\n"]) == b"a\r\n..\r\nb\r\n.\r\n"
    assert encode([b".\r\n"]) == b"..\r\n.\r\n"


def test_encode_body_leaves_fake_status_lines_alone():
    """Body lines that look like status lines ("+OK fake") are data and pass untouched."""
    assert encode([b"+OK fake\r\n-ERR fake\r\n"]) == b"+OK fake\r\n-ERR fake\r\n.\r\n"


def test_encode_body_terminator():
    """Every body ends with CRLF.CRLF: a missing final line ending is added, an empty body is just ".CRLF"."""
    assert encode([b"abc\r\n"]) == b"abc\r\n.\r\n"
    assert encode([b"abc"]) == b"abc\r\n.\r\n"
    assert encode([]) == b".\r\n"
    assert encode([b""]) == b".\r\n"
    assert DotStuffer().finish() == b".\r\n"
    stuffer = DotStuffer()
    stuffer.feed(b"abc")
    assert stuffer.finish() == b"\r\n.\r\n"


def test_encode_body_dot_after_bare_lf():
    """A dot after a stored bare LF starts a line and is stuffed, within a chunk and across chunks."""
    assert encode([b"a\n.b\n"]) == b"a\r\n..b\r\n.\r\n"
    assert encode([b"a\n", b".b"]) == b"a\r\n..b\r\n.\r\n"
    assert encode([b"a\r", b"\n.b"]) == b"a\r\n..b\r\n.\r\n"


@settings(max_examples=300, deadline=None)
@given(message=messages, store_cuts=cut_lists, read_cuts=cut_lists, trailer=st.binary(max_size=20))
@example(message=b"a\r\n.", store_cuts=[3], read_cuts=[4], trailer=b"+OK\r\n")
@example(message=b".\r\n", store_cuts=[], read_cuts=[1, 2], trailer=b"")
def test_encode_then_read_round_trip(message, store_cuts, read_cuts, trailer):
    """encode_body then BodyReader, over arbitrary chunks, give back the CRLF-normalised message."""
    chunks = split(message, store_cuts)
    wire = encode(chunks)
    # The terminator appears exactly once, at the very end (the body starts at a line start).
    assert (b"\r\n" + wire).find(b"\r\n.\r\n") == len(wire) - 3
    reader = BodyReader()
    body = b"".join(reader.feed(piece) for piece in split(wire + trailer, read_cuts))
    assert reader.finished
    assert body == normalise(message)
    assert reader.leftover == trailer
    assert reader.unstuffed_dot_lines == 0
    assert len(body) == wire_size(chunks) == wire_size([message])
    assert reader.octets == len(body)


# ---------------------------------------------------------------- TopFilter

MESSAGE = b"From: a@example.org\r\nSubject: s\r\n\r\nline1\r\nline2\r\nline3\r\n"
HEADER = b"From: a@example.org\r\nSubject: s\r\n\r\n"


def test_top_zero_lines_gives_header_and_blank_line():
    """TOP m 0 sends the header and the blank line only (RFC 1939 §7)."""
    assert top([MESSAGE], 0) == HEADER


def test_top_one_line():
    """TOP m 1 sends the header, the blank line and the first body line (RFC 1939 §7)."""
    assert top([MESSAGE], 1) == HEADER + b"line1\r\n"


def test_top_more_lines_than_body_gives_whole_message():
    """TOP m n with n larger than the body sends the entire message (RFC 1939 §7)."""
    assert top([MESSAGE], 3) == MESSAGE
    assert top([MESSAGE], 1000) == MESSAGE


def test_top_message_without_blank_line_passes_whole():
    """A message with no blank line is all header and passes whole."""
    message = b"From: a\r\nSubject: b\r\n"
    assert top([message], 0) == message
    assert top([message], 5) == message


def test_top_message_beginning_with_blank_line():
    """A message that starts with the blank line has an empty header: TOP 0 is just CRLF."""
    message = b"\r\nbody1\r\nbody2\r\n"
    assert top([message], 0) == b"\r\n"
    assert top([message], 1) == b"\r\nbody1\r\n"


def test_top_filter_stops_after_done():
    """Once the requested lines are out, TopFilter is done and passes nothing more."""
    top_filter = TopFilter(1)
    assert top_filter.feed(MESSAGE) == HEADER + b"line1\r\n"
    assert top_filter.done
    assert top_filter.feed(b"more\r\n") == b""


def test_top_filter_header_end_split_across_chunks():
    """The CRLFCRLF ending the header is found when it is split across chunks."""
    assert top([MESSAGE[:34], MESSAGE[34:35], MESSAGE[35:]], 0) == HEADER
    assert top([bytes([b]) for b in MESSAGE], 1) == HEADER + b"line1\r\n"


@settings(max_examples=300, deadline=None)
@given(message=crlf_messages, lines=st.integers(min_value=0, max_value=8), cuts=cut_lists)
@example(message=b"\r\nbody\r\n", lines=0, cuts=[1])
def test_top_filter_independent_of_chunking(message, lines, cuts):
    """TOP output depends only on the message, never on how storage chunks it (RFC 1939 §7)."""
    assert top(split(message, cuts), lines) == top([message], lines)


@settings(max_examples=200, deadline=None)
@given(message=crlf_messages, lines=st.integers(min_value=0, max_value=8))
def test_top_filter_matches_rfc_definition(message, lines):
    """TopFilter gives exactly the header, the blank line and the first n body lines (RFC 1939 §7)."""
    assert top([message], lines) == top_oracle(message, lines)


# --------------------------------------------------------------- BodyReader


def test_body_reader_undoes_stuffing_and_finds_terminator():
    """The client removes stuffing dots and stops at CRLF.CRLF, keeping what follows as leftover."""
    reader = BodyReader()
    assert reader.feed(b"a\r\n..b\r\n..\r\n.\r\n+OK next\r\n") == b"a\r\n.b\r\n.\r\n"
    assert reader.finished
    assert reader.leftover == b"+OK next\r\n"
    assert reader.unstuffed_dot_lines == 0
    assert reader.feed(b"-ERR x\r\n") == b""
    assert reader.leftover == b"+OK next\r\n-ERR x\r\n"


def test_body_reader_counts_unstuffed_dot_lines():
    """A line starting with a single non-stuffing dot (server forgot to stuff) is counted, not fatal."""
    reader = BodyReader()
    assert reader.feed(b"a\r\n.b\r\n.c\r\n.\r\n") == b"a\r\n.b\r\n.c\r\n"
    assert reader.finished
    assert reader.unstuffed_dot_lines == 2


def test_body_reader_counts_unstuffed_dot_across_chunks():
    """An unstuffed dot that arrives as the first byte of a chunk is counted once."""
    reader = BodyReader()
    body = b"".join(reader.feed(piece) for piece in [b"a\r\n", b".", b"b", b"\r\n.", b"\r", b"\n"])
    assert body == b"a\r\n.b\r\n"
    assert reader.finished
    assert reader.unstuffed_dot_lines == 1


def test_body_reader_stuffed_dot_split_across_chunks():
    """A stuffing dot split from its dot is removed; "." split from its CRLF is not an end."""
    reader = BodyReader()
    body = b"".join(reader.feed(piece) for piece in [b".", b".", b"\r", b"\nx\r\n", b".\r\n"])
    assert body == b".\r\nx\r\n"
    assert reader.finished
    assert reader.unstuffed_dot_lines == 0
