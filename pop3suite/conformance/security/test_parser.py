"""§3.3 parser, framing and resource probes not already in the suite.

P1 is rfc2449/4/command-255-octets, P5 rfc1939/5/dele-marks-only +
rfc1939/5/rset-unmarks, P6 rfc1939/3/wrong-state, P8 rfc2449/6.6/pipelining-in-order,
P10 rfc1939/5/retr-byte-exact (with the fixture messages), P11 rfc1939/7/uidl-*,
the plain 512-octet rule of P12 rfc2449/4/first-line-512-octets.
"""

from __future__ import annotations

import contextlib
import re

from pop3suite.client import Pop3Client
from pop3suite.conformance.case import (
    INFO,
    MUST,
    SHOULD,
    CaseFailure,
    case,
    expect,
    expect_err,
    observe,
    unimplemented,
)
from pop3suite.conformance.helpers import SERVER_CLOSED, login_when_unlocked, reply_unless_closed
from pop3suite.proto import Response, listing_reply, parse_drop_listing, parse_status_line
from pop3suite.proto.errors import MalformedResponse

from .probe import rss, server_pid

SIZES = {"8KiB": 8 * 1024, "64KiB": 64 * 1024, "1MiB": 1024 * 1024}


def _send_long_line(client: Pop3Client, size: int, crlf: bool, what: str) -> Response | None:
    """Send a ``size``-octet line (CRLF optional; without it, CRLF follows
    separately): the reply, or None if the server closed (:data:`SERVER_CLOSED`:
    EOF, reset, broken pipe: a server may close while we are still sending).

    Raises:
        CaseFailure: the server answered with something that is not a status line.
    """
    line = b""
    try:
        client.send_raw(b"NOOP " + b"A" * (size - 7) + (b"\r\n" if crlf else b""))
        if not crlf:
            client.send_raw(b"\r\n")
        line = client.read_line()
        return parse_status_line(line)
    except SERVER_CLOSED:
        return None
    except MalformedResponse as error:
        if len(line) > 2048:  # as the transcript shows it
            line = line[:2048] + b"...[%d octets]" % len(line)
        actual = repr(line) if line else str(error)
        raise CaseFailure(f"{what}: the reply", "+OK or -ERR status line, or a close", actual) from None


@case(
    "security/P2-long-lines",
    MUST,
    "2449",
    "4 (qpopper CVE-1999-0006, CVE-2001-1046, CVE-2000-0096)",
    "8 KiB, 64 KiB and 1 MiB command lines, with and without CRLF, in AUTHORIZATION and TRANSACTION, "
    "get -ERR and/or a close; the server's memory stays bounded and it stays alive.",
    ref="security-probes/3.3/P2",
    probes=["P2"],
)
def test_long_lines_are_refused(pop, target, request):
    """8 KiB-1 MiB command lines get a -ERR status line or a close; memory stays bounded."""
    pid = server_pid(target) if target.embedded else None
    before = rss(pid) if pid else 0
    for state in ("AUTHORIZATION", "TRANSACTION"):
        for label, size in SIZES.items():
            for crlf in (True, False):
                client = login_when_unlocked(pop, target) if state == "TRANSACTION" else pop(login=False)
                what = f"{label} line {'with' if crlf else 'without'} CRLF in {state}"
                reply = _send_long_line(client, size, crlf, what)
                expect(
                    reply is None or not reply.ok,
                    what,
                    expected="-ERR or close",
                    actual=reply.raw if reply else b"",
                )
                client.close()
    if pid:
        grown = rss(pid) - before
        observe(request, f"server RSS grew {grown / 2**20:.1f} MiB")
        expect(
            grown < 64 * 2**20,
            "server memory after the long lines",
            expected="< 64 MiB growth",
            actual=f"{grown / 2**20:.0f} MiB",
        )


FORMAT = "%s%n%x%p%s%n"
LEAK = re.compile(rb"\(nil\)|0x[0-9a-fA-F]{6,}")


def _check_reply(raw: bytes, what: str) -> None:
    expect(raw.startswith((b"+OK", b"-ERR")), what, expected="+OK or -ERR", actual=raw)
    expect(len(raw) <= 512, f"{what}: length", expected="<= 512 octets", actual=len(raw))
    expect(not LEAK.search(raw), f"{what}: no memory contents echoed", expected="literal text", actual=raw)


