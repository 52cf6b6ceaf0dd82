"""RFC 1939 sessions over real sockets: every command, UPDATE semantics,
sizes, UIDs, pipelining and bad input.

Where the behaviour does not depend on the transport, one test body runs over
plain POP3, STLS and implicit TLS (the ``mode`` fixture).  Mail is either
delivered through the server's storage code (``deliver``) or written straight
into the Maildir (``put_raw``), the way other tools leave it: bare LF, mixed
line ends, no final newline and no ``,S=``/``,W=`` size fields.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from pop3suite.client import ConnectionClosed, Pop3Client
from pop3suite.proto import BodyReader, capability_map, parse_status_line
from tests.conftest import PASSWORD, login_when_free, open_client

MODES = ["plain", "stls", "implicit"]
UID_RE = re.compile(rb"[\x21-\x7e]{1,70}")
STAT_RE = re.compile(rb"\+OK (\d+) (\d+)\r\n")


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """The connection mode: plain POP3, STLS upgrade or implicit TLS."""
    return request.param


# ------------------------------------------------------------------ helpers


def wire(stored: bytes) -> bytes:
    """The CRLF form RETR must send for stored bytes (an independent oracle:
    every bare LF becomes CRLF, and a missing final line end is added)."""
    out = stored.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out


def maildir(lab, user: str = "alice") -> Path:
    return Path(lab.settings.mail_root) / user


def put_raw(lab, name: str, data: bytes, sub: str = "new", user: str = "alice") -> Path:
    """Write a message file directly into the Maildir, as another tool would."""
    path = maildir(lab, user) / sub / name
    path.write_bytes(data)
    return path


def stored_files(lab, user: str = "alice") -> list[str]:
    base = maildir(lab, user)
    return sorted(p.name for sub in ("new", "cur") for p in (base / sub).iterdir())


def login(pop: Pop3Client, user: str = "alice") -> Pop3Client:
    pop.login(user, PASSWORD)
    return pop


def assert_closed_by_server(pop: Pop3Client) -> None:
    """The server closes the connection and sends nothing more."""
    data = pop.read_until_close(5)
    assert data == b"", f"expected EOF, got {data!r}"


def reply(pop: Pop3Client, line: bytes):
    """Send one raw line (CRLF added) and parse the single status line."""
    pop.send_raw(line + b"\r\n")
    return pop.read_response()


MESSAGES = [
    b"From: a@example.test\r\nSubject: one\r\n\r\nfirst body\r\n",
    b"From: b@example.test\r\nSubject: two\r\n\r\n.\r\n..two dots\r\n.x\r\nend\r\n",
    b"From: c@example.test\r\nSubject: three\r\n\r\nline 1\r\nline 2\r\nline 3\r\n",
]


# ------------------------------------------------------------- login, QUIT


def test_user_pass_login_and_quit(mode, connect, deliver):
    """USER/PASS (a password with a space) logs in; QUIT answers +OK and closes (RFC 1939 §7, §6)."""
    deliver("alice", MESSAGES[0])
    pop = connect(mode, timeout=5)
    assert pop.greeting is not None and pop.greeting.ok
    assert " " in PASSWORD
    assert pop.user("alice").ok
    assert pop.pass_(PASSWORD).ok
    assert pop.noop().ok
    assert pop.command("QUIT").ok
    assert_closed_by_server(pop)


def test_password_prefix_or_missing_user_fails(mode, connect):
    """PASS takes the rest of the line: a prefix fails, PASS without USER fails (RFC 1939 §7)."""
    pop = connect(mode, timeout=5)
    assert not reply(pop, b"PASS " + PASSWORD.encode()).ok  # no USER yet
    pop.user("alice")
    bad = pop.pass_(PASSWORD.split(" ")[0], check=False)
    assert not bad.ok and bad.code == ("AUTH",)
    pop.user("alice")
    assert not pop.pass_(PASSWORD + " ", check=False).ok
    pop.user("alice")
    assert pop.pass_(PASSWORD).ok
    assert pop.stat() == (0, 0)


def test_keywords_are_case_insensitive(mode, connect, deliver):
    """Command keywords are case-insensitive (RFC 1939 §3)."""
    deliver("alice", MESSAGES[0])
    pop = connect(mode, timeout=5)
    assert reply(pop, b"user alice").ok
    assert reply(pop, b"pAsS " + PASSWORD.encode()).ok
    assert STAT_RE.fullmatch(reply(pop, b"stat").raw)
    assert pop.multiline(b"Capa").response.ok
    assert pop.multiline(b"retr 1").data == MESSAGES[0]


def test_quit_in_authorization_closes_without_update(mode, connect, deliver):
    """QUIT in AUTHORIZATION answers +OK, closes and removes nothing (RFC 1939 §4)."""
    deliver("alice", MESSAGES[0])
    pop = connect(mode, timeout=5)
    pop.user("alice")
    assert pop.command("QUIT").ok
    assert_closed_by_server(pop)
    again = login(connect(mode, timeout=5))
    assert again.stat()[0] == 1


# --------------------------------------------------- STAT, LIST, RETR, NOOP


def test_empty_maildrop(mode, connect):
    """An empty maildrop: STAT "+OK 0 0", LIST and UIDL an empty body (RFC 1939 §5, §7)."""
    pop = login(connect(mode, timeout=5))
    assert STAT_RE.fullmatch(pop.command("STAT").raw).groups() == (b"0", b"0")
    listing = pop.multiline("LIST")
    assert listing.response.ok and listing.data == b""
    uidl = pop.multiline("UIDL")
    assert uidl.response.ok and uidl.data == b""
    assert not pop.command("RETR 1", check=False).ok
    assert not pop.command("LIST 1", check=False).ok


def test_stat_list_retr_noop(mode, connect, deliver):
    """STAT "+OK n size", LIST/LIST n sizes, RETR byte for byte and dot-stuffed (RFC 1939 §5)."""
    for data in MESSAGES:
        deliver("alice", data)
    pop = login(connect(mode, timeout=5))
    count, total = (int(x) for x in STAT_RE.fullmatch(pop.command("STAT").raw).groups())
    assert (count, total) == (3, sum(len(m) for m in MESSAGES))
    assert pop.list() == {i: len(m) for i, m in enumerate(MESSAGES, 1)}
    for number, data in enumerate(MESSAGES, 1):
        assert pop.command(f"LIST {number}").raw == b"+OK %d %d\r\n" % (number, len(data))
        body = pop.multiline(f"RETR {number}")
        assert body.data == data
        assert body.unstuffed_dot_lines == 0  # every dot line arrived stuffed
    assert pop.noop().raw.startswith(b"+OK")
    assert not pop.command("RETR 4", check=False).ok
    assert not pop.command("LIST 4", check=False).ok


RAW_STORED = {
    "lf": b"Subject: lf\n\nbody line\n.dot line\n",
    "crlf": b"Subject: crlf\r\n\r\nbody line\r\n..two\r\n",
    "mixed": b"Subject: mixed\r\nX-A: 1\n\nline a\r\nline b\n.\nline c\r\n",
    "no-final-newline": b"Subject: nofinal\n\nlast line without newline",
    "header-only": b"Subject: header only\nX-B: 2\n",
}


def test_list_size_equals_retr_octets_for_stored_line_endings(mode, connect, lab):
    """LIST/STAT equal the octets RETR sends for LF, CRLF, mixed, unterminated mail (RFC 1939 §5, §11)."""
    for index, data in enumerate(RAW_STORED.values()):
        put_raw(lab, f"{1700000000 + index}.M{index}P1.test", data)
    pop = login(connect(mode, timeout=5))
    expected = [wire(data) for data in RAW_STORED.values()]
    assert pop.stat() == (len(expected), sum(len(e) for e in expected))
    sizes = pop.list()
    for number, want in enumerate(expected, 1):
        body = pop.multiline(f"RETR {number}")
        assert body.data == want
        assert sizes[number] == len(body.data) == len(want)
        assert body.response.text.split()[0] == str(len(want))


# ---------------------------------------------------------------------- TOP


TOP_MESSAGE = b"Subject: top\r\nX-Two: 2\r\n\r\n.first body line\r\nsecond\r\nthird\r\n"
TOP_HEADER = b"Subject: top\r\nX-Two: 2\r\n\r\n"


def test_top(mode, connect, deliver, lab):
    """TOP m 0: header and blank line; TOP m 1: one more line; huge n: whole message (RFC 1939 §7)."""
    deliver("alice", TOP_MESSAGE)
    put_raw(lab, "1.M1P1.lf", b"Subject: lf\n\nb1\nb2\n")  # sorts before the delivered one
    pop = login(connect(mode, timeout=5))
    assert pop.top(1, 0) == b"Subject: lf\r\n\r\n"
    assert pop.top(1, 1) == b"Subject: lf\r\n\r\nb1\r\n"
    assert pop.top(2, 0) == TOP_HEADER
    one = pop.multiline("TOP 2 1")
    assert one.data == TOP_HEADER + b".first body line\r\n"
    assert one.unstuffed_dot_lines == 0
    assert pop.top(2, 2) == TOP_HEADER + b".first body line\r\nsecond\r\n"
    assert pop.top(2, 99999999999999999999) == TOP_MESSAGE
    assert pop.top(2, 3) == TOP_MESSAGE
    assert not pop.command("TOP 3 0", check=False).ok
    assert pop.noop().ok


@pytest.mark.parametrize("shift", [0, 1, 2, 3, 4])
def test_top_when_header_end_straddles_storage_chunks(shift, connect, lab):
    """TOP finds the end of the header wherever the storage's 256 KiB read chunks split it (RFC 1939 §7)."""
    boundary = 256 * 1024
    head = b"Subject: big header\r\nX-Pad: "
    # place the CRLFCRLF that ends the header at boundary - shift
    pad = b"p" * (boundary - shift - len(head))
    header = head + pad + b"\r\n\r\n"
    message = header + b"body 1\r\nbody 2\r\n"
    put_raw(lab, "1700000000.M1P1.big", message)
    pop = login(connect("plain", timeout=5))
    assert pop.top(1, 0) == header
    assert pop.top(1, 1) == header + b"body 1\r\n"
    assert pop.retr(1) == message


