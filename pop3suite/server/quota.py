"""Mailbox quotas: may this message still go into that mailbox?

The limit of an account is its ``quota_mb`` override, else its plan's entry
in :mod:`pop3suite.server.plans` (see :attr:`AccountSettings.quota_bytes`).
Usage is what the storage says it holds (:meth:`MailStore.usage`), so mail
removed by a POP3 ``DELE`` + ``QUIT`` frees space at once, and mail put
there by ``pop3suite deliver`` or another program counts too.

A delivery is refused when usage + the new message would exceed the limit
(a message that exactly fills the mailbox is accepted).  The provider's
sending side "keeps the mail and gets a permanent error", so the reply is
``552 5.2.2`` (RFC 5321 §4.2.2 / RFC 3463 "mailbox full"); a lab can ask for
the temporary ``452 4.2.2`` instead (``server.quota_tempfail``).  Nothing in
the mailbox is touched either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .config import AccountSettings
from .storage import MailStore

PERMANENT = "552 5.2.2"
TEMPORARY = "452 4.2.2"


@dataclass(frozen=True)
class QuotaExceeded:
    """Why a delivery was refused."""

    user: str
    usage: int
    limit: int
    incoming: int

    def reply(self, address: str, tempfail: bool = False) -> str:
        """The SMTP reply line for this refusal."""
        code = TEMPORARY if tempfail else PERMANENT
        # No sizes in the reply: anyone may send to port 25.
        return f"{code} <{address}>: Mailbox full (quota exceeded)"


class QuotaPolicy:
    """Quota checks for the accounts of one server.

    Args:
        store: the storage whose ``usage(user)`` counts.
        accounts: account settings by name (plan, OS generation, override).
        tempfail: answer 452 4.2.2 instead of 552 5.2.2.
    """

    def __init__(self, store: MailStore, accounts: Mapping[str, AccountSettings], tempfail: bool = False):
        self.store = store
        self.accounts = accounts
        self.tempfail = tempfail

    def limit(self, user: str) -> int | None:
        """The quota of ``user`` in octets, None for no limit."""
        account = self.accounts.get(user)
        return None if account is None else account.quota_bytes

    def check(self, user: str, incoming: int) -> QuotaExceeded | None:
        """None if ``incoming`` more octets fit into ``user``'s mailbox.

        Reads the mailbox directory (blocking I/O): call it off the event
        loop, under the same lock as the delivery it guards.
        """
        limit = self.limit(user)
        if limit is None:
            return None
        usage = self.store.usage(user)
        if usage + incoming > limit:
            return QuotaExceeded(user, usage, limit, incoming)
        return None
