"""RFC 6856 "POP3 Support for UTF-8": the UTF8 command (AUTHORIZATION only),
exact sizes of messages with UTF-8 headers, and the LANG capability."""

from __future__ import annotations

import re

from pop3suite.conformance.case import (
    INFO,
    MUST,
    SHOULD,
    case,
    expect,
    expect_equal,
    expect_err,
    expect_ok,
    observe,
    unimplemented,
)
from pop3suite.proto import parse_scan_line

#: RFC 5646 language tag, loosely (the LANG listing also allows "*" ranges).
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")


@case(
    "rfc6856/2/utf8-authorization-only",
    MUST,
    "6856",
    "2",
    "CAPA tag: UTF8 [...] Added commands: UTF8 [...] Commands valid in states: AUTHORIZATION [...] "
    "The UTF8 command enables UTF-8 mode. The UTF8 command has no parameters.",
    ref="rfc6856/2/1",
)
def test_utf8_command_in_authorization_only(pop, target, capabilities, need):
    """Advertised UTF8 gets ``+OK`` before login and ``-ERR`` after it; login works in UTF-8 mode."""
    need("UTF8")
    if "USER" not in capabilities:
        unimplemented("USER/PASS is not offered on this connection")
    client = pop(login=False)
    response = client.command("UTF8", check=False)
    expect_ok(response, "UTF8 in AUTHORIZATION")
    client.login(target.user.user, target.user.password)
    again = client.command("UTF8", check=False)
    expect_err(again, "UTF8 in TRANSACTION")
    client.quit()  # release the maildrop

    other = pop()
    after_login = other.command("UTF8", check=False)
    expect_err(after_login, "UTF8 after login (never given before)")


@case(
    "rfc6856/2.1/list-size-utf8-headers",
    SHOULD,
    "6856",
    "2.1",
    "The octet count (size) of a message reported in a response to the LIST command SHOULD match the "
    "actual number of octets sent in a RETR response (not counting byte-stuffing).",
    ref="rfc6856/2.1/2",
)
def test_list_size_matches_retr_for_utf8_headers(pop, target, capabilities, fixture_number):
    """For the ``utf8-headers`` fixture (in UTF-8 mode if offered), ``LIST n`` equals the RETR octets."""
    client = pop(login=False)
    if "UTF8" in capabilities:
        client.command("UTF8", check=False)
    client.login(target.user.user, target.user.password)
    number = fixture_number(client, "utf8-headers")
    listed = client.command(f"LIST {number}", check=False)
    body = client.multiline(f"RETR {number}", check=False)
    if not listed.ok or not body.response.ok:
        unimplemented(f"the message is refused without UTF-8 mode: {(listed.raw, body.response.raw)!r}")
    expect_equal(
        f"LIST {number} equals RETR {number} octets",
        expected=len(body.data),
        actual=parse_scan_line(listed.text)[1],
    )


@case(
    "rfc6856/3/lang",
    INFO,
    "6856",
    "3",
    "CAPA tag: LANG [...] Added commands: LANG [...] Commands valid in states: AUTHORIZATION, TRANSACTION",
    ref="rfc6856/3/1",
)
def test_lang_listing_recorded(pop, target, need, request):
    """Record the LANG listing; each line should start with a language tag."""
    need("LANG")
    client = pop(login=False)
    body = client.multiline("LANG", check=False)
    observe(request, f"LANG: {body.response.raw!r} {body.lines()!r}")
    expect(
        body.response.ok,
        "LANG without argument lists the languages",
        expected="+OK and a list",
        actual=body.response.raw,
    )
    for line in body.lines():
        tag = line.split(b" ", 1)[0].decode("ascii", "replace")
        expect(
            _LANGUAGE_TAG.fullmatch(tag) is not None,
            "language tag first",
            expected="tag SP description",
            actual=line,
        )