CHUNK = 256 * 1024  # the storage's read size: the boundaries worth probing

#: (label, line end, offset of the dot line from the chunk boundary, CRLF-clean name)
DOT_AT_BOUNDARY = [
    ("crlf-clean-dot-first-in-chunk", b"\r\n", 0, True),
    ("crlf-clean-crlf-split", b"\r\n", 1, True),
    ("crlf-unnamed-crlf-split", b"\r\n", 1, False),
    ("lf-dot-first-in-chunk", b"\n", 0, False),
    ("lf-newline-last-in-chunk", b"\n", 1, False),
]


@pytest.mark.parametrize(
    ("label", "eol", "delta", "named"), DOT_AT_BOUNDARY, ids=[case[0] for case in DOT_AT_BOUNDARY]
)
def test_dot_line_at_storage_chunk_boundary_is_stuffed(label, eol, delta, named, connect, lab):
    """A dot line that starts at a storage read-chunk boundary is still byte-stuffed (RFC 1939 §3)."""
    head = b"Subject: boundary" + eol + eol
    filler = b"a" * (CHUNK + delta - len(head) - len(eol))
    data = head + filler + eol + b".dot" + eol + b"." + eol + b"after" + eol
    assert data.index(b".dot") == CHUNK + delta
    name = "1700000000.M1P1.dots"
    if named:
        name += f",S={len(data)},W={len(data)}"
    put_raw(lab, name, data)
    pop = login(connect("plain", timeout=5))
    body = pop.multiline("RETR 1")
    assert body.unstuffed_dot_lines == 0
    assert body.data == wire(data)
    assert pop.list() == {1: len(wire(data))}