@case(
    "security/P3-format-strings",
    MUST,
    "1939",
    "3 (Courier-IMAP BID 10976; qpopper CVE-2003-0143)",
    "Format strings (%s%n%x%p) in every argument are handled literally: no crash and no memory "
    "contents in the replies.",
    ref="security-probes/3.3/P3",
    probes=["P3"],
)
def test_format_strings_are_literal(pop, target):
    """Format strings in arguments are taken literally: no crash, no memory in replies."""
    client = pop(login=False)
    for line in (
        f"USER {FORMAT}",
        f"PASS {FORMAT}",
        f"APOP {FORMAT} {FORMAT}",
        f"AUTH {FORMAT}",
        f"X{FORMAT}",
    ):
        reply = reply_unless_closed(client, line)
        if reply is None:
            client = pop(login=False)
            continue
        _check_reply(reply.raw, line)
    client = login_when_unlocked(pop, target)
    for line in (
        f"RETR {FORMAT}",
        f"LIST {FORMAT}",
        f"DELE {FORMAT}",
        f"TOP {FORMAT} {FORMAT}",
        f"UIDL {FORMAT}",
    ):
        reply = reply_unless_closed(client, line)
        expect(reply is not None, f"{line}: still connected", expected="a reply", actual="closed")
        _check_reply(reply.raw, line)
        expect_err(reply, line)


BAD_NUMBERS = [
    "0",
    "-1",
    "1.5",
    "0x1",
    "+1",
    "4294967296",
    "4294967297",
    "99999999999999999999",
    "1 junk",
    " 1",
    "1 ",
]


@case(
    "security/P4-message-number-forms",
    MUST,
    "1939",
    "5, 7 (Cassandane test_top_args)",
    "Message numbers 0, -1, 1.5, 0x1, +1, 2^32, 2^32+1, 20 digits, '1 junk', ' 1' for RETR/LIST/DELE/"
    "TOP/UIDL, TOP 1 -1 and TOP with 0 or 3 arguments get -ERR, with no wraparound into a real "
    "message and no deletion mark.",
    ref="security-probes/3.3/P4",
    probes=["P4"],
)
def test_malformed_message_numbers_are_refused(pop, target):
    """Malformed message numbers get -ERR, with no wraparound and no deletion."""
    client = login_when_unlocked(pop, target)
    count, _size = client.stat()
    lines = []
    for number in BAD_NUMBERS:
        lines += [f"RETR {number}", f"LIST {number}", f"DELE {number}", f"UIDL {number}", f"TOP {number} 0"]
    lines += ["TOP 1 -1", "TOP 1 x", "TOP", "TOP 1", "TOP 1 0 0"]
    for line in lines:
        try:
            reply = client.command(line, check=False)
        except SERVER_CLOSED:
            # A server may close after N bad commands (Dovecot: 20): go on
            # in a new session (nothing was removed: no QUIT was sent).
            client.close()
            client = login_when_unlocked(pop, target)
            expect(
                client.stat()[0] == count, "STAT in a new session", expected=count, actual=client.stat()[0]
            )
            reply = client.command(line, check=False)
        expect_err(reply, line)
    count_now = client.stat()[0]
    expect(
        count_now == count, "STAT after the probes (nothing marked deleted)", expected=count, actual=count_now
    )


def _replies_before_stat(client, probe: bytes) -> tuple[int, tuple[int, int] | None]:
    """Send ``probe`` then STAT; the number of replies before STAT's, and STAT."""
    client.send_raw(probe + b"STAT\r\n")
    before = 0
    for _ in range(6):
        line = client.read_line()
        with contextlib.suppress(MalformedResponse):
            return before, parse_drop_listing(listing_reply(line))
        before += 1
    return before, None


@case(
    "security/P7-bare-cr",
    MUST,
    "1939",
    "3",
    "A bare CR does not end a command: NOOP<CR>DELE 1<CRLF> is one line (one reply) and deletes nothing.",
    ref="security-probes/3.3/P7",
    probes=["P7"],
)
def test_bare_cr_does_not_split_commands(pop, target):
    """NOOP<CR>DELE 1<CRLF> is one command: one reply, nothing deleted."""
    client = login_when_unlocked(pop, target)
    count, _ = client.stat()
    if not count:
        unimplemented("the maildrop is empty (nothing for DELE 1 to hit)")
    replies, stat = _replies_before_stat(client, b"NOOP\rDELE 1\r\n")
    expect(replies == 1, "replies to NOOP<CR>DELE 1<CRLF>", expected=1, actual=replies)
    expect(
        stat is not None and stat[0] == count, "STAT afterwards (DELE not run)", expected=count, actual=stat
    )


