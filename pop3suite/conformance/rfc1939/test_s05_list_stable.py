"""RFC 1939 §5 LIST: one exact size per message for the whole session.

``rfc1939/5/list-exact-size`` compares ``LIST n`` with RETR right away.  A
server that keeps per-message state in the message itself can change the
message while it is being read: GNU Mailutils 3.15 (mbox) inserts an
``X-UIDL:`` header the first time UIDL is asked for a message, so ``LIST n``
of the suite's new scratch message grows from 307 to 363 octets in one
session and RETR then agrees with the *new* size.  A message has one exact
size, so the size listed first is the one every later LIST and the RETR
must give.

The message is a fresh scratch message: Mailutils writes the header into
the mbox when the session ends, so a message an earlier session has seen
(every fixture: the suite's survey asks UIDL) no longer shows the change.
The session's first command is LIST, before the message is located by TOP
(or RETR); the message is removed again (DELE, QUIT) at the end.
"""

from __future__ import annotations

from pop3suite.client import Pop3Client
from pop3suite.conformance.case import MUST, case, expect, observe, unimplemented
from pop3suite.conformance.helpers import find_scratch, login_when_unlocked, quit_and_wait
from pop3suite.proto import MalformedResponse, listing_reply, parse_drop_listing


def _listed(client: Pop3Client, number: int) -> str:
    """The size ``LIST number`` gives, or the whole reply if it is not a scan listing."""
    raw = client.command(f"LIST {number}", check=False).raw
    try:  # a scan listing has a drop listing's shape: +OK n size
        return str(parse_drop_listing(listing_reply(raw))[1])
    except MalformedResponse:
        return repr(raw)


@case(
    "rfc1939/5/list-size-stable",
    MUST,
    "1939",
    "5",
    'The positive response consists of "+OK" followed by a single space, the message-number of the '
    "message, a single space, and the size of the message in octets. [...] Note that the size of the "
    "message is the exact size (in octets) of the message [...]",
    ref="rfc1939/5/4",
    destructive=True,
)
def test_list_size_does_not_change_within_a_session(pop, target, mailbox, scratch, request):
    """``LIST n`` is the same before and after UIDL, ``TOP n 0`` and ``RETR n``, and RETR sends that many."""
    nonces = scratch(1)
    waiting, _ = find_scratch(pop, target, mailbox, nonces)  # it has arrived: now a session of our own
    quit_and_wait(waiting)
    client = login_when_unlocked(pop, target)
    first = client.list()  # before anything else in the session
    number = mailbox.locate_scratch(client, nonces).get(nonces[0])
    if number is None:
        unimplemented("the scratch message found a moment ago is gone")
    steps = [("first LIST", str(first[number]))]
    if client.multiline("UIDL", check=False).response.ok:
        steps.append(("after UIDL", _listed(client, number)))
    if client.multiline(f"TOP {number} 0", check=False).response.ok:
        steps.append((f"after TOP {number} 0", _listed(client, number)))
    retr = client.multiline(f"RETR {number}")
    steps.append((f"after RETR {number}", _listed(client, number)))
    steps.append((f"octets RETR {number} sent", str(len(retr.data))))
    shown = ", ".join(f"{name}: {size}" for name, size in steps)
    observe(request, f"LIST {number} (a new scratch message): {shown}")
    client.dele(number)
    quit_and_wait(client)
    expect(
        all(size == steps[0][1] for _, size in steps),
        f"LIST {number} gives one exact size all session, and RETR {number} sends that many octets",
        expected=f"{first[number]} every time",
        actual=shown,
    )