# -------------------------------------------------------- DELE, RSET, UPDATE


def test_dele_marks_rset_unmarks_quit_removes_exactly_marked(mode, connect, deliver, lab):
    """DELE only marks, RSET unmarks, QUIT removes exactly the marked messages (RFC 1939 §5, §6)."""
    uids = [deliver("alice", b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)) for i in range(1, 5)]
    files_before = stored_files(lab)
    pop = login(connect(mode, timeout=5))
    assert pop.uidl() == dict(enumerate(uids, 1))
    assert pop.dele(2).ok
    assert stored_files(lab) == files_before  # marked, not removed
    for command in ("DELE 2", "RETR 2", "LIST 2", "TOP 2 0", "UIDL 2"):
        assert not pop.command(command, check=False).ok, command
    assert pop.stat()[0] == 3
    assert 2 not in pop.list() and 2 not in pop.uidl()
    assert pop.rset().ok
    assert pop.stat()[0] == 4
    assert pop.retr(2) == b"Subject: 2\r\n\r\nbody 2\r\n"
    assert pop.dele(1).ok and pop.dele(3).ok
    assert pop.stat() == (2, sum(len(b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i)) for i in (2, 4)))
    assert stored_files(lab) == files_before
    assert pop.command("QUIT").ok
    assert_closed_by_server(pop)
    after = login(connect(mode, timeout=5))
    assert sorted(after.uidl().values()) == sorted([uids[1], uids[3]])
    assert after.retr(1) == b"Subject: 2\r\n\r\nbody 2\r\n"
    assert after.retr(2) == b"Subject: 4\r\n\r\nbody 4\r\n"
    assert len(stored_files(lab)) == 2


