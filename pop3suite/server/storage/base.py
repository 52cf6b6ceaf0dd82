"""The storage interface the POP3 server and local delivery share.

Rules every backend keeps (RFC 1939 §§4-7):

* A :class:`Maildrop` is a snapshot taken at login.  Messages are numbered
  1..n in that snapshot and keep their numbers for the whole session, even
  when new mail is delivered meanwhile.
* ``size`` is the number of octets RETR sends (CRLF line ends, before
  dot-stuffing), so LIST and RETR agree even for mail stored with bare LF.
* ``uid`` is 1-70 characters in 0x21-0x7E, stable across sessions and never
  reused for another message.
* Only :meth:`Maildrop.remove` (called for QUIT in TRANSACTION) removes
  mail, and it removes exactly the numbers it is given.
* Opening a maildrop takes an exclusive lock, released by :meth:`Maildrop.close`
  (and by the kernel if the process dies).
"""

from __future__ import annotations

import abc
import errno
import fcntl
import itertools
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

#: Login names that can be used as a directory name without any chance of
#: leaving the mail root: no slash, no leading dot, no "..", bounded length.
SAFE_USERNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,63}")


class StorageError(Exception):
    """The storage failed (I/O error, disk full): answer ``[SYS/TEMP]``."""


class MaildropLocked(StorageError):
    """Another session holds the maildrop lock: answer ``[IN-USE]``."""


_sequence = itertools.count()


def unique_name() -> str:
    """``<sec>.M<usec>P<pid>Q<seq>R<random>``: sortable by delivery time and
    unique across processes and restarts (a Maildir file name, an mbox UID)."""
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return f"{sec}.M{usec:06d}P{os.getpid()}Q{next(_sequence)}R{secrets.token_hex(4)}"


#: The per-mailbox session lock file (both backends): held with flock for
#: the whole POP3 session, released by the kernel if the process dies.
SESSION_LOCK = ".pop3.lock"


def lock_session(directory: str, user: str) -> int:
    """Take ``user``'s exclusive session lock in ``directory``; its fd.

    Raises:
        MaildropLocked: another session holds it (``[IN-USE]``).
        StorageError: the lock file cannot be opened or locked.
    """
    try:
        lock_fd = os.open(os.path.join(directory, SESSION_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise StorageError(str(error)) from error
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(lock_fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise MaildropLocked(user) from None
        raise StorageError(str(error)) from error
    return lock_fd


class UnknownMailbox(StorageError):
    """No mailbox for that user."""


@dataclass(frozen=True)
class StoredMessage:
    """One message in a maildrop snapshot."""

    size: int  # wire octets (CRLF, unstuffed)
    uid: str
    path: str
    crlf_clean: bool  # stored bytes are already exactly the wire form


def check_username(user: str) -> str:
    """Return ``user`` if it is safe as a directory name, else raise
    :class:`UnknownMailbox` (a path-like name is just an unknown user)."""
    if not SAFE_USERNAME.fullmatch(user) or ".." in user:
        raise UnknownMailbox(user)
    return user


class Maildrop(abc.ABC):
    """An open, locked mailbox snapshot."""

    messages: list[StoredMessage]

    def message(self, number: int) -> StoredMessage:
        """Message ``number`` (1-based)."""
        if not 1 <= number <= len(self.messages):
            raise IndexError(number)
        return self.messages[number - 1]

    @abc.abstractmethod
    def open_message(self, number: int) -> BinaryIO:
        """A binary file positioned at the start of message ``number``'s
        stored bytes (which may use bare LF)."""

    def read_chunks(self, number: int, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """The stored bytes of message ``number`` in chunks."""
        with self.open_message(number) as handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    @abc.abstractmethod
    def remove(self, numbers: Iterable[int]) -> None:
        """UPDATE: remove exactly these messages.

        Raises:
            StorageError: some could not be removed (the others were).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the lock.  Safe to call twice."""

    def __enter__(self) -> Maildrop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MailStore(abc.ABC):
    """All mailboxes of one server."""

    @abc.abstractmethod
    def deliver(self, user: str, data: bytes) -> str:
        """Store one message atomically; return its UID."""

    @abc.abstractmethod
    def open_maildrop(self, user: str) -> Maildrop:
        """Lock and snapshot ``user``'s mailbox.

        Raises:
            MaildropLocked: another session has it.
            UnknownMailbox: there is no such mailbox.
        """

    @abc.abstractmethod
    def ensure_mailbox(self, user: str) -> None:
        """Create ``user``'s empty mailbox if it does not exist."""

    @abc.abstractmethod
    def usage(self, user: str) -> int:
        """Octets currently stored for ``user`` (for quotas)."""
