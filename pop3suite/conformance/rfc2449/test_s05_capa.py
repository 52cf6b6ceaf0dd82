"""RFC 2449 §5 "The CAPA Command", §6 "Initial Set of Capabilities" and §9
"IANA Considerations": CAPA in both states, the same capabilities in both
states, every advertised capability works, only registered tags."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from pop3suite.client import Body
from pop3suite.conformance.case import (
    INFO,
    MUST,
    SHOULD,
    case,
    expect,
    expect_equal,
    expect_ok,
    observe,
    unimplemented,
)
from pop3suite.conformance.conftest import login_error
from pop3suite.conformance.helpers import (
    bracket_is_code,
    capa,
    expect_parses,
    smallest_message,
    wrong_password,
)
from pop3suite.proto import capability_arguments, listing_reply, parse_drop_listing
from pop3suite.proto.limits import MAX_RESPONSE_LINE

#: The IANA "POP3 Extension Mechanism" registry (RFC 2449, 2595, 3206, 6856).
REGISTERED = frozenset(
    {
        "TOP",
        "USER",
        "SASL",
        "RESP-CODES",
        "LOGIN-DELAY",
        "PIPELINING",
        "EXPIRE",
        "UIDL",
        "IMPLEMENTATION",
        "STLS",
        "AUTH-RESP-CODE",
        "UTF8",
        "LANG",
    }
)


CAPA_QUOTE = (
    "The POP3 CAPA command returns a list of capabilities supported by the POP3 server. It is "
    "available in both the AUTHORIZATION and TRANSACTION states. [...] An -ERR response indicates the "
    "capability command is not implemented [...]. An +OK response is followed by a list of "
    "capabilities, one per line."
)


def _check_capability_lines(body: Body, state: str) -> None:
    for line in body.lines():
        expect(
            len(line) + 2 <= MAX_RESPONSE_LINE,
            f"capability line within 512 octets ({state})",
            expected="<= 512 octets",
            actual=len(line) + 2,
        )
        expect(
            bool(line) and not line.startswith(b" "),
            f"one capability per line, tag first ({state})",
            expected="TAG [args]",
            actual=line,
        )


@case(
    "rfc2449/5/capa-both-states",
    MUST,
    "2449",
    "5",
    CAPA_QUOTE,
    ref="rfc2449/5/1",
)
def test_capa_in_both_states(pop, mode, target):
    """CAPA answers ``+OK`` and a capability list before and after login on one connection."""
    client = pop(mode, login=False)
    before = client.multiline("CAPA", check=False)
    if not before.response.ok:
        unimplemented("CAPA is answered -ERR: the server does not implement it")
    _check_capability_lines(before, "AUTHORIZATION")
    if "USER" not in capability_arguments(before.lines()):
        unimplemented(f"USER/PASS is not offered on this connection ({mode})")
    client.login(target.user.user, target.user.password)
    after = client.multiline("CAPA", check=False)
    expect(
        after.response.ok,
        "CAPA in TRANSACTION",
        expected="+OK and a capability list",
        actual=after.response.raw,
    )
    _check_capability_lines(after, "TRANSACTION")


@case("rfc2449/5/capa-after-user", MUST, "2449", "5", CAPA_QUOTE, ref="rfc2449/5/1")
def test_capa_answered_after_user(pop, target):
    """After ``USER`` (+OK) the session is still in AUTHORIZATION (RFC 1939 §4
    leaves it only on a successful PASS, APOP or AUTH), so CAPA answers ``+OK``
    and a capability list there too.  GNU Mailutils 3.15 answers
    ``-ERR Invalid command``, which capa-both-states does not see."""
    client = pop(login=False)
    before = client.multiline("CAPA", check=False)
    if not before.response.ok:
        unimplemented("CAPA is answered -ERR on a fresh connection: the server does not implement it")
    if "USER" not in capability_arguments(before.lines()):
        unimplemented("USER/PASS is not offered on this connection")
    user = client.command(f"USER {target.user.user}", check=False)
    if not user.ok:
        unimplemented(f"USER {target.user.user} is refused, so no session is between USER and PASS")
    after = client.multiline("CAPA", check=False)
    expect(
        after.response.ok,
        "CAPA after USER, before PASS",
        expected="+OK and a capability list",
        actual=after.response.raw,
    )
    expect(
        bool(after.lines()),
        "a capability list after USER",
        expected="at least one TAG line",
        actual=after.data,
    )
    _check_capability_lines(after, "after USER")


@case(
    "rfc2449/5/announced-in-both-states",
    MUST,
    "2449",
    "5",
    "A capability description MUST document in which states the capability is announced, and in "
    "which states the commands are valid. Capabilities available in the AUTHORIZATION state MUST be "
    "announced in both states.",
    ref="rfc2449/5/2",
)
def test_authorization_capabilities_announced_after_login(pop, mode, target):
    """Every tag listed before login is listed after it (STLS may go; USER-suffixed values may change)."""
    client = pop(mode, login=False)
    before = capa(client)
    if before is None:
        unimplemented("CAPA is not implemented")
    if "USER" not in before:
        unimplemented(f"USER/PASS is not offered on this connection ({mode})")
    client.login(target.user.user, target.user.password)
    after = capa(client)
    expect(after is not None, "CAPA after login", expected="+OK", actual="-ERR")
    assert after is not None
    for tag, args in before.items():
        if tag == "STLS":  # RFC 2595 §4: STLS is valid in AUTHORIZATION only
            continue
        expect(
            tag in after,
            f"{tag} announced in AUTHORIZATION must be announced in TRANSACTION",
            expected=tag,
            actual=after,
        )
        if tag in ("LOGIN-DELAY", "EXPIRE") and not args.upper().endswith(" USER"):
            expect_equal(
                f"{tag} is not per-user (no USER argument), so it cannot change",
                expected=args,
                actual=after[tag],
            )


def _probe_top(pop, target, args):
    client = pop()
    number = smallest_message(client)
    top = client.multiline(f"TOP {number} 0", check=False)
    expect(
        top.response.ok,
        f"TOP {number} 0 is answered",
        expected="+OK and the header block",
        actual=top.response.raw,
    )
    retr = client.multiline(f"RETR {number}")
    expect(
        bool(top.data) and retr.data.startswith(top.data),
        f"TOP {number} 0 is the start of RETR {number} (headers and blank line)",
        expected=retr.data[:300],
        actual=top.data,
    )


def _probe_uidl(pop, target, args):
    client = pop()
    count, _ = client.stat()
    body = client.multiline("UIDL", check=False)
    expect(
        body.response.ok, "UIDL is answered", expected="+OK and a unique-id listing", actual=body.response.raw
    )
    numbers = [line.split(b" ", 1)[0] for line in body.lines()]
    expect_equal(
        "one UIDL line per message", expected=[str(n).encode() for n in range(1, count + 1)], actual=numbers
    )


def _probe_user(pop, target, args):
    client = pop(login=False)
    user = client.command(f"USER {target.user.user}", check=False)
    expect_ok(user, "USER is accepted")
    response = client.pass_(target.user.password, check=False)
    expect_ok(response, "USER/PASS logs in")


def _probe_sasl(pop, target, args):
    mechanisms = args.upper().split()
    expect(bool(mechanisms), "SASL lists its mechanisms", expected="SASL MECH ...", actual=f"SASL {args}")
    if "PLAIN" not in mechanisms:
        unimplemented(f"the suite runs SASL PLAIN only; advertised: {args} (see rfc5034/6)")
    client = pop(login=False)
    response = client.auth_plain(target.user.user, target.user.password, check=False)
    expect_ok(response, "AUTH PLAIN with the right credentials logs in")


def _probe_stls(pop, target, args):
    client = pop("stls", login=False)
    expect(client.tls_active, "STLS starts TLS", expected="TLS active", actual="cleartext")
    response = client.command("CAPA", check=False)
    expect_ok(response, "CAPA inside TLS")
    client.read_body()


def _probe_pipelining(pop, target, args):
    client = pop(timeout=5.0)
    client.send_raw(b"STAT\r\nNOOP\r\n")
    try:
        stat, noop = client.read_response(), client.read_response()
    except TimeoutError:
        expect(
            False, "both pipelined commands are answered", expected="two replies within 5 s", actual="silence"
        )
        raise
    expect_parses(
        lambda raw: parse_drop_listing(listing_reply(raw)),
        stat.raw,
        "first reply answers STAT",
        expected="+OK n size",
    )
    expect_ok(noop, "second reply answers NOOP")


def _probe_resp_codes(pop, target, args):
    replies = [pop(login=False).command("X-POP3SUITE-UNKNOWN", check=False)]
    replies.append(login_error(pop(login=False), target.user.user, wrong_password()))
    for response in replies:
        expect(
            bracket_is_code(response),
            "text starting with '[' is a response code",
            expected="[CODE] ...",
            actual=response.raw,
        )


def _probe_login_delay(pop, target, args):
    expect(
        re.fullmatch(r"\d+( USER)?", args) is not None,
        "LOGIN-DELAY syntax",
        expected="seconds [USER]",
        actual=args,
    )


def _probe_expire(pop, target, args):
    expect(
        re.fullmatch(r"(NEVER|\d+)( USER)?", args) is not None,
        "EXPIRE syntax",
        expected="days|NEVER [USER]",
        actual=args,
    )


def _probe_auth_resp_code(pop, target, args):
    client = pop(login=False)
    response = login_error(client, target.user.user, wrong_password())
    expect(
        response.code is not None and response.code[0].upper() == "AUTH",
        "wrong password",
        expected="-ERR [AUTH]",
        actual=response.raw,
    )


def _probe_utf8(pop, target, args):
    client = pop(login=False)
    response = client.command("UTF8", check=False)
    expect_ok(response, "UTF8 in AUTHORIZATION")


def _probe_lang(pop, target, args):
    client = pop(login=False)
    body = client.multiline("LANG", check=False)
    expect(body.response.ok, "LANG lists the languages", expected="+OK and a list", actual=body.response.raw)


def _probe_implementation(pop, target, args):
    expect(
        bool(args.strip()), "IMPLEMENTATION names the server", expected="IMPLEMENTATION <text>", actual=args
    )


_PROBES: dict[str, Callable[..., None]] = {
    "TOP": _probe_top,
    "UIDL": _probe_uidl,
    "USER": _probe_user,
    "SASL": _probe_sasl,
    "STLS": _probe_stls,
    "PIPELINING": _probe_pipelining,
    "RESP-CODES": _probe_resp_codes,
    "LOGIN-DELAY": _probe_login_delay,
    "EXPIRE": _probe_expire,
    "AUTH-RESP-CODE": _probe_auth_resp_code,
    "UTF8": _probe_utf8,
    "LANG": _probe_lang,
    "IMPLEMENTATION": _probe_implementation,
}


@pytest.mark.parametrize("tag", list(_PROBES))
@case(
    "rfc2449/5/capability-works",
    MUST,
    "2449",
    "5, 6",
    "The POP3 CAPA command returns a list of capabilities supported by the POP3 server. [...] "
    "(§6.1) The TOP capability indicates the optional TOP command is available. [...] (§6.2) The USER "
    "capability indicates that the USER and PASS commands are supported, although they may not be "
    "available to all users. [...] (one such statement per capability in §6)",
    ref="rfc2449/5/3",
)
def test_advertised_capability_works(pop, target, need, mailbox, tag):
    """An advertised capability does what it says (its command runs, its argument parses)."""
    args = need(tag)
    _PROBES[tag](pop, target, args)


@case(
    "rfc2449/9/registered-tags",
    SHOULD,
    "2449",
    "9",
    "New POP3 capabilities MUST be defined in a standards track or IESG approved experimental RFC, "
    'and MUST NOT begin with the letter "X".',
    ref="rfc2449/9/1",
)
def test_capability_tags_are_registered_or_private(pop, capabilities, target):
    """Every tag, before and after login, is in the IANA registry or begins with ``X``."""
    if not capabilities:
        unimplemented("CAPA is not implemented")
    tags = set(capabilities)
    client = pop(login=False)
    if "USER" in capabilities:
        client.login(target.user.user, target.user.password)
        tags |= set(capa(client) or {})
    unknown = sorted(tag for tag in tags if tag not in REGISTERED and not tag.startswith("X"))
    expect(
        not unknown,
        "capability tags are registered or X- private",
        expected=sorted(REGISTERED),
        actual=unknown,
    )


@case(
    "rfc2449/6.9/implementation",
    INFO,
    "2449",
    "6.9",
    "It is often useful to identify an implementation of a particular server (for example, when "
    "logging). [...] The IMPLEMENTATION capability allows the server implementation to be explicitly "
    "indicated.",
    ref="rfc2449/6.9/1",
)
def test_implementation_recorded(pop, target, need, request):
    """Record the IMPLEMENTATION text (the CAPA exchanges are in the transcript); it is not empty."""
    text = need("IMPLEMENTATION")
    observe(request, f"IMPLEMENTATION {text!r}")
    expect(
        bool(text.strip()),
        "IMPLEMENTATION carries a text",
        expected="IMPLEMENTATION <text>",
        actual=repr(text),
    )
    client = pop(login=False)
    if "USER" in (capa(client) or {}):
        client.login(target.user.user, target.user.password)
        after = (capa(client) or {}).get("IMPLEMENTATION")
        observe(request, f"after login: {after!r}")
        expect(
            after is None or bool(after.strip()),
            "IMPLEMENTATION after login",
            expected="<text>",
            actual=repr(after),
        )