@case(
    "security/P7-bare-lf",
    INFO,
    "1939",
    "3",
    "NOOP<LF>DELE 1<LF>: whether a bare LF ends a command (Dovecot accepts LF); recorded.  The "
    "session is closed without QUIT, so nothing is removed.",
    ref="security-probes/3.3/P7",
    probes=["P7"],
)
def test_bare_lf_behaviour_is_recorded(pop, target, request):
    """Records whether a bare LF ends a command (no QUIT, so nothing is removed)."""
    client = login_when_unlocked(pop, target)
    count, _ = client.stat()
    if not count:
        unimplemented("the maildrop is empty (nothing for DELE 1 to hit)")
    try:
        replies, stat = _replies_before_stat(client, b"NOOP\nDELE 1\n")
    except SERVER_CLOSED as error:  # closing on a bare LF is a behaviour to record too
        observe(request, f"the server closed the connection: {type(error).__name__}: {error}")
        return
    except TimeoutError:  # a server that waits for CRLF never ends the bare-LF lines
        observe(request, "no reply within the client timeout (bare LF does not end a command)")
        return
    ran = stat is not None and stat[0] == count - 1
    observe(
        request,
        f"{replies} replies before STAT {stat} (was {count}); "
        f"LF {'ends' if ran else 'does not end'} commands",
    )


@case(
    "security/P9-bad-command-limit",
    SHOULD,
    "1939",
    "3 (Dovecot CLIENT_MAX_BAD_COMMANDS)",
    "A client sending unknown commands over and over is disconnected after some number of them "
    "(Dovecot: 20), in AUTHORIZATION and TRANSACTION.",
    hardening=True,
    ref="security-probes/3.3/P9",
    probes=["P9"],
)
def test_repeated_unknown_commands_disconnect(pop, target, request):
    """A client sending unknown commands over and over is disconnected."""
    for state in ("AUTHORIZATION", "TRANSACTION"):
        client = login_when_unlocked(pop, target) if state == "TRANSACTION" else pop(login=False)
        with contextlib.suppress(*SERVER_CLOSED):  # it may close before all 100 are sent
            client.send_raw(b"XYZZY\r\n" * 100)
        received, closed = client.read_until_close_or_idle(10)
        errors = received.count(b"-ERR")
        observe(request, f"{state}: closed after {errors} -ERR")
        expect(
            closed,
            f"100 unknown commands in {state}",
            expected="a close",
            actual=f"{errors} -ERR, still open",
        )
        client.close()


ECHO_PROBES = [
    b"XYZZY " + b"A" * 240,
    b"USER " + b"B" * 245,
    b"XYZZY \xff\xfe\xc3\x28",
    b"XYZZY \x1b[31mred",
    b"USER a\x1b]0;title\x07",
]


@case(
    "security/P12-no-echo-splitting",
    MUST,
    "1939",
    "3 (RFC 2449 §4)",
    "Replies to long or odd arguments that a server might echo (unknown commands, USER names) are "
    "single lines of at most 512 octets with no control characters but the final CRLF.",
    ref="security-probes/3.3/P12",
    probes=["P12"],
)
def test_echoed_arguments_are_sanitised(pop, target):
    """Replies echoing odd arguments are one line of <= 512 octets without control characters."""
    client = pop(login=False)
    for probe in ECHO_PROBES:
        try:
            client.send_raw(probe + b"\r\n")
            line = client.read_line()
        except SERVER_CLOSED:  # a close is an acceptable answer to garbage: go on in a new session
            client = pop(login=False)
            continue
        expect(
            len(line) <= 512,
            f"reply to {probe[:20]!r}...: length",
            expected="<= 512 octets",
            actual=len(line),
        )
        expect(
            line.endswith(b"\r\n") and not re.search(rb"[\x00-\x1f\x7f]", line[:-2]),
            f"reply to {probe[:20]!r}...: no control characters echoed",
            expected="one clean line",
            actual=line,
        )
