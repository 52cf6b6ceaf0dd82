"""RFC 1939 §§5-6: a message RSET unmarked is not removed at QUIT.

``rfc1939/6/never-remove-unmarked`` plays a random DELE/RSET sequence, so a
server that removes every message marked *at any time* in the session
(forgetting the RSET at UPDATE) is caught only when the random sequence
happens to RSET a marked message -- in about nine runs out of ten.  This
case plays that sequence every time.  Found by the suite's own broken
server (tests/broken_server, fault ``quit-ignores-rset``).
"""

from __future__ import annotations

from pop3suite.conformance.case import MUST, case, expect_equal, expect_ok
from pop3suite.conformance.helpers import bytes_until_close, find_scratch, login_when_unlocked


@case(
    "rfc1939/6/rset-before-quit",
    MUST,
    "1939",
    "5, 6",
    "[RSET] If any messages have been marked as deleted by the POP3 server, they are unmarked. [...] "
    "[QUIT] The POP3 server removes all messages marked as deleted from the maildrop [...]. In no case "
    "may the server remove any messages not marked as deleted.",
    ref="rfc1939/6/3",
    destructive=True,
)
def test_message_unmarked_by_rset_survives_quit(pop, target, mailbox, scratch):
    """Two scratch messages: DELE the first, RSET, DELE the second, QUIT: only the second is gone."""
    nonces = scratch(2)
    client, found = find_scratch(pop, target, mailbox, nonces)
    kept, removed = nonces
    client.dele(found[kept])
    client.rset()
    client.dele(found[removed])
    response = client.command("QUIT", check=False)
    expect_ok(response, "QUIT after DELE, RSET, DELE")
    bytes_until_close(client)
    client.close()
    after = login_when_unlocked(pop, target)
    left = mailbox.locate_scratch(after, nonces)
    expect_equal(
        "scratch messages left: the one RSET unmarked, not the one marked after",
        expected={kept},
        actual=set(left),
    )
    for number in left.values():  # clean up
        after.dele(number)
    after.quit()
