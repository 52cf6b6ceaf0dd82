"""RFC 1939 §5 LIST after DELE: a message marked as deleted is not listed.

``rfc1939/5/list-matches-stat`` checks LIST against STAT on a fresh
session, and ``rfc1939/5/dele-marks-only`` checks ``LIST n`` of the marked
message; neither looks at the multi-line LIST once a message is marked.  A
server that lists marked messages there (Mailpit did, rfc-checklist.md
rfc1939/5/2) passed both.  Found by the suite's own broken server
(tests/broken_server, fault ``list-shows-deleted``).
"""

from __future__ import annotations

from pop3suite.conformance.case import MUST, case, expect_equal, unimplemented


@case(
    "rfc1939/5/list-excludes-deleted",
    MUST,
    "1939",
    "5",
    "If no argument was given and the POP3 server issues a positive response, then the response "
    "given is multi-line. After the initial +OK, for each message in the maildrop, the POP3 server "
    "responds with a line containing information for that message. [...] Note that messages marked "
    "as deleted are not listed.",
    ref="rfc1939/5/2",
)
def test_list_leaves_out_messages_marked_deleted(pop, mailbox):
    """After ``DELE 1``, LIST lists 2..n with their sizes, and its sizes add up to STAT's."""
    del mailbox  # seeded: the fixture messages are there
    client = pop()
    sizes = client.list()
    if len(sizes) < 2:
        unimplemented("needs at least two messages in the maildrop")
    client.dele(1)
    after = client.list()
    expect_equal(
        "LIST after DELE 1 (1 is marked deleted)",
        expected={n: s for n, s in sizes.items() if n != 1},
        actual=after,
    )
    expect_equal(
        "LIST sizes add up to the STAT size after DELE 1",
        expected=client.stat()[1],
        actual=sum(after.values()),
    )
    # No QUIT: the session is dropped at teardown, so nothing is removed.