# -------------------------------------------------------------------- UIDL


def test_uidl_format_stable_and_never_reused(mode, connect, deliver, lab):
    """UIDs: 1-70 octets in 0x21-0x7E, unique, stable, never reused after delete (RFC 1939 §7)."""
    put_raw(lab, "1700000000.M1P1.test", b"Subject: raw\n\nraw\n")
    put_raw(lab, "1700000001.M2P1." + "x" * 80, b"Subject: long name\n\nx\n")
    put_raw(lab, "1700000002.M3P1.caf\u00e9,S=3", b"Subject: non-ascii name\n\ny\n")
    deliver("alice", MESSAGES[0])
    deliver("alice", MESSAGES[1])
    pop = login(connect(mode, timeout=5))
    listing = pop.multiline("UIDL")
    first: dict[int, str] = {}
    for line in listing.lines():
        number, uid = line.split(b" ")
        assert UID_RE.fullmatch(uid), uid
        first[int(number)] = uid.decode()
    assert sorted(first) == [1, 2, 3, 4, 5]
    assert len(set(first.values())) == 5
    assert first[1] == "1700000000.M1P1.test"
    for number, uid in first.items():
        assert pop.command(f"UIDL {number}").raw == f"+OK {number} {uid}\r\n".encode()
    pop.close()  # no QUIT: the UIDs must persist anyway
    second = login_when_free(lambda: connect(mode, timeout=5))
    assert second.uidl() == first
    for number in first:
        second.dele(number)
    assert second.command("QUIT").ok
    new_uids = {deliver("alice", b"Subject: new %d\r\n\r\nx\r\n" % i) for i in range(5)}
    put_raw(lab, "1700000003.M4P1.test2", b"Subject: raw 2\n\nraw\n")
    third = login_when_free(lambda: connect(mode, timeout=5))
    seen = set(third.uidl().values())
    assert len(seen) == 6 and new_uids <= seen
    assert not seen & set(first.values()), "a UID was reused"


def test_uid_unchanged_when_moved_to_cur_with_flags(mode, connect, lab):
    """A message moved from new/ to cur/ with ":2,S" appended keeps its UID (RFC 1939 §7: UIDs persist)."""
    path = put_raw(lab, "1700000000.M1P1.test", b"Subject: move\n\nbody\n")
    put_raw(lab, "1700000001.M2P1.test,S=22,W=22", b"Subject: two\r\n\r\nbody\r\n")
    pop = login(connect(mode, timeout=5))
    before = pop.uidl()
    assert pop.command("QUIT").ok
    path.rename(maildir(lab) / "cur" / (path.name + ":2,S"))
    second = maildir(lab) / "new" / "1700000001.M2P1.test,S=22,W=22"
    second.rename(maildir(lab) / "cur" / (second.name + ":2,RS"))
    again = login_when_free(lambda: connect(mode, timeout=5))
    assert again.uidl() == before
    assert again.retr(1) == b"Subject: move\r\n\r\nbody\r\n"
    assert again.retr(2) == b"Subject: two\r\n\r\nbody\r\n"


