"""Seeding the fixtures into the target's maildrop and finding them again.

The delivery itself (``--seed`` routes) is :class:`pop3suite.target.seeding.Seeder`;
``--seed none`` uses what is there, and cases that need an exact fixture
become UNIMPLEMENTED.

Messages are found by their ``X-Pop3suite-Fixture`` / ``X-Pop3suite-Scratch``
headers, read with ``TOP n 0`` where TOP is advertised (else RETR), and
remembered by UID, so numbering changes between sessions do not matter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from pop3suite.client import Pop3Client
from pop3suite.proto import split_message
from pop3suite.target.fixtures import Fixture, all_fixtures, fixture_name
from pop3suite.target.model import Target
from pop3suite.target.seeding import SCRATCH_HEADER, Seeder


def read_head(pop: Pop3Client, number: int, top: bool) -> bytes:
    """The header block of message ``number``."""
    data = pop.top(number, 0) if top else pop.retr(number)
    return split_message(data)[0]


def _scratch_nonce(head: bytes) -> str | None:
    start = head.find(SCRATCH_HEADER)
    if start < 0:
        return None
    end = head.find(b"\n", start)
    return head[start + len(SCRATCH_HEADER) : end].strip().decode("ascii", "replace")


@dataclass
class MailboxIndex:
    """Where the fixtures are, by UID (or by header scan if UIDL is missing)."""

    use_top: bool
    use_uidl: bool
    fixture_uids: dict[str, str] = field(default_factory=dict)
    fixtures: dict[str, Fixture] = field(default_factory=dict)

    def scan(self, pop: Pop3Client) -> dict[int, bytes]:
        """message number -> header block, for every message."""
        count, _ = pop.stat()
        return {n: read_head(pop, n, self.use_top) for n in range(1, count + 1)}

    def locate(self, pop: Pop3Client, name: str) -> int | None:
        """The number of fixture ``name`` in this session, or None."""
        if self.use_uidl and name in self.fixture_uids:
            for number, uid in pop.uidl().items():
                if uid == self.fixture_uids[name]:
                    return number
            return None
        for number, head in self.scan(pop).items():
            if fixture_name(head) == name:
                return number
        return None

    def locate_scratch(self, pop: Pop3Client, nonces: list[str]) -> dict[str, int]:
        """nonce -> message number for scratch messages in this session."""
        # Skip known fixtures only by their own header, never by UID: on a
        # server whose UIDs are message numbers a scratch message could
        # carry a fixture's old UID.
        found: dict[str, int] = {}
        count, _ = pop.stat()
        for number in range(1, count + 1):
            nonce = _scratch_nonce(read_head(pop, number, self.use_top))
            if nonce in nonces:
                found[nonce] = number
        return found


def build_index(target: Target, seeder: Seeder, capabilities: set[str], wait: float = 30.0) -> MailboxIndex:
    """Seed missing fixtures (unless ``--seed none``) and index the maildrop."""
    index = MailboxIndex(use_top="TOP" in capabilities, use_uidl="UIDL" in capabilities)
    wanted = all_fixtures()
    index.fixtures = dict(wanted)

    def survey() -> dict[str, str]:
        with target.client("plain" if target.pop3 else "implicit") as pop:
            pop.login(target.user.user, target.user.password)
            found: dict[str, str] = {}
            uids = pop.uidl() if index.use_uidl else {}
            for number, head in index.scan(pop).items():
                name = fixture_name(head)
                if name in wanted and name not in found:
                    found[name] = uids.get(number, str(number))
            pop.quit()
        return found

    present = survey()
    missing = [name for name in wanted if name not in present]
    if missing and seeder.can_deliver:
        for name in missing:
            seeder.deliver(wanted[name].data)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            present = survey()
            if all(name in present for name in wanted):
                break
            time.sleep(0.5)
    index.fixture_uids = present
    return index
