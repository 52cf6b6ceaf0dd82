"""RFC 2449 §3 and §6: the argument syntax of every registered capability.

The other CAPA cases find a capability by its tag, so a tag whose argument
is glued to it is simply "not advertised": GNU Mailutils 3.15 announces
``EXPIRENEVER``, and ``rfc2449/6.7/expire-syntax`` is UNIMPLEMENTED there
while a client looking for ``EXPIRE`` finds nothing.  This case reads the
raw CAPA lines and holds each registered tag to the ``Arguments:`` entry of
its definition, and recognises a registered tag with a valid argument glued
on.  Any other unknown tag is not judged (``rfc2449/9/registered-tags``
reports unknown tags).
"""

from __future__ import annotations

from pop3suite.conformance.capa_grammar import AFTER_LOGIN, BEFORE_LOGIN, argument_problems
from pop3suite.conformance.case import MUST, case, expect, observe, unimplemented
from pop3suite.conformance.helpers import capa_mode


@case(
    "rfc2449/6/capability-arguments",
    MUST,
    "2449",
    "3, 6",
    "capability = capa-tag *(SP param) CRLF [...] (§6.7 EXPIRE) Arguments: server-guaranteed minimum "
    "retention days, or NEVER; optionally followed by USER in AUTHORIZATION state [...] (one "
    '"Arguments:" entry per capability in §6, and for STLS, AUTH-RESP-CODE, UTF8 and LANG in '
    "RFC 2595, 3206 and 6856)",
    ref="rfc2449/5/3",
)
def test_registered_capabilities_have_their_argument_syntax(pop, target, capabilities, request):
    """Each registered tag, before and after login, carries its defined arguments, space-separated."""
    client = pop(capa_mode(target), login=False)
    before = client.multiline("CAPA", check=False)
    if not before.response.ok:
        unimplemented("CAPA is not implemented")
    problems = argument_problems(before.lines(), BEFORE_LOGIN)
    if "USER" not in capabilities:
        observe(request, "USER/PASS is not offered before TLS: the TRANSACTION-state list is not read")
    else:
        after = pop().multiline("CAPA", check=False)
        if after.response.ok:
            problems += [f"after login: {p}" for p in argument_problems(after.lines(), AFTER_LOGIN)]
        else:
            observe(
                request, f"CAPA after login: {after.response.raw!r} (rfc2449/5/capa-both-states judges it)"
            )
    expect(
        not problems,
        "registered capabilities carry the arguments their definitions give",
        expected="TAG[ SP arg]... as defined (e.g. 'EXPIRE NEVER', 'LOGIN-DELAY 900', 'SASL PLAIN')",
        actual="; ".join(problems),
    )