def test_message_moved_during_session_is_still_served_and_deleted(connect, lab):
    """A message moved to cur/ mid-session is still served and removed at UPDATE (RFC 1939 §6)."""
    path = put_raw(lab, "1700000000.M1P1.test", b"Subject: move\n\nbody\n")
    put_raw(lab, "1700000001.M2P1.test", b"Subject: stay\n\nbody\n")
    pop = login(connect("plain", timeout=5))
    uids = pop.uidl()
    path.rename(maildir(lab) / "cur" / (path.name + ":2,S"))
    assert pop.retr(1) == b"Subject: move\r\n\r\nbody\r\n"
    assert pop.dele(1).ok
    assert pop.command("QUIT").ok
    assert stored_files(lab) == ["1700000001.M2P1.test"]
    again = login_when_free(lambda: connect("plain", timeout=5))
    assert again.uidl() == {1: uids[2]}


REQUIRED_CAPS = {"RESP-CODES", "PIPELINING", "TOP", "UIDL", "USER", "IMPLEMENTATION"}


def _tags(capa: list[str]) -> dict[str, list[str]]:
    return capability_map(capa)


def test_capa_lists_required_capabilities_in_both_states(mode, connect):
    """CAPA works in both states and lists the required capabilities (RFC 2449 §5, §6)."""
    pop = connect(mode, timeout=5)
    before = _tags(pop.capa())
    assert set(before) >= REQUIRED_CAPS
    assert before["IMPLEMENTATION"]
    login(pop)
    after = _tags(pop.capa())
    assert set(after) >= REQUIRED_CAPS
    # RFC 2449 §5: what AUTHORIZATION offers is announced in both states
    # (STLS aside: RFC 2595 §4 allows it only before login).
    assert set(before) - {"STLS"} <= set(after)
    assert "STLS" not in after


def test_every_advertised_capability_works(mode, connect, deliver):
    """Every capability CAPA advertises actually works (RFC 2449 §5-6, RFC 2595 §4, RFC 5034)."""
    deliver("alice", MESSAGES[1])
    pop = connect(mode, timeout=5)
    tags = _tags(pop.capa())
    checked = set()
    if "RESP-CODES" in tags or "AUTH-RESP-CODE" in tags:
        pop.user("alice")
        failed = pop.pass_("wrong", check=False)
        assert not failed.ok and failed.code == ("AUTH",)
        checked |= {"RESP-CODES", "AUTH-RESP-CODE"}
    if "SASL" in tags:
        mechanisms = tags["SASL"]
        assert mechanisms == ["PLAIN"], f"no probe for SASL mechanisms {mechanisms}"
        other = connect(mode, timeout=5)
        assert other.auth_plain("bob", PASSWORD).ok
        assert other.stat() == (0, 0)
        checked.add("SASL")
    if "STLS" in tags:
        assert mode == "plain", "STLS advertised although TLS is active"
        upgraded = connect("stls", timeout=5)
        assert upgraded.tls_active
        assert "STLS" not in _tags(upgraded.capa())
        checked.add("STLS")
    assert "USER" in tags
    assert pop.user("alice").ok and pop.pass_(PASSWORD).ok
    checked.add("USER")
    if "TOP" in tags:
        assert pop.top(1, 0) == b"From: b@example.test\r\nSubject: two\r\n\r\n"
        checked.add("TOP")
    if "UIDL" in tags:
        assert UID_RE.fullmatch(pop.uidl()[1].encode())
        checked.add("UIDL")
    if "PIPELINING" in tags:
        pop.send_raw(b"NOOP\r\nSTAT\r\nNOOP\r\n")
        assert [pop.read_response().ok for _ in range(3)] == [True, True, True]
        checked.add("PIPELINING")
    checked.add("IMPLEMENTATION")
    unprobed = set(tags) - checked
    assert not unprobed, f"advertised but not probed (add a probe): {sorted(unprobed)}"


# --------------------------------------------------------------- pipelining


