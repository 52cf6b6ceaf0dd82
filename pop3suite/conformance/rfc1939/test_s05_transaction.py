"""RFC 1939 §5 "The TRANSACTION State": STAT, LIST, RETR, DELE, NOOP, RSET."""

from __future__ import annotations

import pytest

from pop3suite.conformance.case import MUST, case, expect, expect_equal, expect_err, expect_ok, unimplemented
from pop3suite.conformance.helpers import expect_parses
from pop3suite.proto import listing_reply, parse_drop_listing, parse_scan_line
from pop3suite.target.fixtures import matches


@case(
    "rfc1939/5/stat-format",
    MUST,
    "1939",
    "5",
    'The positive response consists of "+OK" followed by a single space, the number of messages '
    "in the maildrop, a single space, and the size of the maildrop in octets.",
    ref="rfc1939/5/1",
)
def test_stat_format(pop, mode):
    """STAT answers ``+OK n size`` with single spaces and decimal numbers."""
    client = pop(mode)
    raw = client.command("STAT").raw
    expect_parses(
        lambda line: parse_drop_listing(listing_reply(line)),
        raw,
        "drop listing syntax",
        expected="+OK <count> <octets>",
    )


@case(
    "rfc1939/5/list-matches-stat",
    MUST,
    "1939",
    "5",
    "If no argument was given and the POP3 server issues a positive response, then the response "
    "given is multi-line. After the initial +OK, for each message in the maildrop, the POP3 server "
    "responds with a line containing information for that message.",
    ref="rfc1939/5/2",
)
def test_list_lists_every_message_and_agrees_with_stat(pop):
    """LIST has one ``n size`` line per message; the count and total agree with STAT."""
    client = pop()
    count, total = client.stat()
    sizes = client.list()
    expect_equal("LIST numbers are 1..n", expected=list(range(1, count + 1)), actual=sorted(sizes))
    expect_equal("LIST sizes add up to the STAT size", expected=total, actual=sum(sizes.values()))


@pytest.mark.parametrize(
    "name",
    [
        "dot-lines",
        "plus-ok",
        "bare-lf",
        "no-final-newline",
        "8bit",
        "utf8-headers",
        "empty-body",
        "1mb",
        "10mb",
    ],
)
@case(
    "rfc1939/5/retr-byte-exact",
    MUST,
    "1939",
    "5",
    "If the POP3 server issues a positive response, then the response given is multi-line. After "
    "the initial +OK, the POP3 server sends the message corresponding to the given message-number, "
    "being careful to byte-stuff the termination character (as with all multi-line responses).",
    ref="rfc1939/5/5",
    probes=["P10"],
)
def test_retr_returns_fixture_byte_exact(pop, mailbox, fixture_number, name):
    """RETR returns the stored message byte for byte, with every dot line stuffed."""
    client = pop()
    number = fixture_number(client, name)
    body = client.multiline(f"RETR {number}")
    fixture = mailbox.fixtures[name]
    expect(
        matches(body.data, fixture),
        f"RETR {number} ({name}) byte for byte",
        expected=fixture.wire,
        actual=body.data,
    )
    expect_equal("lines starting with '.' must be byte-stuffed", expected=0, actual=body.unstuffed_dot_lines)


@pytest.mark.parametrize("name", ["bare-lf", "no-final-newline", "dot-lines", "8bit"])
@case(
    "rfc1939/5/list-exact-size",
    MUST,
    "1939",
    "5, 11",
    "Note that the size of the message is the exact size (in octets) of the message [...] "
    "(the drop listing) [...] the number of octets in the message [...] counted with CRLF line ends.",
    ref="rfc1939/5/4",
)
def test_list_size_equals_retr_octets(pop, fixture_number, name):
    """``LIST n`` gives exactly the octets RETR sends, before byte-stuffing."""
    client = pop()
    number = fixture_number(client, name)
    _, listed = parse_scan_line(client.command(f"LIST {number}").text)
    body = client.multiline(f"RETR {number}")
    expect_equal(
        f"LIST {number} size equals RETR {number} octets ({name})", expected=len(body.data), actual=listed
    )


@case(
    "rfc1939/5/dele-marks-only",
    MUST,
    "1939",
    "5",
    "The POP3 server marks the message as deleted. Any future reference to the message-number "
    "associated with the message in a POP3 command generates an error. The POP3 server does not "
    "actually delete the message until the POP3 session enters the UPDATE state.",
    ref="rfc1939/5/6",
    probes=["P5"],
)
def test_dele_marks_and_later_references_fail(pop, target):
    """After ``DELE 1``: DELE 1, RETR 1 and LIST 1 fail; a dropped session removes nothing."""
    client = pop()
    count, _ = client.stat()
    if count == 0:
        unimplemented("maildrop is empty")
    # LIST, not UIDL: this MUST case needs no optional command (UID stability
    # is rfc1939/7's, asked for with need("UIDL")).
    listing_before = client.list()
    client.dele(1)
    for command in ("DELE 1", "RETR 1", "LIST 1"):
        response = client.command(command, check=False)
        expect_err(response, f"{command} after DELE 1")
    after_count, _ = client.stat()
    expect_equal("STAT excludes the deleted message", expected=count - 1, actual=after_count)
    client.close()  # no QUIT: nothing may be removed
    again = pop()
    expect_equal("message count after a session ended without QUIT", expected=count, actual=again.stat()[0])
    expect_equal(
        "same scan listing after a session ended without QUIT", expected=listing_before, actual=again.list()
    )


@case(
    "rfc1939/5/noop",
    MUST,
    "1939",
    "5",
    "The POP3 server does nothing, it merely replies with a positive response.",
    ref="rfc1939/5/7",
)
def test_noop(pop, mode):
    """NOOP in TRANSACTION gets ``+OK``."""
    response = pop(mode).command("NOOP", check=False)
    expect_ok(response, "NOOP")


@case(
    "rfc1939/5/rset-unmarks",
    MUST,
    "1939",
    "5",
    "If any messages have been marked as deleted by the POP3 server, they are unmarked.",
    ref="rfc1939/5/8",
    probes=["P5"],
)
def test_rset_unmarks_deleted_messages(pop):
    """DELE 1 and 2, RSET: STAT and LIST are back to the full maildrop."""
    client = pop()
    count, size = client.stat()
    for number in range(1, min(count, 2) + 1):
        client.dele(number)
    client.rset()
    expect_equal("STAT after RSET", expected=(count, size), actual=client.stat())
    expect_equal("LIST after RSET", expected=count, actual=len(client.list()))
