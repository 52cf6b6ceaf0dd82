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
* Login does not re-parse the whole Maildir every time (a 10,000-message
  scan cost ~150 ms of CPU): :class:`_Index` keeps, per mailbox, the parsed
  entries and the ``stat`` of ``new/`` and ``cur/``.  Creating, removing or
  renaming a file in a directory changes that directory's mtime, so equal
  stats mean an unchanged listing -- except that mtimes have a granularity
  (a coarse kernel clock tick on ext4/tmpfs, seconds on some filesystems):
  two changes in one tick leave the same mtime.  So a listing is reused only
  if both directories were last modified more than :data:`RACY_SECONDS`
  before the scan that produced it started (git's "racily clean" rule);
  otherwise the next login lists again.  A re-listing still reuses the
  parsed entry of every file name it has seen (a Maildir file's name fixes
  its content), so only new names are parsed.  Files without ``S=``/``W=``
  are stat'ed at every login, as before, because their size is measured.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from pop3suite.proto import MessageInfo, wire_size
from pop3suite.proto.framing import CrlfNormalizer
from pop3suite.proto.limits import MAX_UID_LENGTH

from .base import (
    SESSION_LOCK,
    Maildrop,
    MailStore,
    StorageError,
    StoredMessage,
    UnknownMailbox,
    check_username,
    lock_session,
    unique_name,
)

_SIZE_FIELD = re.compile(r",([SW])=(\d+)")
_VALID_UID = re.compile(rf"[\x21-\x7e]{{1,{MAX_UID_LENGTH}}}")
_SUBDIRS = ("tmp", "new", "cur")

#: A directory modified less than this long before a scan started may change
#: again within the same mtime tick: such a listing is not reused.
RACY_SECONDS = 2.0
#: Mailboxes whose listing is kept (least recently used ones are dropped).
INDEX_MAILBOXES = 2048
#: Up to this many messages, opening an indexed mailbox is cheap enough
#: (well under a millisecond, even when it has to be listed again) to do on
#: the event loop; bigger ones are opened in a worker thread.
INLINE_OPEN_MAX = 500


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
    def __init__(
        self, user_dir: str, lock_fd: int, messages: list[StoredMessage], infos: list[MessageInfo]
    ) -> None:
        self._dir = user_dir
        self._lock_fd: int | None = lock_fd
        self.messages = messages
        #: The same listing as the core's MessageInfo values, made once per
        #: message by the index (building 10,000 of them took ~7 ms a login).
        self.infos = infos

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


DirStamp = tuple[int, int, int, int]  # st_ino, st_mtime_ns, st_ctime_ns, st_size
_Entry = tuple[tuple[int, str], StoredMessage, MessageInfo]  # sort key, message, core's view


def _stamp(path: str) -> DirStamp:
    st = os.stat(path)
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


@dataclass
class _Listing:
    """One mailbox's last scan: directory stamps, parsed entries by name,
    the sorted snapshot, and whether the stamps may be trusted."""

    stamps: tuple[DirStamp, DirStamp]
    entries: dict[str, _Entry]
    messages: list[StoredMessage]
    infos: list[MessageInfo]
    settled: bool  # directories older than RACY_SECONDS at scan time
    unsized: list[tuple[str, int, int]]  # (path, size, mtime_ns) of files without W=


class _Index:
    """Per-mailbox listings, least recently used dropped first."""

    def __init__(self, capacity: int = INDEX_MAILBOXES) -> None:
        self.capacity = capacity
        self._listings: OrderedDict[str, _Listing] = OrderedDict()
        self._lock = threading.Lock()  # logins scan in worker threads
        self.hits = self.rescans = 0

    def get(self, base: str) -> _Listing | None:
        with self._lock:
            listing = self._listings.get(base)
            if listing is not None:
                self._listings.move_to_end(base)
            return listing

    def put(self, base: str, listing: _Listing) -> None:
        with self._lock:
            self._listings[base] = listing
            self._listings.move_to_end(base)
            while len(self._listings) > self.capacity:
                self._listings.popitem(last=False)


def _unsized_unchanged(unsized: list[tuple[str, int, int]]) -> bool:
    for path, size, mtime_ns in unsized:
        try:
            st = os.stat(path)
        except OSError:
            return False
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            return False
    return True


class MaildirStore(MailStore):
    """All accounts' Maildirs under one root directory.

    ``index=False`` lists and parses every Maildir at every login (the
    behaviour before the index; for comparison and for the tests).
    """

    def __init__(self, root: str, fsync: bool = True, index: bool = True) -> None:
        self.root = os.path.abspath(root)
        self.fsync = fsync
        self._size_cache: dict[tuple[str, int, int], tuple[int, bool]] = {}
        self.index: _Index | None = _Index() if index else None

    def cheap_to_open(self, user: str) -> bool:
        """True if ``user``'s mailbox was listed before and is small (see
        :data:`INLINE_OPEN_MAX`): the server may then open it without a
        thread hop.  Unknown and never-listed mailboxes are not cheap."""
        if self.index is None:
            return False
        try:
            listing = self.index.get(self.user_dir(user))
        except StorageError:
            return False
        return listing is not None and len(listing.entries) <= INLINE_OPEN_MAX

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
            os.close(os.open(os.path.join(base, SESSION_LOCK), os.O_RDWR | os.O_CREAT, 0o600))

    def deliver(self, user: str, data: bytes) -> str:
        base = self.user_dir(user)
        if not os.path.isdir(os.path.join(base, "new")):
            raise UnknownMailbox(user)
        normalizer = CrlfNormalizer()
        wire = normalizer.feed(data) + normalizer.finish()
        unique = unique_name()
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
        lock_fd = lock_session(base, user)
        try:
            messages, infos = self._scan(base)
        except OSError as error:
            os.close(lock_fd)
            raise StorageError(str(error)) from error
        return _MaildirDrop(base, lock_fd, messages, infos)

    def _scan(self, base: str) -> tuple[list[StoredMessage], list[MessageInfo]]:
        """The sorted snapshot of ``base`` (called with the lock held)."""
        if self.index is None:
            fresh = self._list(base, None)
            return fresh.messages, fresh.infos
        previous = self.index.get(base)
        if previous is not None and previous.settled:
            stamps = (_stamp(os.path.join(base, "new")), _stamp(os.path.join(base, "cur")))
            if stamps == previous.stamps and _unsized_unchanged(previous.unsized):
                self.index.hits += 1
                return list(previous.messages), list(previous.infos)
        self.index.rescans += 1
        listing = self._list(base, previous)
        self.index.put(base, listing)
        return list(listing.messages), list(listing.infos)

    def _list(self, base: str, previous: _Listing | None) -> _Listing:
        """List ``new/`` and ``cur/``, parsing only names not seen before."""
        started = time.time()
        # Stamps first: a change after this point makes them stale, so the
        # next login lists again instead of trusting a half-seen change.
        stamps = (_stamp(os.path.join(base, "new")), _stamp(os.path.join(base, "cur")))
        known = previous.entries if previous is not None else {}
        entries: dict[str, _Entry] = {}
        unsized: list[tuple[str, int, int]] = []
        for sub in ("new", "cur"):
            with os.scandir(os.path.join(base, sub)) as listing:
                for entry in listing:
                    name = entry.name
                    if name.startswith("."):
                        continue
                    key = sub + "/" + name
                    item = known.get(key)
                    sized = ",S=" in name and ",W=" in name
                    if item is None or not sized:
                        if not sized:
                            st = entry.stat()
                            unsized.append((entry.path, st.st_size, st.st_mtime_ns))
                        size, clean = self._wire_size(entry)
                        uid = uid_for(name)
                        item = (
                            _sort_key(name),
                            StoredMessage(size, uid, entry.path, clean),
                            MessageInfo(size, uid),
                        )
                    entries[key] = item
        ordered = sorted(entries.values(), key=lambda item: item[0])
        # ctime too: it moves with every change and cannot be set back, so a
        # directory whose mtime was reset (touch -d, utime) is not "old".
        newest = max(max(stamp[1], stamp[2]) for stamp in stamps) / 1e9
        settled = newest < started - RACY_SECONDS
        messages = [item[1] for item in ordered]
        return _Listing(stamps, entries, messages, [item[2] for item in ordered], settled, unsized)

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
