"""Maildir storage (the qmail/Dovecot layout), one directory per account.

Layout: ``ROOT/<user>/{tmp,new,cur}`` plus ``ROOT/<user>/.pop3.lock``.

* Delivery writes ``tmp/<unique>``, fsyncs it, then renames it into
  ``new/<unique>,S=<octets>,W=<wire octets>`` -- a message is either whole in
  ``new/`` or not there at all ("no locks are ever necessary" for Maildir
  delivery).  Delivered mail is stored with CRLF line ends, so RETR can send
  the file as it is, only dot-stuffed.
* The UID is the unique part of the file name (before the first ``,`` or
  ``:``), so it does not change when another program moves a message from
  ``new/`` to ``cur/`` or adds flags (ARCHITECTURE.md, known traps).  A
  unique part that is not a valid UIDL (1-70 octets in 0x21-0x7E) is replaced
  by its SHA-1.
* ``W=`` (Dovecot's virtual size) is the wire size.  Files without it (mail
  written by other tools, possibly with bare LF) are measured once and the
  result is cached by (path, size, mtime).
* The maildrop lock is ``flock`` on ``.pop3.lock``: exclusive between
  sessions in this process and in others, and released by the kernel when a
  process dies, so no stale lock survives a crash.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import os
import re
import secrets
import time
from collections.abc import Iterable
from typing import BinaryIO

from pop3suite.proto import wire_size
from pop3suite.proto.framing import CrlfNormalizer
from pop3suite.proto.limits import MAX_UID_LENGTH

from .base import (
    Maildrop,
    MaildropLocked,
    MailStore,
    StorageError,
    StoredMessage,
    UnknownMailbox,
    check_username,
)

_SIZE_FIELD = re.compile(r",([SW])=(\d+)")
_VALID_UID = re.compile(rf"[\x21-\x7e]{{1,{MAX_UID_LENGTH}}}")
_SUBDIRS = ("tmp", "new", "cur")
_sequence = itertools.count()


def _unique_name() -> str:
    """``<sec>.M<usec>P<pid>Q<seq>R<random>``: sortable by delivery time and
    unique across processes and restarts."""
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return f"{sec}.M{usec:06d}P{os.getpid()}Q{next(_sequence)}R{secrets.token_hex(4)}"


def uid_for(filename: str) -> str:
    """The UIDL for a Maildir file name (stable across moves and flags)."""
    unique = re.split(r"[,:]", filename, maxsplit=1)[0]
    if _VALID_UID.fullmatch(unique):
        return unique
    return hashlib.sha1(unique.encode("utf-8", "surrogateescape")).hexdigest()


def _sort_key(filename: str) -> tuple[int, str]:
    head = filename.split(".", 1)[0]
    return (int(head) if head.isdigit() else 0, filename)


class _MaildirDrop(Maildrop):
    def __init__(self, user_dir: str, lock_fd: int, messages: list[StoredMessage]) -> None:
        self._dir = user_dir
        self._lock_fd: int | None = lock_fd
        self.messages = messages

    def open_message(self, number: int) -> BinaryIO:
        message = self.message(number)
        try:
            return open(message.path, "rb")
        except FileNotFoundError:
            moved = self._find(message.uid)
            if moved is None:
                raise StorageError(f"message {number} vanished") from None
            return open(moved, "rb")
        except OSError as error:
            raise StorageError(str(error)) from error

    def _find(self, uid: str) -> str | None:
        """Where a message is now, if another program moved or renamed it."""
        for sub in ("cur", "new"):
            folder = os.path.join(self._dir, sub)
            for name in os.listdir(folder):
                if uid_for(name) == uid:
                    return os.path.join(folder, name)
        return None

    def remove(self, numbers: Iterable[int]) -> None:
        failed = 0
        for number in numbers:
            message = self.message(number)
            try:
                os.unlink(message.path)
            except FileNotFoundError:
                moved = self._find(message.uid)
                if moved is not None:
                    try:
                        os.unlink(moved)
                    except OSError:
                        failed += 1
            except OSError:
                failed += 1
        if failed:
            raise StorageError(f"{failed} messages not removed")

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None


class MaildirStore(MailStore):
    """All accounts' Maildirs under one root directory."""

    def __init__(self, root: str, fsync: bool = True) -> None:
        self.root = os.path.abspath(root)
        self.fsync = fsync
        self._size_cache: dict[tuple[str, int, int], tuple[int, bool]] = {}

    def user_dir(self, user: str) -> str:
        return os.path.join(self.root, check_username(user))

    def ensure_mailbox(self, user: str) -> None:
        base = self.user_dir(user)
        for sub in _SUBDIRS:
            os.makedirs(os.path.join(base, sub), mode=0o700, exist_ok=True)
        # The lock file exists from the start, so a login still works when
        # the disk (or its inodes) fills up later: the user can then fetch
        # and delete mail to free space instead of getting [SYS/TEMP].
        with contextlib.suppress(OSError):
            os.close(os.open(os.path.join(base, ".pop3.lock"), os.O_RDWR | os.O_CREAT, 0o600))

    def deliver(self, user: str, data: bytes) -> str:
        base = self.user_dir(user)
        if not os.path.isdir(os.path.join(base, "new")):
            raise UnknownMailbox(user)
        normalizer = CrlfNormalizer()
        wire = normalizer.feed(data) + normalizer.finish()
        unique = _unique_name()
        tmp_path = os.path.join(base, "tmp", unique)
        final = os.path.join(base, "new", f"{unique},S={len(wire)},W={len(wire)}")
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(wire)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp_path, final)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(tmp_path)
            raise StorageError(f"delivery to {user} failed: {error.strerror}") from error
        return uid_for(unique)

    def open_maildrop(self, user: str) -> Maildrop:
        base = self.user_dir(user)
        if not os.path.isdir(os.path.join(base, "cur")):
            raise UnknownMailbox(user)
        try:
            lock_fd = os.open(os.path.join(base, ".pop3.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise StorageError(str(error)) from error
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(lock_fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise MaildropLocked(user) from None
            raise StorageError(str(error)) from error
        try:
            messages = self._scan(base)
        except OSError as error:
            os.close(lock_fd)
            raise StorageError(str(error)) from error
        return _MaildirDrop(base, lock_fd, messages)

    def _scan(self, base: str) -> list[StoredMessage]:
        entries: list[tuple[tuple[int, str], StoredMessage]] = []
        for sub in ("new", "cur"):
            with os.scandir(os.path.join(base, sub)) as listing:
                for entry in listing:
                    if entry.name.startswith("."):
                        continue
                    size, clean = self._wire_size(entry)
                    message = StoredMessage(size, uid_for(entry.name), entry.path, clean)
                    entries.append((_sort_key(entry.name), message))
        entries.sort(key=lambda item: item[0])
        return [message for _, message in entries]

    def _wire_size(self, entry: os.DirEntry[str]) -> tuple[int, bool]:
        fields = dict(_SIZE_FIELD.findall(entry.name))
        if "W" in fields and "S" in fields:
            wire, physical = int(fields["W"]), int(fields["S"])
            # Equal sizes mean no bare LF and a final newline: the file is
            # already the wire form.
            return wire, wire == physical
        stat = entry.stat()
        key = (entry.path, stat.st_size, stat.st_mtime_ns)
        cached = self._size_cache.get(key)
        if cached is None:
            with open(entry.path, "rb") as handle:
                size = wire_size(iter(lambda: handle.read(256 * 1024), b""))
            cached = (size, size == stat.st_size)
            self._size_cache[key] = cached
        return cached

    def usage(self, user: str) -> int:
        base = self.user_dir(user)
        total = 0
        for sub in ("new", "cur"):
            folder = os.path.join(base, sub)
            if os.path.isdir(folder):
                with os.scandir(folder) as listing:
                    total += sum(e.stat().st_size for e in listing if not e.name.startswith("."))
        return total
