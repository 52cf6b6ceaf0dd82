"""A server under test, with the accounts and mail every figure uses.

:class:`MailPlan` is built once per run and delivered byte for byte to every
target, so both servers of a comparison serve the same messages:

* session accounts: three small messages each (STAT has something to count);
* RETR accounts: ``retr_messages`` x ``retr_message_size`` text messages
  (the other accounts hard-link the first one's files: same page cache);
* ``bulk``: ``bulk_messages`` small messages (UIDL/LIST/login on a big
  mailbox) and ``empty``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .messages import small_message, text_message, wire

HOST = "127.0.0.1"
PASSWORD = "bench-secret"


@dataclass
class MailPlan:
    """The messages, built once and shared by all targets of a run."""

    session_msgs: list[bytes]
    retr_msgs: list[bytes]
    bulk_messages: int

    @classmethod
    def build(cls, retr_messages: int, retr_message_size: int, bulk_messages: int) -> MailPlan:
        return cls(
            [small_message(i) for i in range(3)],
            [text_message(retr_message_size, seed) for seed in range(retr_messages)],
            bulk_messages,
        )

    @property
    def session_stat(self) -> tuple[int, int]:
        return len(self.session_msgs), sum(len(wire(m)) for m in self.session_msgs)

    @property
    def retr_sizes(self) -> list[int]:
        return [len(wire(m)) for m in self.retr_msgs]

    @property
    def retr_digests(self) -> list[str]:
        return sorted(hashlib.sha256(wire(m)).hexdigest() for m in self.retr_msgs)

    def bulk(self) -> list[bytes]:
        return [small_message(i) for i in range(self.bulk_messages)]

    @property
    def bulk_size(self) -> int:
        return sum(len(wire(m)) for m in self.bulk())


@dataclass
class Target:
    """One running server and its benchmark accounts.

    ``session_accounts`` maps a password-scheme label (``PLAIN``,
    ``scrypt 2^14`` ...) to that scheme's accounts, one per concurrent
    session (the maildrop lock is exclusive).  ``root_pid`` is the process
    whose tree is measured (see :mod:`benchlib.meters`).
    """

    name: str
    ports: dict[str, int]  # "none" (plain) and "implicit" (TLS) -> port
    cafile: str
    root_pid: int
    session_accounts: dict[str, list[str]]
    retr_accounts: list[str]
    plan: MailPlan
    bulk_uids: set[str] | None = None  # the UIDs, if the server lets us know them in advance
    stop: Callable[[], None] = lambda: None
    password: str = PASSWORD
    host: str = HOST
    extra: dict[str, Any] = field(default_factory=dict)

    def task(self, kind: str, tls: str, **more: Any) -> dict[str, Any]:
        """A client-process task aimed at this target."""
        return {
            "kind": kind,
            "tls": tls,
            "host": self.host,
            "port": self.ports[tls],
            "cafile": self.cafile,
            "password": self.password,
            **more,
        }


def account_names(concurrency: int, retr: int) -> dict[str, list[str]]:
    """The account names every target gets."""
    return {
        "sessions": [f"s{i}" for i in range(concurrency)],
        "retr": [f"r{i}" for i in range(retr)],
        "special": ["bulk", "empty"],
    }
