"""RFC 1939 §6 "The UPDATE State": QUIT removes exactly the marked messages,
any other end of a session removes nothing, the lock is released.

Messages are told apart across sessions by their UIDL (or, without UIDL, by
their header block), so renumbering between sessions does not matter.
Cases that really remove mail do it only to the suite's own scratch
messages and are marked destructive.
"""

from __future__ import annotations

import contextlib
import random
import secrets
from collections import Counter

import pytest

from pop3suite.client import ConnectionClosed
from pop3suite.conformance.case import MUST, case, expect, expect_equal, expect_ok, unimplemented
from pop3suite.conformance.helpers import (
    bytes_until_close,
    find_scratch,
    identities,
    inventory,
    login_when_unlocked,
)
from pop3suite.target.seeding import SCRATCH_HEADER


def _scratch_present(client, mailbox, nonces):
    """The scratch nonces found in the maildrop by header (independent of UIDL)."""
    heads = list(mailbox.scan(client).values())
    return {nonce for nonce in nonces if any(SCRATCH_HEADER + nonce.encode() in head for head in heads)}


def _remove_scratch(pop, target, mailbox, nonces):
    """Best-effort cleanup: DELE the given scratch messages and QUIT."""
    client = login_when_unlocked(pop, target)
    for number in mailbox.locate_scratch(client, nonces).values():
        client.dele(number)
    client.quit()


@case(
    "rfc1939/6/quit-removes-marked",
    MUST,
    "1939",
    "6",
    "When the client issues the QUIT command from the TRANSACTION state, the POP3 session enters the "
    "UPDATE state. [...] The POP3 server removes all messages marked as deleted from the maildrop and "
    "replies as to the status of this operation. [...] In no case may the server remove any messages "
    "not marked as deleted.",
    ref="rfc1939/6/1",
    destructive=True,
)
def test_quit_removes_exactly_the_marked_messages(pop, target, mailbox, scratch):
    """DELE two of three scratch messages, QUIT: exactly those two are gone, everything else stays."""
    nonces = scratch(3)
    client, found = find_scratch(pop, target, mailbox, nonces)
    names = identities(client, mailbox)
    before = Counter(names.values())
    marked = [names[found[nonce]] for nonce in nonces[:2]]
    for nonce in nonces[:2]:
        client.dele(found[nonce])
    response = client.command("QUIT", check=False)
    expect_ok(response, "QUIT after DELE (-ERR only on a resource shortage)")
    expect(
        bytes_until_close(client) is not None,
        "server closes the connection after QUIT",
        expected="EOF",
        actual="still open",
    )
    client.close()
    after_client = login_when_unlocked(pop, target)
    after = inventory(after_client, mailbox)
    missing = (before - Counter(marked)) - after
    expect(
        not missing,
        "no unmarked message is removed",
        expected="every unmarked message",
        actual=f"missing {dict(missing)}",
    )
    present = _scratch_present(after_client, mailbox, nonces)
    expect_equal(
        "scratch messages left after QUIT (two of three were marked)", expected={nonces[2]}, actual=present
    )
    after_client.quit()
    _remove_scratch(pop, target, mailbox, nonces[2:])


@case(
    "rfc1939/6/quit-releases-lock",
    MUST,
    "1939",
    "6",
    "Whether the removal was successful or not, the server then releases any exclusive-access lock "
    "on the maildrop and closes the TCP connection.",
    ref="rfc1939/6/1",
)
def test_quit_releases_lock_and_closes(pop, target):
    """After ``+OK`` to QUIT the server closes the connection, and a new login succeeds at once."""
    client = pop()
    response = client.command("QUIT", check=False)
    expect_ok(response, "QUIT in TRANSACTION")
    rest = bytes_until_close(client)
    expect(
        rest is not None,
        "server closes the connection after QUIT",
        expected="EOF",
        actual="still open after 10 s",
    )
    expect_equal("nothing after the QUIT reply", expected=b"", actual=rest)
    again = pop(login=False)
    again.user(target.user.user)
    login = again.pass_(target.user.password, check=False)
    expect_ok(login, "login right after the previous session's QUIT (lock released)")


def _abort(client, how):
    """End a session without QUIT."""
    if how == "rst":
        client.reset()
    elif how == "fin":
        client.shutdown_write()
        bytes_until_close(client)
        client.close()
    elif how == "unterminated-quit":
        client.send_raw(b"QUIT")  # no CRLF: not a command
        client.shutdown_write()
        bytes_until_close(client)
        client.close()
    elif how == "rst-mid-retr":
        sizes = client.list()
        largest = max(sizes, key=lambda n: sizes[n])
        client.send_raw(f"RETR {largest}\r\n".encode())
        client.read_line()
        # A small message may already sit whole in the client's buffer; then
        # there is nothing more to wait for, and the reset still lands with
        # the session in TRANSACTION state.
        with contextlib.suppress(ConnectionClosed):
            client.receive_within(1.0)
        client.reset()
    elif how == "tls-truncation":
        client.truncate_tls()  # TCP FIN, no close_notify
    elif how == "tls-close-notify":
        client.close_tls()
    else:
        raise ValueError(how)


