"""Mail storage behind one interface, numbered from 1 like the protocol.

:class:`~pop3suite.server.storage.base.MailStore` is what the server and the
``deliver`` command use.  Two implementations: :class:`MaildirStore` (one
file per message) and :class:`MboxStore` (one mboxrd file per account,
scanned at every login, like old spool servers).  :func:`open_store` builds
the one a lab's settings ask for (``server.storage``, per account
``accounts.NAME.storage``; docs/storage.md), so callers never pick a class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .base import Maildrop, MaildropLocked, MailStore, StorageError, StoredMessage, UnknownMailbox
from .maildir import MaildirStore
from .mbox import MboxStore

if TYPE_CHECKING:  # config imports storage.base: no import cycle at run time
    from pop3suite.server.config import Settings

__all__ = [
    "MailStore",
    "MaildirStore",
    "Maildrop",
    "MaildropLocked",
    "MboxStore",
    "RoutingStore",
    "StorageError",
    "StoredMessage",
    "UnknownMailbox",
    "make_store",
    "open_store",
]


def make_store(kind: str, root: str, fsync: bool = True) -> MailStore:
    """One backend by name ("maildir" or "mbox") over ``root``.

    Raises:
        ValueError: an unknown backend name.
    """
    if kind == "maildir":
        return MaildirStore(root, fsync=fsync)
    if kind == "mbox":
        return MboxStore(root, fsync=fsync)
    raise ValueError(f"unknown storage {kind!r} (known: maildir, mbox)")


class RoutingStore(MailStore):
    """Several backends under one mail root: each account goes to the one
    its settings name, every other name to ``default``.

    Both layouts keep an account in ``ROOT/<user>/`` (Maildir: ``cur``,
    ``new``, ``tmp``; mbox: ``mbox``), so they share the root and the
    session lock file.
    """

    def __init__(self, default: MailStore, routes: Mapping[str, MailStore]) -> None:
        self.default = default
        self.routes = dict(routes)

    def backend(self, user: str) -> MailStore:
        """The store that holds ``user``'s mailbox."""
        return self.routes.get(user, self.default)

    def deliver(self, user: str, data: bytes) -> str:
        return self.backend(user).deliver(user, data)

    def open_maildrop(self, user: str) -> Maildrop:
        return self.backend(user).open_maildrop(user)

    def ensure_mailbox(self, user: str) -> None:
        self.backend(user).ensure_mailbox(user)

    def usage(self, user: str) -> int:
        return self.backend(user).usage(user)


def open_store(settings: Settings, fsync: bool | None = None) -> MailStore:
    """The store for a lab: ``settings.storage`` for every account, except
    accounts whose own ``storage`` differs (then a :class:`RoutingStore`).

    Args:
        settings: validated settings (``pop3suite.server.config.load``).
        fsync: override ``settings.fsync`` (pre-filling a lab skips fsync).
    """
    root = str(settings.mail_root)
    durable = settings.fsync if fsync is None else fsync
    default_kind = getattr(settings, "storage", "maildir")
    stores = {default_kind: make_store(default_kind, root, durable)}
    routes: dict[str, MailStore] = {}
    for name, account in settings.accounts.items():
        kind = getattr(account, "storage", None) or default_kind
        if kind != default_kind:
            if kind not in stores:
                stores[kind] = make_store(kind, root, durable)
            routes[name] = stores[kind]
    if not routes:
        return stores[default_kind]
    return RoutingStore(stores[default_kind], routes)
