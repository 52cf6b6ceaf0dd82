"""RFC 1939 §7 APOP: no timestamp in the greeting, no APOP.

``rfc1939/7/apop-timestamp`` and the other APOP cases start from the
greeting's timestamp and are UNIMPLEMENTED when there is none -- which is
right for a server without APOP, and hides a server that accepts APOP
without giving a timestamp (the digest is then MD5 of the secret alone,
the same on every connection: a captured digest logs in for ever).  Found
by the suite's own broken server (tests/broken_server, fault
``apop-without-timestamp``).
"""

from __future__ import annotations

from pop3suite.client import apop_timestamp
from pop3suite.conformance.case import MUST, case, expect, observe
from pop3suite.conformance.helpers import apop_account, capa_mode
from pop3suite.proto import apop_digest


@case(
    "rfc1939/7/apop-needs-timestamp",
    MUST,
    "1939",
    "7",
    "A POP3 server which implements the APOP command will include a timestamp in its banner greeting. "
    "The syntax of the timestamp corresponds to the `msg-id' in [RFC822], and MUST be different each "
    "time the POP3 server issues a banner greeting.",
    ref="rfc1939/7/6",
)
def test_apop_refused_when_the_greeting_has_no_timestamp(pop, target, request):
    """A greeting with a timestamp passes; without one, APOP with MD5(secret) must get ``-ERR``."""
    client = pop(capa_mode(target), login=False)
    timestamp = apop_timestamp(client.greeting)
    if timestamp is not None:
        observe(request, f"the greeting carries the timestamp {timestamp}")
        return
    account = apop_account(target)
    digest = apop_digest("", account.password)
    response = client.command(f"APOP {account.user} {digest}", check=False)
    observe(request, f"no timestamp in the greeting; APOP with MD5(secret): {response.raw!r}")
    expect(
        not response.ok,
        "APOP on a connection whose greeting carries no timestamp (MD5 of the secret alone)",
        expected="-ERR: without a timestamp there is no APOP",
        actual=response.raw,
    )
