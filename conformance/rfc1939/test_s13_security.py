"""RFC 1939 §13 "Security Considerations": one access method per user."""

from __future__ import annotations

import hashlib
import ssl

from conformance.case import SHOULD, case, expect, unimplemented
from conformance.conftest import login_error
from pop3suite.client import apop_timestamp


@case(
    "rfc1939/13/apop-user-no-pass",
    SHOULD,
    "1939",
    "13",
    "It is conjectured that use of the APOP command provides origin identification and replay "
    "protection for a POP3 session. Accordingly, a POP3 server which implements both the PASS and "
    "APOP commands should not allow both methods of access for a given user; that is, for a given "
    "mailbox name, either the USER/PASS command sequence or the APOP command is allowed, but not both.",
    ref="rfc1939/13/1",
)
def test_apop_account_refuses_user_pass(pop, target):
    """An account that logs in with APOP cannot also log in with USER/PASS and the same secret."""
    account = target.apop_user
    if account is None:
        unimplemented("no APOP account given (--apop-user USER:PASS)")
    mode = "plain" if target.pop3 else "implicit"
    client = pop(mode, login=False)
    timestamp = apop_timestamp(client.greeting)
    if timestamp is None:
        unimplemented("the greeting carries no APOP timestamp")
    digest = hashlib.md5((timestamp + account.password).encode("utf-8")).hexdigest()
    response = client.command(f"APOP {account.user} {digest}", check=False)
    if not response.ok:
        unimplemented(f"APOP does not work for {account.user} ({response.raw!r}); see rfc1939/7/apop-digest")
    client.command("QUIT", check=False)
    assert client.sock is not None
    client.sock.settimeout(10.0)
    try:  # wait for the close, so the maildrop lock is gone
        while client.sock.recv(4096):
            pass
    except (TimeoutError, ConnectionError, ssl.SSLError):
        pass
    client.close()
    other = pop(mode, login=False)
    response = login_error(other, account.user, account.password)
    expect(
        not response.ok and response.code_str != "IN-USE",
        f"USER/PASS for the APOP account {account.user} ([IN-USE] would mean it authenticated)",
        "-ERR",
        response.raw,
    )
