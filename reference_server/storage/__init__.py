"""Mail storage behind one interface, numbered from 1 like the protocol.

:class:`~reference_server.storage.base.MailStore` is what the server and the
``deliver`` command use; :class:`~reference_server.storage.maildir.MaildirStore`
is the implementation.  An mbox backend can be added behind the same interface.
"""

from .base import Maildrop, MaildropLocked, MailStore, StorageError, StoredMessage
from .maildir import MaildirStore

__all__ = ["MailStore", "MaildirStore", "Maildrop", "MaildropLocked", "StorageError", "StoredMessage"]