def test_pipelined_commands_answered_in_order(mode, connect, deliver):
    """Commands sent in one write are answered completely and in order (RFC 2449 §6.6)."""
    ordered = [MESSAGES[1], MESSAGES[0], MESSAGES[2]]  # message 1 has dot lines
    for data in ordered:
        deliver("alice", data)
    pop = connect(mode, timeout=5)
    assert pop.sock is not None
    pop.sock.sendall(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
    pop.sock.sendall(b"STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nNOOP\r\n")
    replies: list[bytes] = []
    reader = BodyReader()
    buffer = b""
    expected_multiline = [False, False, False, True, True, True, False]
    index = 0
    while index < len(expected_multiline):
        end = buffer.find(b"\r\n")
        if end < 0:
            chunk = pop.sock.recv(65536)
            assert chunk, "server closed mid-pipeline"
            buffer += chunk
            continue
        status = parse_status_line(buffer[: end + 2])
        buffer = buffer[end + 2 :]
        assert status.ok, status.raw
        body = b""
        if expected_multiline[index]:
            reader = BodyReader()
            body = reader.feed(buffer)
            while not reader.finished:
                chunk = pop.sock.recv(65536)
                assert chunk
                body += reader.feed(chunk)
            buffer = reader.leftover
        replies.append(body if expected_multiline[index] else status.raw)
        index += 1
    assert buffer == b""
    stat = STAT_RE.fullmatch(replies[2])
    assert stat and stat.groups() == (b"3", str(sum(len(m) for m in MESSAGES)).encode())
    assert replies[3] == b"".join(b"%d %d\r\n" % (i, len(m)) for i, m in enumerate(ordered, 1))
    assert len(replies[4].split(b"\r\n")) == 4
    assert replies[5] == ordered[0]
    assert replies[6].startswith(b"+OK")


def test_long_pipelined_burst(mode, connect, deliver):
    """A burst of 1000 pipelined commands in one write gets exactly 1000 replies, in order (RFC 2449 §6.6)."""
    deliver("alice", MESSAGES[0])
    pop = login(connect(mode, timeout=5))
    commands = [b"NOOP" if i % 2 else b"LIST 1" for i in range(1000)]
    pop.send_raw(b"".join(c + b"\r\n" for c in commands))
    for command in commands:
        response = pop.read_response()
        assert response.ok
        if command == b"LIST 1":
            assert response.raw == b"+OK 1 %d\r\n" % len(MESSAGES[0])
    assert pop.stat() == (1, len(MESSAGES[0]))


# ------------------------------------------------------------- bad input


def _bad_number_commands() -> list[bytes]:
    numbers = [b"0", b"-1", b"1.5", b"0x1", b"4294967296", b"99999999999999999999", b"1 junk", b"", b" 1"]
    lines = []
    for number in numbers:
        for keyword in (b"RETR", b"LIST", b"DELE", b"UIDL"):
            lines.append(keyword + b" " + number)
        lines.append(b"TOP " + number + b" 0")
    return lines


BAD_IN_TRANSACTION = [
    # unknown commands
    b"FOO",
    b"XYZZY 1",
    b"RETRX 1",
    b"STATS",
    b"%s%n%x%p",
    # missing arguments
    b"RETR",
    b"DELE",
    b"TOP",
    b"TOP 1",
    # extra arguments
    b"STAT 1",
    b"NOOP x",
    b"RSET 1",
    b"QUIT now",
    b"LIST 1 2",
    b"UIDL 1 2",
    b"RETR 1 2",
    b"DELE 1 2",
    b"TOP 1 2 3",
    b"TOP 1 -1",
    b"TOP 1 x",
    b"CAPA x",
    # wrong state
    b"USER alice",
    b"PASS " + PASSWORD.encode(),
    b"APOP carol 0123456789abcdef0123456789abcdef",
    b"AUTH PLAIN AGFsaWNlAHMzY3JldCBwYXNz",
    b"STLS",
    # control characters
    b"NOOP\rDELE 1",
    b"DELE\x001",
    b"LIST\t1",
    b"RETR \xff",
    b"\xc3\xa9",
    b"",
    b" ",
    *_bad_number_commands(),
]

BAD_IN_AUTHORIZATION = [
    b"STAT",
    b"LIST",
    b"RETR 1",
    b"DELE 1",
    b"NOOP",
    b"RSET",
    b"TOP 1 0",
    b"UIDL",
    b"PASS x",
    b"FOO",
    b"USER",
    b"USER ",
    b"APOP",
    b"AUTH PLAIN =",
    b"QUIT now",
    b"",
    # 8-bit bytes where ASCII or UTF-8 is expected
    b"AUTH \xff",
    b"AUTH \xc3\xa9 x",
    b"AUTH PLAIN \xff\xfe",
    b"USER \xff",
    b"APOP \xff 00",
    b"\xff\xfe",
]


def test_bad_input_in_transaction_gets_err_and_session_survives(mode, server_factory, tls_context, deliver):
    """Every bad command after login gets one -ERR; the session survives, nothing marked (RFC 1939 §3)."""
    running = server_factory(max_bad_commands=1000)
    for data in MESSAGES:
        deliver("alice", data)
    pop = login(open_client(running, mode, tls_context))
    for line in BAD_IN_TRANSACTION:
        response = reply(pop, line)
        assert not response.ok, f"{line!r} got {response.raw!r}"
        assert response.raw.endswith(b"\r\n") and len(response.raw) <= 512
        assert pop.noop().ok, line
    assert pop.stat() == (3, sum(len(m) for m in MESSAGES))
    assert pop.command("QUIT").ok
    again = login(open_client(running, mode, tls_context))
    assert again.stat()[0] == 3


def test_bad_input_in_authorization_gets_err_and_login_still_works(
    mode, server_factory, tls_context, deliver
):
    """Every bad command before login gets one -ERR; login still works afterwards (RFC 1939 §3, §4)."""
    running = server_factory(max_bad_commands=1000)
    deliver("alice", MESSAGES[0])
    pop = open_client(running, mode, tls_context)
    for line in BAD_IN_AUTHORIZATION:
        response = reply(pop, line)
        assert not response.ok, f"{line!r} got {response.raw!r}"
        assert pop.multiline("CAPA").response.ok, line
    login(pop)
    assert pop.noop().ok
    assert pop.stat() == (1, len(MESSAGES[0]))


def test_over_long_lines_get_err_and_session_survives(mode, server_factory, tls_context, deliver):
    """Lines of 300 B, 8 KiB and 1 MiB get one -ERR each and the session survives (RFC 2449 §4)."""
    running = server_factory(max_bad_commands=1000)
    deliver("alice", MESSAGES[0])
    pop = open_client(running, mode, tls_context)
    too_long = reply(pop, b"USER " + b"a" * 293)  # 300 octets with CRLF
    assert not too_long.ok
    login(pop)
    for size in (300, 8 * 1024):
        response = reply(pop, b"X" * (size - 2))
        assert not response.ok, size
        assert pop.noop().ok
    piece = b"L" * (64 * 1024)
    for _ in range(16):  # 1 MiB without a line end yet
        pop.send_raw(piece)
    pop.send_raw(b"\r\n")
    assert not pop.read_response().ok
    assert pop.noop().ok
    assert pop.retr(1) == MESSAGES[0]


def test_255_octet_command_accepted(mode, connect):
    """A command line of exactly 255 octets including CRLF is accepted (RFC 2449 §4)."""
    pop = connect(mode, timeout=5)
    line = b"USER " + b"a" * 248
    assert len(line) + 2 == 255
    response = reply(pop, line)
    assert response.ok, response.raw
    assert not pop.pass_(PASSWORD, check=False).ok  # no such user
    login(pop)


def test_nul_and_tab_in_credentials_rejected(mode, connect):
    """NUL or TAB in USER/PASS is rejected, never truncated to a valid login (RFC 1939 §3, CVE-2019-11500)."""
    pop = connect(mode, timeout=5)
    assert not reply(pop, b"USER alice\x00bob").ok
    assert not reply(pop, b"PASS " + PASSWORD.encode()).ok  # the NUL USER set no user
    assert not reply(pop, b"USER alice\tbob").ok
    assert not reply(pop, b"USER \x00alice").ok
    assert not reply(pop, b"PASS " + PASSWORD.encode()).ok
    assert pop.user("alice").ok
    assert not reply(pop, b"PASS " + PASSWORD.encode() + b"\x00junk").ok
    pop.user("alice")
    assert not reply(pop, b"PASS x\tmaster_user=root\tskip_password_check=1").ok
    pop.user("alice")
    assert not reply(pop, b"PASS \x00" + PASSWORD.encode()).ok
    login(pop)
    assert pop.noop().ok


def test_transaction_ends_at_eof_after_quit_reply(connect):
    """Commands pipelined after QUIT get no reply: the session ends with the QUIT reply (RFC 1939 §6)."""
    pop = login(connect("plain", timeout=5))
    pop.send_raw(b"QUIT\r\nNOOP\r\n")
    assert pop.read_response().ok
    with pytest.raises((ConnectionClosed, ConnectionResetError, socket.timeout)):
        pop.read_response()
