"""RFC 2449 §6.4-6.7 and §8: response codes, LOGIN-DELAY, PIPELINING,
EXPIRE, and the meaning of ``[IN-USE]``."""

from __future__ import annotations

import re

from pop3suite.conformance.case import (
    MUST,
    SHOULD,
    case,
    expect,
    expect_equal,
    expect_err,
    expect_ok,
    unimplemented,
)
from pop3suite.conformance.conftest import login_error
from pop3suite.conformance.helpers import (
    bracket_is_code,
    capa,
    login_while_busy,
    response_code,
    sasl_mechanisms,
    smallest_message,
    wrong_password,
)
from pop3suite.proto import Response, capability_arguments

#: Seconds to wait for a reply that a correct server sends at once.
REPLY_TIMEOUT = 5.0

#: Response codes defined by RFC 2449 §8, RFC 3206 and RFC 6856.
_KNOWN_CODE = re.compile(rb"(?i)\[(?:AUTH|IN-USE|LOGIN-DELAY|SYS/TEMP|SYS/PERM|UTF8)\]")


def _code_syntax_problem(response: Response) -> str | None:
    """What is wrong with the response code placement and syntax, or None."""
    if not bracket_is_code(response):
        return "text begins with '[' but is not a resp-code"
    misplaced = _KNOWN_CODE.search(response.raw)
    if response.code is None and misplaced:
        return f"{misplaced.group().decode()} is not right after the status indicator"
    return None


@case(
    "rfc2449/6.4/resp-code-syntax",
    MUST,
    "2449",
    "3, 6.4, 8",
    "The RESP-CODES capability indicates that any response text issued by this server which begins "
    'with an open square bracket ("[") is an extended response code (see section 8). [...] '
    'resp-code = "[" resp-level *("/" resp-level) "]"',
    ref="rfc2449/6.4/1",
)
def test_response_codes_follow_the_status(pop, target, need):
    """On a failed login and on a busy maildrop, a code is ``[CODE/...]`` right after ``-ERR ``."""
    need("RESP-CODES")
    replies = [login_error(pop(login=False), target.user.user, wrong_password())]
    busy = login_while_busy(pop, target, target.user.password)
    if not busy.reply.ok:
        replies.append(busy.reply)
    # A server may close the connection after [IN-USE] (Dovecot does): ask
    # for an unknown-command reply on a fresh connection.
    replies.append(pop(login=False).command("X-POP3SUITE-UNKNOWN", check=False))
    for response in replies:
        problem = _code_syntax_problem(response)
        expect(
            problem is None,
            f"response code syntax: {problem}",
            expected="-ERR [CODE/...] text",
            actual=response.raw,
        )


@case(
    "rfc2449/6.5/login-delay-enforced",
    SHOULD,
    "2449",
    "6.5, 8.1.1",
    "The LOGIN-DELAY capability includes an integer argument which indicates the number of seconds "
    'after an "+OK" response to a PASS, APOP, or AUTH command before another authentication will be '
    "accepted. [...] (§8.1.1) LOGIN-DELAY: This occurs on an -ERR response to an AUTH, USER (see note), "
    "PASS or APOP command [...] the server SHOULD NOT issue this response code to the USER command.",
    ref="rfc2449/6.5/1",
    probes=["A9"],
)
def test_login_delay_enforced_after_credentials(pop, target, need):
    """A second login within LOGIN-DELAY seconds gets ``-ERR [LOGIN-DELAY]`` on PASS, not on USER."""
    args = need("LOGIN-DELAY")
    match = re.fullmatch(r"(\d+)( USER)?", args)
    expect(match is not None, "LOGIN-DELAY syntax", expected="seconds [USER]", actual=args)
    assert match is not None
    if int(match.group(1)) < 2:
        unimplemented(f"LOGIN-DELAY {args} is too short to test reliably")
    first = pop(login=False)
    first.command(f"USER {target.user.user}", check=False)
    if first.pass_(target.user.password, check=False).ok:
        # With "USER" the pre-login value is only an upper bound; this user's
        # own delay is announced in TRANSACTION.
        value = (capa(first) or {}).get("LOGIN-DELAY", "")
        seconds = value.split()[0] if value.split() else ""
        if seconds.isdigit() and int(seconds) < 2:
            unimplemented(f"this user's LOGIN-DELAY is {value}: too short to test reliably")
        first.quit()
    second = pop(login=False)
    user = second.command(f"USER {target.user.user}", check=False)
    expect(
        response_code(user) != "LOGIN-DELAY",
        "LOGIN-DELAY is not given on USER",
        expected="+OK",
        actual=user.raw,
    )
    again = second.pass_(target.user.password, check=False)
    expect(
        not again.ok and response_code(again) == "LOGIN-DELAY",
        "second login within the delay is refused after valid credentials",
        expected="-ERR [LOGIN-DELAY] ...",
        actual=again.raw,
    )


