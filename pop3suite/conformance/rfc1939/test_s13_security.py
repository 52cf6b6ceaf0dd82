"""RFC 1939 §13 "Security Considerations": one access method per user."""

from __future__ import annotations

from pop3suite.conformance.case import SHOULD, case, expect, unimplemented
from pop3suite.conformance.conftest import login_error
from pop3suite.conformance.helpers import apop_account, apop_login, capa_mode, quit_and_wait


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
    probes=["A14"],
)
def test_apop_account_refuses_user_pass(pop, target):
    """An account that logs in with APOP cannot also log in with USER/PASS and the same secret."""
    account = apop_account(target)
    client, _, response = apop_login(pop, target, account)
    if not response.ok:
        unimplemented(f"APOP does not work for {account.user} ({response.raw!r}); see rfc1939/7/apop-digest")
    quit_and_wait(client)  # so the maildrop lock is gone
    other = pop(capa_mode(target), login=False)
    response = login_error(other, account.user, account.password)
    expect(
        not response.ok and response.code_str != "IN-USE",
        f"USER/PASS for the APOP account {account.user} ([IN-USE] would mean it authenticated)",
        expected="-ERR",
        actual=response.raw,
    )
