"""RFC 2449 §4 "Parameter and Response Lengths": commands of 255 octets,
first response lines of at most 512 octets."""

from __future__ import annotations

from pop3suite.client import Pop3Client
from pop3suite.conformance.case import MUST, case, expect, expect_equal, unimplemented
from pop3suite.conformance.helpers import unknown_user
from pop3suite.proto.limits import MAX_COMMAND_LINE, MAX_RESPONSE_LINE

#: Commands whose +OK answer carries a multi-line body (RFC 1939 §5, §7; RFC 2449 §5).
_MULTI_LINE = {"CAPA", "RETR", "TOP"}
_MULTI_LINE_WITHOUT_ARGUMENT = {"LIST", "UIDL"}


def _first_line(client: Pop3Client, command: str) -> bytes:
    """Send ``command``; return the first line of the reply and consume the rest
    (a multi-line body, or a SASL exchange, which is cancelled)."""
    response = client.command(command, check=False)
    keyword, _, argument = command.partition(" ")
    keyword = keyword.upper()
    if response.continuation:
        client.command("*", check=False)
    elif response.ok and (
        keyword in _MULTI_LINE or (keyword in _MULTI_LINE_WITHOUT_ARGUMENT and not argument)
    ):
        client.read_body()
    return response.raw


def _padded_user_line(name: str) -> str:
    """``USER <name><x...>``: exactly 255 octets once the client adds CRLF."""
    line = f"USER {name}"
    return line + "x" * (MAX_COMMAND_LINE - 2 - len(line))


@case(
    "rfc2449/4/command-255-octets",
    MUST,
    "2449",
    "4",
    "The maximum length of a command is increased from 47 characters (4 character command, single "
    "space, 40 character argument, CRLF) to 255 octets, including the terminating CRLF. Servers which "
    "support the CAPA command MUST support commands up to 255 octets.",
    ref="rfc2449/4/1",
    probes=["P1"],
)
def test_command_of_255_octets_is_accepted(pop, capabilities):
    """A 255-octet ``USER`` line is answered like a short ``USER`` line, with exactly one reply."""
    # Which command?  It must be valid before login, take a free-form argument
    # and have an answer that depends on neither the maildrop nor the session:
    # USER is the only one.  Message numbers padded with leading zeros
    # ("LIST 000...1") are no good: nothing in RFC 1939 obliges a server to
    # take a 250-digit number.  A server may refuse an unknown name at USER, so
    # the status alone proves nothing; the long line is judged against a short
    # USER line with the same unknown name prefix on a fresh connection: same
    # status, same response code.  Then QUIT must be answered with +OK, which
    # shows the long line was taken as one command (a server that split it
    # would answer the second fragment first).  QUIT, not CAPA: GNU Mailutils
    # takes nothing but PASS or QUIT after USER ("CAPA" -> "-ERR Invalid
    # command"), whatever the line length.
    if not capabilities:
        unimplemented("CAPA is not implemented; the 255-octet floor binds servers that implement it")
    name = unknown_user()
    short = pop(login=False).command(f"USER {name}", check=False)  # home mode: USER offered there

    client = pop(login=False)
    line = _padded_user_line(name)
    expect_equal("probe line length including CRLF", expected=MAX_COMMAND_LINE, actual=len(line) + 2)
    long = client.command(line, check=False)
    expect(
        long.ok == short.ok and long.code == short.code,
        "a 255-octet USER line must be treated like a short one",
        expected=f"{short.raw!r} (the answer to 'USER {name}')",
        actual=long.raw,
    )
    quit = client.command("QUIT", check=False)
    expect(
        quit.ok,
        "exactly one reply to the 255-octet line; QUIT answered next",
        expected="+OK to QUIT",
        actual=quit.raw,
    )


@case(
    "rfc2449/4/first-line-512-octets",
    MUST,
    "2449",
    "4",
    "The maximum length of the first line of a command response (including the initial greeting) is "
    "unchanged at 512 octets (including the terminating CRLF).",
    ref="rfc2449/4/2",
    probes=["P12"],
)
def test_first_response_lines_at_most_512_octets(pop, mode, mailbox):
    """The greeting and the first line of every reply, also to 255-octet commands, fit in 512 octets."""
    lines = [pop(mode, login=False).greeting.raw]
    # One connection per probe before login: some servers close after a few
    # bad commands in AUTHORIZATION (Dovecot: 3).
    for command in ("CAPA", "X" * 253, "LIST " + "9" * 248, "AUTH " + "M" * 248, _padded_user_line("u")):
        lines.append(_first_line(pop(mode, login=False), command))

    client = pop(mode)
    sizes = client.list()
    smallest = min(sizes, key=lambda n: sizes[n]) if sizes else 1
    for command in (
        "CAPA",
        "STAT",
        "LIST",
        "UIDL",
        f"RETR {smallest}",
        f"TOP {smallest} 0",
        "LIST " + "9" * 248,
        "RETR " + "1" * 248,
        "Y" * 253,
    ):
        lines.append(_first_line(client, command))
    for raw in lines:
        expect(
            len(raw) <= MAX_RESPONSE_LINE,
            "first line within 512 octets",
            expected="<= 512 octets",
            actual=len(raw),
        )