@pytest.mark.parametrize(
    "how", ["fin", "rst", "unterminated-quit", "rst-mid-retr", "tls-truncation", "tls-close-notify"]
)
@case(
    "rfc1939/6/no-quit-no-update",
    MUST,
    "1939",
    "6",
    "If a session terminates for some reason other than a client-issued QUIT command, the POP3 "
    "session does NOT enter the UPDATE state and MUST not remove any messages from the maildrop.",
    ref="rfc1939/6/2",
)
def test_session_ending_without_quit_removes_nothing(pop, target, mailbox, how):
    """DELE up to three messages, end the session without QUIT: every message is still there."""
    mode = "plain"
    if how.startswith("tls"):
        mode = "implicit" if target.pop3s else "stls"
    client = pop(mode)
    before = inventory(client, mailbox)
    count, _ = client.stat()
    if count == 0:
        unimplemented("maildrop is empty")
    keep = None
    if how == "rst-mid-retr":  # the message to reset in the middle of is never marked
        sizes = client.list()
        keep = max(sizes, key=lambda n: sizes[n])
    for number in [n for n in range(1, count + 1) if n != keep][:3]:
        client.dele(number)
    _abort(client, how)
    after_client = login_when_unlocked(pop, target)
    after = inventory(after_client, mailbox)
    missing = before - after
    expect(
        not missing,
        f"nothing removed after the session ended by {how}",
        expected="every message",
        actual=dict(missing),
    )
    expect(
        after_client.stat()[0] >= count,
        "message count not lower",
        expected=f">= {count}",
        actual=after_client.stat()[0],
    )


@case(
    "rfc1939/6/never-remove-unmarked",
    MUST,
    "1939",
    "5, 6",
    "If any messages have been marked as deleted by the POP3 server, they are unmarked. [...] The "
    "POP3 server removes all messages marked as deleted from the maildrop [...]. In no case may the "
    "server remove any messages not marked as deleted.",
    ref="rfc1939/6/3",
    destructive=True,
)
def test_random_dele_rset_then_quit_removes_only_marked(pop, target, mailbox, scratch):
    """A random DELE/RSET sequence on scratch messages, then QUIT: exactly the still-marked ones are gone."""
    seed = secrets.randbits(32)
    rng = random.Random(seed)
    nonces = scratch(5)
    client, found = find_scratch(pop, target, mailbox, nonces)
    names = identities(client, mailbox)
    before = Counter(names.values())
    count, _ = client.stat()
    marked: set[str] = set()
    steps = []
    for _ in range(12):
        if rng.random() < 0.2:
            steps.append("RSET")
            response = client.command("RSET", check=False)
            expect_ok(response, f"RSET (seed {seed}, {steps})")
            marked.clear()
        else:
            nonce = rng.choice(nonces)
            steps.append(f"DELE {found[nonce]}")
            response = client.command(f"DELE {found[nonce]}", check=False)
            expected_ok = nonce not in marked
            expect(
                response.ok == expected_ok,
                f"DELE of a {'marked' if nonce in marked else 'unmarked'} message (seed {seed}, {steps})",
                expected="+OK" if expected_ok else "-ERR",
                actual=response.raw,
            )
            marked.add(nonce)
        expect_equal(
            f"STAT count (seed {seed}, {steps})", expected=count - len(marked), actual=client.stat()[0]
        )
    if len(marked) == len(nonces):  # keep at least one unmarked scratch message
        client.rset()
        marked.clear()
        steps.append("RSET")
    if not marked:
        client.dele(found[nonces[0]])
        marked.add(nonces[0])
        steps.append(f"DELE {found[nonces[0]]}")
    response = client.command("QUIT", check=False)
    expect_ok(response, "QUIT")
    client.close()
    after_client = login_when_unlocked(pop, target)
    after = inventory(after_client, mailbox)
    gone = Counter(names[found[nonce]] for nonce in marked)
    missing = (before - gone) - after
    expect(
        not missing,
        f"unmarked messages kept (seed {seed}, {steps})",
        expected="all kept",
        actual=f"missing {dict(missing)}",
    )
    present = _scratch_present(after_client, mailbox, nonces)
    expect_equal(
        f"scratch messages left after QUIT (seed {seed}, {steps})",
        expected=set(nonces) - marked,
        actual=present,
    )
    after_client.quit()
    _remove_scratch(pop, target, mailbox, [nonce for nonce in nonces if nonce not in marked])
