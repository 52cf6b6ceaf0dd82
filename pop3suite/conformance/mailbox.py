"""Putting the fixtures into the target's maildrop and finding them again.

Routes (``--seed``): ``smtp`` delivers to USER@DOMAIN through the target's
SMTP port; ``maildir:DIR`` writes into the Maildir DIR (tmp/ then new/, the
way a delivery agent does; bare-LF fixtures stay bare LF on disk);
``exec:COMMAND`` runs ``COMMAND USER FILE`` (shell words; e.g. a peer
script's ``seed DIR`` subcommand, which knows the server's own delivery
path: mbox spool, LMTP, ...); ``none`` uses what is there, and cases that need an exact fixture become
UNIMPLEMENTED.

Messages are found by their ``X-Pop3suite-Fixture`` / ``X-Pop3suite-Scratch``
headers, read with ``TOP n 0`` where TOP is advertised (else RETR), and
remembered by UID, so numbering changes between sessions do not matter.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import smtplib
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pop3suite.client import Pop3Client
from pop3suite.proto import CrlfNormalizer, split_message

from .fixtures import Fixture, all_fixtures, fixture_name
from .target import Target

SCRATCH_HEADER = b"X-Pop3suite-Scratch: "


def smtp_wire(data: bytes) -> bytes:
    """``data`` with CRLF line ends, as SMTP DATA must carry it (RFC 5321
    §2.3.8).  smtplib sends bytes as given, and a careful server (ours,
    Postfix) refuses bare LF or CR: the bare-LF fixture only keeps its bare
    LFs on disk by the ``maildir:`` and ``exec:`` routes."""
    normalizer = CrlfNormalizer()
    return normalizer.feed(data) + normalizer.finish()


class SeedError(RuntimeError):
    """The fixtures could not be put into the maildrop."""


@dataclass
class Seeder:
    """Delivers messages into the target user's maildrop by the chosen route."""

    target: Target

    @property
    def route(self) -> str:
        return self.target.seed.split(":", 1)[0]

    @property
    def can_deliver(self) -> bool:
        if self.route == "smtp":
            return self.target.smtp is not None
        return self.route in ("maildir", "exec")

    def deliver(self, data: bytes) -> None:
        if self.route == "maildir":
            self._to_maildir(Path(self.target.seed.split(":", 1)[1]), data)
        elif self.route == "exec":
            self._by_command(self.target.seed.split(":", 1)[1], self.target.user.user, data)
        elif self.route == "smtp" and self.target.smtp is not None:
            recipient = f"{self.target.user.user}@{self.target.domain}"
            with smtplib.SMTP(self.target.smtp.host, self.target.smtp.port, timeout=30) as smtp:
                smtp.sendmail("pop3suite@example.test", [recipient], smtp_wire(data))
        else:
            raise SeedError(f"no delivery route (--seed {self.target.seed}; --smtp not given?)")

    @staticmethod
    def _to_maildir(maildir: Path, data: bytes) -> None:
        unique = f"{int(time.time())}.M{secrets.token_hex(6)}P{os.getpid()}.pop3suite"
        tmp = maildir / "tmp" / unique
        tmp.parent.mkdir(parents=True, exist_ok=True)
        (maildir / "new").mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        stat = maildir.stat()
        with contextlib.suppress(OSError):  # let a privilege-dropping server read what root wrote
            os.chown(tmp, stat.st_uid, stat.st_gid)
        os.rename(tmp, maildir / "new" / unique)

    @staticmethod
    def _by_command(command: str, user: str, data: bytes) -> None:
        """Run ``COMMAND USER FILE`` with the message in a temporary file."""
        words = shlex.split(command)
        if not words:
            raise SeedError("--seed exec: needs a command, e.g. exec:'scripts/peers/cyrus.sh seed DIR'")
        with tempfile.NamedTemporaryFile(prefix="pop3suite-seed-", suffix=".eml") as handle:
            handle.write(data)
            handle.flush()
            os.chmod(handle.name, 0o644)  # a privilege-dropping delivery agent must read it
            try:
                result = subprocess.run(
                    [*words, user, handle.name], capture_output=True, text=True, timeout=120
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise SeedError(f"--seed exec: {words[0]}: {exc}") from exc
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SeedError(f"--seed exec: {words[0]} exited {result.returncode}: {detail[0]}")

    def deliver_scratch(self, count: int = 1, size: int = 200) -> list[str]:
        """Deliver ``count`` small throw-away messages; return their nonces."""
        nonces = []
        for _ in range(count):
            nonce = secrets.token_hex(8)
            body = b"scratch line\r\n" * max(1, size // 14)
            self.deliver(
                b"From: pop3suite@example.test\r\nSubject: scratch\r\n"
                + SCRATCH_HEADER
                + nonce.encode()
                + b"\r\n\r\n"
                + body
            )
            nonces.append(nonce)
        return nonces


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
