"""The message ledger: every delivered message accounted for.

Each message the run puts into a mailbox (pre-fill or SMTP) carries an
``X-Pop3suite-Nonce`` header; the ledger records the nonce, the account and
the SHA-256 of its RETR form.  POP3 users record every retrieval (nonce,
hash) and whether the session that retrieved it committed a deletion (DELE
then ``+OK`` to QUIT).  At the end the mailboxes are scanned and::

    delivered = removed (retrieved, deleted, committed) + left in mailboxes

Anything delivered that is neither is **lost**.  A message retrieved again
after a committed deletion, or fetched twice by a keep-on-server client
(which must fetch only new UIDs), or still in its mailbox after a committed
deletion, is **duplicated**.  Retrieved bytes whose hash differs from the
delivered hash are **corrupted**.  All three must be 0.

A retrieval in a session that ended without QUIT (timeout, stopped user)
removes nothing: POP3 is at-least-once, so fetching it again later is not a
duplicate.

Ledger events are small tuples so Locust workers can ship them to the master
in ``report_to_master``.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from pop3suite.server.storage import MailStore, UnknownMailbox

NONCE_HEADER = b"X-Pop3suite-Nonce"
_FILLER_LINE = b"The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\r\n"
_FILLER = _FILLER_LINE * (3_000_000 // len(_FILLER_LINE) + 1)


def make_message(nonce: str, size: int, account: str = "user") -> bytes:
    """A CRLF message of about ``size`` octets (at least its headers) with a
    nonce header.  The body is sliced from a constant block: cheap to make."""
    head = (
        b"From: load@example.test\r\nTo: %s@example.test\r\nSubject: load %s\r\n"
        b"Message-ID: <%s@pop3suite.load>\r\n%s: %s\r\n\r\n"
        % (account.encode(), nonce.encode(), nonce.encode(), NONCE_HEADER, nonce.encode())
    )
    room = max(0, size - len(head))
    body = _FILLER[: room - room % len(_FILLER_LINE)]
    while len(body) < room - len(_FILLER_LINE):  # > 3 MB
        body += _FILLER_LINE
    return head + body


def digest(wire: bytes) -> str:
    return hashlib.sha256(wire).hexdigest()


def find_nonce(head: bytes) -> str | None:
    """The nonce from the first octets of a message, if present."""
    at = head.find(NONCE_HEADER + b": ")
    if at < 0:
        return None
    start = at + len(NONCE_HEADER) + 2
    end = head.find(b"\r\n", start)
    return head[start:end].decode("ascii", "replace") if end > 0 else None


class RetrSink:
    """A RETR sink: hashes every chunk and keeps just enough of the head to
    find the nonce.  No per-line work; memory stays bounded."""

    __slots__ = ("_hash", "head", "octets")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.head = b""
        self.octets = 0

    def __call__(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.octets += len(chunk)
        if len(self.head) < 4096:
            self.head += chunk[: 4096 - len(self.head)]

    @property
    def nonce(self) -> str | None:
        return find_nonce(self.head)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


# Event tuples: ("D", nonce, account, sha)       delivered (confirmed)
#               ("P", nonce, account, "")        delivery attempted, outcome unknown
#               ("R", nonce, account, sha, session_id, mode)  retrieved
#               ("C", session_id)                session committed (QUIT +OK after DELE)


@dataclass
class Ledger:
    """Events from every process, then :meth:`reconcile`."""

    events: list[tuple] = field(default_factory=list)

    def delivered(self, nonce: str, account: str, sha: str) -> None:
        self.events.append(("D", nonce, account, sha))

    def pending(self, nonce: str, account: str) -> None:
        self.events.append(("P", nonce, account, ""))

    def retrieved(self, nonce: str | None, account: str, sha: str, session: str, mode: str) -> None:
        self.events.append(("R", nonce or "", account, sha, session, mode))

    def committed(self, session: str) -> None:
        self.events.append(("C", session))

    def drain(self) -> list[tuple]:
        """Hand over the events recorded so far (for report_to_master)."""
        out, self.events = self.events, []
        return out

    def extend(self, events: Iterable[Iterable]) -> None:
        self.events.extend(tuple(e) for e in events)

    def reconcile(self, left: dict[str, str] | None) -> dict:
        """Compare delivered with retrieved and ``left`` (nonce -> account
        found in the mailboxes at the end; None if it could not be scanned).

        Returns:
            A JSON-able report with ``lost``, ``duplicated``, ``corrupted``
            counts and up to 20 examples of each.
        """
        delivered: dict[str, tuple[str, str]] = {}
        pending: set[str] = set()
        commits = {e[1] for e in self.events if e[0] == "C"}
        retrievals: dict[str, list[tuple]] = defaultdict(list)
        for e in self.events:
            if e[0] == "D":
                delivered[e[1]] = (e[2], e[3])
            elif e[0] == "P":
                pending.add(e[1])
            elif e[0] == "R":
                retrievals[e[1]].append(e)
        lost, duplicated, corrupted, unexpected = [], [], [], []
        removed: set[str] = set()
        retr_count = Counter()
        for nonce, items in retrievals.items():
            retr_count[nonce] = len(items)
            if nonce not in delivered:
                if nonce not in pending:
                    unexpected.append(nonce or "(no nonce)")
                continue
            sha = delivered[nonce][1]
            if any(item[3] != sha for item in items):
                corrupted.append(nonce)
            # Retrievals after a committed deletion, or repeated fetches by a
            # keep-on-server client, are duplicates.
            gone = False
            keep_seen = False
            for item in items:
                if gone or (item[5] == "keep" and keep_seen):
                    duplicated.append(nonce)
                    break
                if item[5] == "delete" and item[4] in commits:
                    gone = True
                if item[5] == "keep":
                    keep_seen = True
            if gone:
                removed.add(nonce)
        if left is not None:
            for nonce in delivered:
                if nonce not in removed and nonce not in left:
                    lost.append(nonce)
            for nonce in left:
                if nonce in removed and nonce not in duplicated:
                    duplicated.append(nonce)  # deleted, committed, and still there
        report = {
            "delivered": len(delivered),
            "delivery_outcome_unknown": len(pending - set(delivered)),
            "retrievals": sum(retr_count.values()),
            "retrieved_distinct": len(retr_count),
            "removed": len(removed),
            "left": None if left is None else len(left),
            "lost": None if left is None else len(lost),
            "duplicated": len(duplicated),
            "corrupted": len(corrupted),
            "unexpected": len(unexpected),
            "examples": {
                "lost": lost[:20],
                "duplicated": duplicated[:20],
                "corrupted": corrupted[:20],
                "unexpected": unexpected[:20],
            },
        }
        report["ok"] = left is not None and not (lost or duplicated or corrupted)
        return report


def scan_store(store: MailStore, accounts: Iterable[str]) -> dict[str, str]:
    """Nonces of the messages left in the given accounts, read through the
    storage interface (Maildir or mbox alike) after the run.

    Opening a maildrop takes its lock like a POP3 session would; a mailbox
    that is still locked (a session that outlived the run) raises
    :class:`~pop3suite.server.storage.MaildropLocked`, so the ledger says
    "unknown" rather than guessing."""
    found: dict[str, str] = {}
    for account in accounts:
        try:
            maildrop = store.open_maildrop(account)
        except UnknownMailbox:
            continue
        with maildrop:
            for number in range(1, len(maildrop.messages) + 1):
                with maildrop.open_message(number) as handle:
                    nonce = find_nonce(handle.read(4096))
                if nonce:
                    found[nonce] = account
    return found


def scan_pop3(connect, accounts: dict[str, str]) -> dict[str, str]:
    """Nonces left on a remote server, read with ``TOP n 0``.

    Args:
        connect: a callable returning a connected, unauthenticated
            :class:`~pop3suite.client.Pop3Client`.
        accounts: account -> password.
    """
    found: dict[str, str] = {}
    for account, password in accounts.items():
        pop = connect()
        try:
            pop.login(account, password)
            count, _ = pop.stat()
            for number in range(1, count + 1):
                nonce = find_nonce(pop.top(number, 0))
                if nonce:
                    found[nonce] = account
            pop.quit()
        finally:
            pop.close()
    return found
