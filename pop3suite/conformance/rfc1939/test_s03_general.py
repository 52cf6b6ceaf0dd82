"""RFC 1939 §3 "Basic Operation": greeting, status indicators, line endings,
line lengths, keywords, unknown and misplaced commands."""

from __future__ import annotations

from pop3suite.conformance.case import MUST, case, expect, expect_err
from pop3suite.conformance.helpers import SERVER_CLOSED
from pop3suite.proto.limits import MAX_RESPONSE_LINE

#: How a server that closes the connection shows up on our side.
_CLOSED = SERVER_CLOSED


@case(
    "rfc1939/3/greeting",
    MUST,
    "1939",
    "3",
    "Once the TCP connection has been opened by a POP3 client, the POP3 server issues a one line greeting.",
    ref="rfc1939/3/1",
)
def test_greeting_is_one_positive_line(pop, mode):
    """The server greets with one ``+OK`` line ending in CRLF (after TLS on 995)."""
    client = pop(mode, login=False)
    greeting = client.greeting
    expect(
        greeting is not None and greeting.ok,
        "greeting must be +OK",
        expected="+OK ...CRLF",
        actual=greeting and greeting.raw,
    )
    expect(
        greeting.raw.endswith(b"\r\n"),
        "greeting must end with CRLF",
        expected="...\\r\\n",
        actual=greeting.raw,
    )


@case(
    "rfc1939/3/status-upper-case",
    MUST,
    "1939",
    "3",
    'There are currently two status indicators: positive ("+OK") and negative ("-ERR"). '
    'Servers MUST send the "+OK" and "-ERR" in upper case.',
    ref="rfc1939/3/2",
)
def test_status_indicators_upper_case(pop):
    """Every status line starts with exactly ``+OK`` or ``-ERR``."""
    client = pop(login=False)
    lines = [client.greeting.raw]
    for command in ("NOOPX", "STAT", "USER", "CAPA"):
        response = client.command(command, check=False)
        lines.append(response.raw)
        if command == "CAPA" and response.ok:
            client.read_body()
    for line in lines:
        expect(
            line.startswith((b"+OK", b"-ERR")),
            "status indicator in upper case",
            expected="+OK or -ERR",
            actual=line,
        )


@case(
    "rfc1939/3/crlf-line-ends",
    MUST,
    "1939",
    "3",
    "Responses in the POP3 consist of a status indicator and a keyword possibly followed by "
    "additional information. All responses are terminated by a CRLF pair.",
    ref="rfc1939/3/3",
)
def test_every_line_ends_with_crlf(pop):
    """No status line, including error replies, ends in a bare LF or CR."""
    client = pop(login=False)
    raws = [client.greeting.raw]
    for command in ("FOO", "STAT", "PASS x", "USER"):
        raws.append(client.command(command, check=False).raw)
    for raw in raws:
        expect(
            raw.endswith(b"\r\n") and b"\r" not in raw[:-2],
            "CRLF only at the end",
            expected="...\\r\\n",
            actual=raw,
        )


@case(
    "rfc1939/3/response-length",
    MUST,
    "1939",
    "3",
    "Responses may be up to 512 characters long, including the terminating CRLF.",
    ref="rfc1939/3/4",
    probes=["P12"],
)
def test_status_lines_at_most_512_octets(pop):
    """Status lines stay within 512 octets even when provoked with long arguments."""
    client = pop(login=False)
    raws = [client.greeting.raw]
    for command in ("X" * 200, "USER " + "u" * 240, "LIST " + "9" * 240):
        raws.append(client.command(command, check=False).raw)
    for raw in raws:
        expect(
            len(raw) <= MAX_RESPONSE_LINE, "status line within 512 octets", expected="<= 512", actual=len(raw)
        )


@case(
    "rfc1939/3/keywords-case-insensitive",
    MUST,
    "1939",
    "3",
    "Commands in the POP3 consist of a case-insensitive keyword, possibly followed by one or more arguments.",
    ref="rfc1939/3/5",
)
def test_keywords_are_case_insensitive(pop):
    """``stat``, ``Stat`` and ``STAT`` are the same command."""
    client = pop()
    answers = [client.command(keyword, check=False) for keyword in ("STAT", "stat", "Stat", "sTaT")]
    first = answers[0].text
    for answer in answers:
        expect(
            answer.ok and answer.text == first,
            "same answer for every spelling",
            expected=f"+OK {first}",
            actual=answer.raw,
        )


@case(
    "rfc1939/3/unknown-command",
    MUST,
    "1939",
    "3",
    "[...] a POP3 server MUST respond to an unrecognized, unimplemented, or syntactically invalid "
    "command by responding with a negative status indicator.",
    ref="rfc1939/3/7",
)
def test_unknown_and_invalid_commands_get_err(pop):
    """Unknown or malformed commands get ``-ERR`` and the session stays usable."""
    client = pop()
    for command in ("FOO", "LIST x", "RETR", "TOP 1", "TOP 1 x", "DELE 0", "RETR 99999999999"):
        response = client.command(command, check=False)
        expect_err(response, f"{command!r} must be refused")
    noop = client.command("NOOP", check=False)
    expect(noop.ok, "session still usable after bad commands", expected="+OK to NOOP", actual=noop.raw)


@case(
    "rfc1939/3/wrong-state",
    MUST,
    "1939",
    "3",
    "[...] a POP3 server MUST respond to [...] a command issued in the wrong state by responding "
    "with a negative status indicator.",
    ref="rfc1939/3/8",
    probes=["P6"],
)
def test_commands_in_wrong_state_get_err(pop):
    """Transaction commands before login, and login commands after it, get ``-ERR``."""
    # Some servers close the connection after a few bad commands before login
    # (Dovecot answers three, then "-ERR Too many invalid bad commands." to
    # anything and closes).  After at least one -ERR on a connection that is a
    # policy, not a failure: send the same command again on a fresh connection.
    client = pop(login=False)
    refused = 0  # -ERR replies on this connection
    for command in ("STAT", "LIST", "RETR 1", "DELE 1", "UIDL", "TOP 1 0", "RSET"):
        try:
            response = client.command(command, check=False)
        except _CLOSED:
            if not refused:
                raise
            client.close()
            client, refused = pop(login=False), 0
            response = client.command(command, check=False)
        expect_err(response, f"{command} before login")
        refused += 1
    client.close()
    client = pop()  # log in on a fresh connection: the one above may be spent
    for command in ("USER someone", "PASS something", "APOP someone " + "0" * 32):
        response = client.command(command, check=False)
        expect_err(response, f"{command.split()[0]} after login")
    expect(client.command("NOOP", check=False).ok, "still in TRANSACTION", expected="+OK", actual="-ERR")
