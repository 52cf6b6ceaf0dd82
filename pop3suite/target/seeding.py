"""Putting messages into the target user's maildrop, by the route the target names.

Routes (``--seed``): ``smtp`` delivers to USER@DOMAIN through the target's
SMTP port; ``maildir:DIR`` writes into the Maildir DIR (tmp/ then new/, the
way a delivery agent does; bare-LF fixtures stay bare LF on disk);
``exec:COMMAND`` runs ``COMMAND USER FILE`` (shell words; e.g. a peer
script's ``seed DIR`` subcommand, which knows the server's own delivery
path: mbox spool, LMTP, ...); ``none`` delivers nothing.

Shared by the conformance suite (its fixtures and scratch messages), the
client matrix (``pop3suite clients``) and the broken-server tests, so it sits
with the target, not in one of them.
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
from dataclasses import dataclass
from pathlib import Path

from pop3suite.proto import CrlfNormalizer

from .model import Target

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