@case(
    "rfc2449/6.6/pipelining-in-order",
    MUST,
    "2449",
    "6.6",
    "The PIPELINING capability indicates the server is capable of accepting multiple commands at a "
    "time; the client does not have to wait for the response to a command before issuing a subsequent "
    "command. If a server supports PIPELINING, it MUST process each command in turn.",
    ref="rfc2449/6.6/1",
    probes=["P8"],
)
def test_pipelined_commands_answered_in_order(pop, need, mailbox):
    """``STAT LIST UIDL RETR NOOP`` in one write get the same replies as one by one, in order."""
    need("PIPELINING")
    client = pop(timeout=REPLY_TIMEOUT)
    number = smallest_message(client)
    stat = client.command("STAT").raw
    listing = client.multiline("LIST").data
    uidl = client.multiline("UIDL", check=False)
    message = client.multiline(f"RETR {number}").data

    client.send_raw(f"STAT\r\nLIST\r\nUIDL\r\nRETR {number}\r\nNOOP\r\n".encode())
    step = "STAT"
    try:
        expect_equal("first reply answers STAT", expected=stat, actual=client.read_response().raw)
        step = "LIST"
        response = client.read_response()
        expect(
            response.ok, "second reply answers LIST", expected="+OK and the drop listing", actual=response.raw
        )
        expect_equal("LIST body", expected=listing, actual=client.read_body()[0])
        step = "UIDL"
        response = client.read_response()
        expect_equal("third reply answers UIDL", expected=uidl.response.ok, actual=response.ok)
        if response.ok:
            expect_equal("UIDL body", expected=uidl.data, actual=client.read_body()[0])
        step = f"RETR {number}"
        response = client.read_response()
        expect(
            response.ok,
            f"fourth reply answers RETR {number}",
            expected="+OK and the message",
            actual=response.raw,
        )
        expect_equal(f"RETR {number} body", expected=message, actual=client.read_body()[0])
        step = "NOOP"
        response = client.read_response()
        expect_ok(response, "fifth reply answers NOOP")
    except TimeoutError:
        expect(
            False,
            f"no reply to the pipelined {step}",
            expected=f"a reply within {REPLY_TIMEOUT:g} s",
            actual="silence",
        )


def _days(value: str) -> float:
    return float("inf") if value.upper() == "NEVER" else int(value)


@case(
    "rfc2449/6.7/expire-syntax",
    MUST,
    "2449",
    "6.7",
    "EXPIRE [...] Arguments: server-guaranteed minimum retention days, or NEVER; optionally followed "
    "by USER in AUTHORIZATION state",
    ref="rfc2449/6.7/1",
)
def test_expire_syntax_in_both_states(pop, target, capabilities, need):
    """EXPIRE is ``days|NEVER [USER]`` before login, ``days|NEVER`` after it and never below the first."""
    before = need("EXPIRE")
    expect(
        re.fullmatch(r"(NEVER|\d+)( USER)?", before) is not None,
        "EXPIRE before login",
        expected="days|NEVER [USER]",
        actual=before,
    )
    if "USER" not in capabilities:
        unimplemented("USER/PASS is not offered before TLS; cannot compare with the TRANSACTION value")
    after = capability_arguments(pop().multiline("CAPA").lines())
    expect("EXPIRE" in after, "EXPIRE announced in both states", expected="EXPIRE ...", actual=sorted(after))
    value = after["EXPIRE"]
    expect(
        re.fullmatch(r"NEVER|\d+", value) is not None,
        "EXPIRE after login (USER only before)",
        expected="days|NEVER",
        actual=value,
    )
    pre = before.split()[0]
    if before.upper().endswith(" USER"):
        expect(
            _days(value) >= _days(pre),
            "the per-user value is at least the server minimum",
            expected=f">= {pre}",
            actual=value,
        )
    else:
        expect_equal("EXPIRE without USER is the same for everyone", expected=before, actual=value)


@case(
    "rfc2449/8.1.2/in-use-after-auth-only",
    MUST,
    "2449",
    "8.1.2",
    "IN-USE: This occurs on an -ERR response to an AUTH, APOP, or PASS command. It indicates the "
    "authentication was successful, but the user's maildrop is currently in use (probably by another "
    "POP3 client).",
    ref="rfc2449/8.1.2/1",
    probes=["A8"],
)
def test_in_use_only_after_successful_authentication(pop, target, capabilities, need):
    """With the maildrop busy, USER and a wrong password never get ``[IN-USE]``; only good credentials may."""
    need("RESP-CODES")
    # The wrong-password attempt is rfc1939/4/in-use-needs-credentials's too.
    busy = login_while_busy(pop, target, wrong_password())
    other, user, wrong = busy.client, busy.user, busy.reply
    expect(response_code(user) != "IN-USE", "USER never carries [IN-USE]", expected="+OK", actual=user.raw)
    expect_err(wrong, "wrong password refused")
    expect(
        response_code(wrong) != "IN-USE",
        "[IN-USE] after a wrong password reveals the password",
        expected="-ERR [AUTH]",
        actual=wrong.raw,
    )
    if "PLAIN" in sasl_mechanisms(capabilities):
        sasl = other.auth_plain(target.user.user, wrong_password(), check=False)
        expect(
            response_code(sasl) != "IN-USE",
            "AUTH PLAIN with a wrong password",
            expected="-ERR [AUTH]",
            actual=sasl.raw,
        )
    other.command(f"USER {target.user.user}", check=False)
    right = other.pass_(target.user.password, check=False)
    expect(
        right.ok or response_code(right) in (None, "IN-USE", "LOGIN-DELAY", "SYS"),
        "good credentials on a busy maildrop: a code, if any, says why",
        expected="+OK, or -ERR [IN-USE]",
        actual=right.raw,
    )
