"""mbox storage (the old ``/var/mail`` spool): one mboxrd file per account.

This backend exists to reproduce what made old POP servers heavy with big
mailboxes (load-workloads.md §3.2): every login reads the **whole file** to
find the messages, and DELE + QUIT rewrites it.  It keeps every rule of
:mod:`pop3suite.server.storage.base` exactly like the Maildir backend; only
the cost differs.  docs/storage.md has the full description.

Layout: ``ROOT/<user>/mbox`` plus two lock files in the same directory,
``.pop3.lock`` (the session lock, the same file the Maildir backend uses) and
``.mbox.lock`` (the short write lock).  A directory per account keeps the
lock files and the rewrite's temporary file next to the mbox, so the final
``rename`` is atomic.

Format (mboxrd, LF line ends like a real spool)::

    From MAILER-DAEMON Sat Nov 28 11:05:42 2026
    X-UIDL: 1764327942.M123456P42Q0R1a2b3c4d
    <message, CRLF -> LF, lines matching ^>*From  quoted with one more '>'>
    <empty line>

* The ``X-UIDL:`` line (qpopper's header) is written at delivery and is
  storage metadata: RETR does not send it and LIST/STAT sizes exclude it, so
  a delivered message comes back byte-identical in wire form.  A message
  without it (written by another tool) gets the SHA-1 of its stored bytes
  (``.2``, ``.3`` ... for identical copies); the next rewrite writes that
  UID into an ``X-UIDL:`` line, so it is frozen from then on.
* Wire form <-> disk form is a bijection: on delivery the wire form (what
  :class:`~pop3suite.proto.framing.CrlfNormalizer` makes of the message)
  loses the CR of every CRLF; on read every LF becomes CRLF again and one
  ``>`` is removed from ``>+From`` lines.  :meth:`read_chunks` yields the
  wire form itself, so messages are ``crlf_clean``.
* Locking: ``.pop3.lock`` is held (flock, non-blocking -> ``[IN-USE]``) for a
  whole POP3 session.  ``.mbox.lock`` is held only briefly: by ``deliver``
  while it appends, by a login while it notes the file size (the snapshot),
  and by the UPDATE rewrite.  So mail is delivered during a POP3 session
  (waiting at most for a rewrite), and the scan itself runs without it:
  everything before the noted size is complete and nobody but the session
  holder changes it.
* UPDATE writes the kept messages and then everything appended since the
  snapshot to ``.mbox.rewrite.*`` in the same directory, fsyncs it, renames
  it over ``mbox`` and fsyncs the directory, all under ``.mbox.lock``.  A
  crash before the rename leaves the old file (and a stale temporary file,
  removed at the next login); after it, the new one.  Nothing is lost or
  duplicated at any point.
* A delivery notes the file size it appends at in ``.mbox.append`` (fsynced
  when the store fsyncs) and clears it when the append is durable.  Whoever
  takes ``.mbox.lock`` next (a delivery, a login, an UPDATE rewrite) first
  finishes a delivery that died half way (:func:`recover_append`): a tail
  that parses as whole messages stays (the process died after writing it);
  anything else is moved to ``mbox.torn.*`` beside the mbox and cut off, so
  the mailbox keeps working and the broken bytes are still there to read.
  The SMTP client never got its 250 for that message, so it sends it again.
* A file that does not begin with ``From`` or whose last message does not end
  with an empty line without such a note (damage by another program) is
  refused with :class:`StorageError` (``[SYS/TEMP]``) until someone repairs it;
  ``deliver`` refuses to append to such a file rather than burying the damage.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import mmap
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

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

MBOX_NAME = "mbox"
WRITE_LOCK = ".mbox.lock"
TEMP_PREFIX = ".mbox.rewrite."
#: Holds the size a delivery in progress appends at (empty when none is).
APPEND_NOTE = ".mbox.append"
#: Bytes of a delivery that died half way, kept beside the mbox for a human.
TORN_PREFIX = "mbox.torn."
UID_HEADER = b"X-UIDL: "
SENDER = b"MAILER-DAEMON"

#: How long ``deliver`` (and a login taking its snapshot) waits for the write
#: lock.  Rewriting a 100 MB mbox takes 0.1-0.2 s here (docs/storage.md): generous.
WRITE_LOCK_WAIT = 60.0

_VALID_UID = re.compile(rb"[\x21-\x7e]{1,%d}" % MAX_UID_LENGTH)
# Line-start patterns begin with a literal LF (fast search); the first line
# of a buffer is handled on its own.
_QUOTE = re.compile(rb"\n(>*From )")
_UNQUOTE = re.compile(rb"\n>(>*From )")
_FROM_FIRST = re.compile(rb">*From ")
#: Quoted From lines after the first line (a leading LF keeps the search fast).
_QUOTED_LINES = re.compile(rb"\n>+From ")
_QUOTED_FIRST = re.compile(rb">+From ")
#: A line start that might still turn into ``>+From `` with more bytes.
_UNDECIDED = re.compile(rb">*(?:F(?:r(?:o(?:m)?)?)?)?")


class MboxReadError(StorageError, OSError):
    """Reading a message failed.  A StorageError (``[SYS/TEMP]`` before the
    first byte of RETR) and an OSError (the session treats it like a broken
    connection once the reply has started: it ends without UPDATE)."""


def disk_form(data: bytes) -> bytes:
    """The stored (LF, mboxrd-quoted) body of ``data``, without From/X-UIDL lines."""
    normalizer = CrlfNormalizer()
    wire = normalizer.feed(data) + normalizer.finish()
    stored = wire.replace(b"\r\n", b"\n")
    if b"From " not in stored:
        return stored
    quoted = _QUOTE.sub(rb"\n>\1", stored)
    return b">" + quoted if _FROM_FIRST.match(quoted) else quoted


def _unquote(data: bytes, at_line_start: bool) -> bytes:
    """Remove one ``>`` from every ``>+From `` line start in ``data``."""
    if b"From " not in data:
        return data
    out = _UNQUOTE.sub(rb"\n\1", data)  # never touches the first line
    return out[1:] if at_line_start and _QUOTED_FIRST.match(out) else out


def wire_chunks(fd: int, start: int, end: int, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
    """The wire form (CRLF, unquoted) of the stored bytes ``[start, end)``.

    A line start near a chunk boundary that could still be a quoted ``From``
    line is carried into the next chunk, so quoting never depends on where
    the chunks fall.
    """
    position, carry, at_line_start = start, b"", True
    while position < end or carry:
        if position < end:
            block = os.pread(fd, min(chunk_size, end - position), position)
            if not block:
                raise MboxReadError("mbox shrank under an open session")
            position += len(block)
            data = carry + block
        else:
            data = carry
        carry = b""
        if position < end:
            newline = data.rfind(b"\n")
            tail = data[newline + 1 :]
            if (newline >= 0 or at_line_start) and _UNDECIDED.fullmatch(tail):
                carry, data = tail, data[: len(data) - len(tail)]
        if not data:
            continue
        out = _unquote(data, at_line_start)
        at_line_start = data.endswith(b"\n")
        yield out.replace(b"\n", b"\r\n")


class _ChunkReader(io.RawIOBase):
    """A read-only binary file over a chunk iterator (for ``open_message``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count


@dataclass(frozen=True)
class _Span:
    """Where one message lives in the file."""

    record: int  # offset of its From line
    body: int  # first stored byte of the message (after From and X-UIDL lines)
    end: int  # offset of the separating empty line (the next record starts at end + 1)
    has_uid_line: bool


def scan(data: bytes | mmap.mmap, path: str) -> tuple[list[StoredMessage], list[_Span]]:
    """Index a whole mbox image: message sizes (wire octets), UIDs, offsets.

    Raises:
        StorageError: the file is not a well-formed mbox (no leading From
            line, a torn last message, a From line without a line end).
    """
    size = len(data)
    if size == 0:
        return [], []
    if data[:5] != b"From ":
        raise StorageError(f"{path}: not an mbox file (it does not begin with a 'From ' line)")
    starts = [0]
    position = data.find(b"\nFrom ")
    while position >= 0:
        starts.append(position + 1)
        position = data.find(b"\nFrom ", position + 1)
    starts.append(size)
    messages: list[StoredMessage] = []
    spans: list[_Span] = []
    seen: set[str] = set()
    for index in range(len(starts) - 1):
        record, record_end = starts[index], starts[index + 1]
        number = index + 1
        line_end = data.find(b"\n", record, record_end)
        if line_end < 0:
            raise StorageError(f"{path}: message {number} at offset {record}: From line has no line end")
        body = line_end + 1
        uid: str | None = None
        has_uid_line = data[body : body + len(UID_HEADER)] == UID_HEADER
        if has_uid_line:
            uid_end = data.find(b"\n", body, record_end)
            if uid_end < 0:
                raise StorageError(f"{path}: message {number} at offset {record}: truncated X-UIDL line")
            value = data[body + len(UID_HEADER) : uid_end].strip()
            if _VALID_UID.fullmatch(value):
                uid = value.decode("ascii")
            body = uid_end + 1
        end = record_end - 1  # the separating empty line
        if end < body or data[end : end + 1] != b"\n" or (end > body and data[end - 1 : end] != b"\n"):
            raise StorageError(
                f"{path}: message {number} at offset {record} does not end with an empty line "
                "(truncated or damaged mbox)"
            )
        stored = data[body:end]
        if uid is None:
            uid = hashlib.sha1(stored).hexdigest()
        if uid in seen:
            suffix = 2
            while f"{uid}.{suffix}" in seen:
                suffix += 1
            uid = f"{uid}.{suffix}"
        seen.add(uid)
        # Every LF becomes CRLF on the wire; every >+From line loses a '>'.
        unquotes = 0
        if b"From " in stored:
            unquotes = len(_QUOTED_LINES.findall(stored)) + (1 if _QUOTED_FIRST.match(stored) else 0)
        wire = len(stored) - unquotes + stored.count(b"\n")
        messages.append(StoredMessage(wire, uid, path, crlf_clean=True))
        spans.append(_Span(record, body, end, has_uid_line))
    return messages, spans


@contextlib.contextmanager
def _flock(path: str, wait: float) -> Iterator[int]:
    """Hold an exclusive flock on ``path`` (created if missing), waiting up
    to ``wait`` seconds for it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise StorageError(f"{path}: {error.strerror}") from error
    try:
        deadline = time.monotonic() + wait
        pause = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise StorageError(f"{path}: {error.strerror}") from error
                if time.monotonic() >= deadline:
                    raise StorageError(f"{path}: mailbox busy (write lock held for {wait:.0f} s)") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
        yield fd
    finally:
        os.close(fd)  # closing the descriptor drops the flock


def _copy_range(src: int, dst: int, start: int, end: int) -> None:
    """Copy ``[start, end)`` of ``src`` to the current end of ``dst``."""
    position = start
    while position < end:
        count = min(end - position, 8 * 1024 * 1024)
        try:
            copied = os.copy_file_range(src, dst, count, position)
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            copied = 0
        if copied == 0:
            block = os.pread(src, count, position)
            if not block:
                raise StorageError("mbox shrank during a rewrite")
            _write_all(dst, block)
            copied = len(block)
        position += copied


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _note_append(user_dir: str, size: int, fsync: bool) -> int:
    """Write down that a delivery now appends at ``size``; returns the
    note's descriptor for :func:`_clear_note`."""
    fd = os.open(os.path.join(user_dir, APPEND_NOTE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 0)
        _write_all(fd, b"%d\n" % size)
        if fsync:
            os.fsync(fd)
    except OSError:
        os.close(fd)
        raise
    return fd


def _clear_note(fd: int) -> None:
    """The append is complete (or undone): nothing is left to recover.  No
    fsync: a note that survives a crash over whole messages is harmless."""
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def recover_append(user_dir: str, fsync: bool = True) -> str | None:
    """Finish a delivery that died half way.  Call with ``.mbox.lock`` held.

    Returns the path of the ``mbox.torn.*`` file the broken tail was moved
    to, or None when there was nothing to cut.
    """
    note_path = os.path.join(user_dir, APPEND_NOTE)
    try:
        with open(note_path, "rb") as handle:
            note = handle.read()
    except FileNotFoundError:
        return None
    if not note:
        return None
    torn_path = None
    path = os.path.join(user_dir, MBOX_NAME)
    try:
        start = int(note.strip().decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        start = -1  # the note itself was cut: the append never began
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if 0 <= start < size and not _whole_messages(fd, start, size, path):
            torn_path = os.path.join(
                user_dir, f"{TORN_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}.{secrets.token_hex(3)}"
            )
            out = os.open(torn_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _copy_range(fd, out, start, size)
                if fsync:
                    os.fsync(out)
            finally:
                os.close(out)
            os.ftruncate(fd, start)
            if fsync:
                os.fsync(fd)
                _fsync_dir(user_dir)
    finally:
        os.close(fd)
    with open(note_path, "r+b") as handle:
        handle.truncate(0)
    return torn_path


def _whole_messages(fd: int, start: int, end: int, path: str) -> bool:
    """Whether bytes ``start:end`` of the mbox are complete messages."""
    tail = os.pread(fd, end - start, start)
    if len(tail) != end - start:
        return False
    try:
        scan(tail, path)
    except StorageError:
        return False
    return True


class _MboxDrop(Maildrop):
    def __init__(
        self,
        store: MboxStore,
        user_dir: str,
        lock_fd: int,
        mbox_fd: int,
        size: int,
        messages: list[StoredMessage],
        spans: list[_Span],
    ) -> None:
        self._store = store
        self._dir = user_dir
        self._path = os.path.join(user_dir, MBOX_NAME)
        self._lock_fd: int | None = lock_fd
        self._mbox_fd: int | None = mbox_fd
        self._size = size
        self._spans = spans
        self.messages = messages

    def read_chunks(self, number: int, chunk_size: int = 256 * 1024) -> Iterator[bytes]:
        """The wire form of message ``number`` (already CRLF, unquoted)."""
        span = self._spans[number - 1] if 1 <= number <= len(self._spans) else None
        if span is None:
            raise IndexError(number)
        if self._mbox_fd is None:
            raise StorageError("maildrop is closed")
        try:
            yield from wire_chunks(self._mbox_fd, span.body, span.end, chunk_size)
        except MboxReadError:
            raise
        except OSError as error:
            raise MboxReadError(f"{self._path}: {error.strerror}") from error

    def open_message(self, number: int) -> BinaryIO:
        self.message(number)  # IndexError for a bad number, now
        return io.BufferedReader(_ChunkReader(self.read_chunks(number)))  # type: ignore[return-value]

    def remove(self, numbers: Iterable[int]) -> None:
        doomed = set(numbers)
        for number in doomed:
            self.message(number)  # IndexError for a number outside the snapshot
        if not doomed:
            return  # nothing to delete: no rewrite, QUIT stays cheap
        if self._mbox_fd is None:
            raise StorageError("maildrop is closed")
        temp = os.path.join(self._dir, f"{TEMP_PREFIX}{os.getpid()}.{secrets.token_hex(4)}")
        try:
            with _flock(os.path.join(self._dir, WRITE_LOCK), self._store.lock_wait):
                self._rewrite(doomed, temp)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise StorageError(f"{self._path}: rewrite failed, nothing removed: {error.strerror}") from error
        except StorageError:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def _rewrite(self, doomed: set[int], temp: str) -> None:
        """Write the kept messages plus mail delivered since login to
        ``temp``, make it durable, then rename it over the mbox."""
        assert self._mbox_fd is not None
        source = self._mbox_fd
        recover_append(self._dir, self._store.fsync)  # a delivery that died during the session
        current = os.stat(self._path)
        mine = os.fstat(source)
        if (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
            raise StorageError(f"{self._path}: replaced by another program during the session")
        if current.st_size < self._size:
            raise StorageError(f"{self._path}: shrank during the session (changed by another program)")
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            pending: tuple[int, int] | None = None  # a run of bytes to copy as it is
            for number, (message, span) in enumerate(zip(self.messages, self._spans, strict=True), 1):
                if number in doomed:
                    continue
                if span.has_uid_line:
                    if pending is not None and pending[1] == span.record:
                        pending = (pending[0], span.end + 1)
                        continue
                    if pending is not None:
                        _copy_range(source, out, *pending)
                    pending = (span.record, span.end + 1)
                    continue
                if pending is not None:
                    _copy_range(source, out, *pending)
                    pending = None
                # Freeze the UID of a foreign message: write it down now.
                _copy_range(source, out, span.record, span.body)
                _write_all(out, UID_HEADER + message.uid.encode("ascii") + b"\n")
                _copy_range(source, out, span.body, span.end + 1)
            if pending is not None:
                _copy_range(source, out, *pending)
            # Mail delivered while the session was open (after the snapshot).
            _copy_range(source, out, self._size, current.st_size)
            if self._store.fsync:
                os.fsync(out)
        finally:
            os.close(out)
        os.rename(temp, self._path)
        if self._store.fsync:
            _fsync_dir(self._dir)

    def close(self) -> None:
        if self._mbox_fd is not None:
            os.close(self._mbox_fd)
            self._mbox_fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None


class MboxStore(MailStore):
    """All accounts' mbox files under one root directory
    (``ROOT/<user>/mbox``)."""

    def __init__(self, root: str, fsync: bool = True, lock_wait: float = WRITE_LOCK_WAIT) -> None:
        self.root = os.path.abspath(root)
        self.fsync = fsync
        self.lock_wait = lock_wait

    def user_dir(self, user: str) -> str:
        return os.path.join(self.root, check_username(user))

    def mbox_path(self, user: str) -> str:
        return os.path.join(self.user_dir(user), MBOX_NAME)

    def ensure_mailbox(self, user: str) -> None:
        base = self.user_dir(user)
        os.makedirs(base, mode=0o700, exist_ok=True)
        # Lock files exist from the start (see MaildirStore.ensure_mailbox).
        for name in (MBOX_NAME, SESSION_LOCK, WRITE_LOCK, APPEND_NOTE):
            with contextlib.suppress(OSError):
                os.close(os.open(os.path.join(base, name), os.O_RDWR | os.O_CREAT, 0o600))

    def deliver(self, user: str, data: bytes) -> str:
        base = self.user_dir(user)
        path = os.path.join(base, MBOX_NAME)
        if not os.path.isfile(path):
            raise UnknownMailbox(user)
        uid = unique_name()
        stamp = time.asctime(time.gmtime()).encode("ascii")
        record = b"".join(
            (
                b"From ",
                SENDER,
                b" ",
                stamp,
                b"\n",
                UID_HEADER,
                uid.encode("ascii"),
                b"\n",
                disk_form(data),
                b"\n",
            )
        )
        with _flock(os.path.join(base, WRITE_LOCK), self.lock_wait):
            # Opened under the lock: a rewrite may have replaced the file.
            try:
                recover_append(base, self.fsync)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            except OSError as error:
                raise StorageError(f"delivery to {user} failed: {error.strerror}") from error
            try:
                size = os.fstat(fd).st_size
                self._check_tail(path, size)
                try:
                    note = _note_append(base, size, self.fsync)
                except OSError as error:
                    raise StorageError(f"delivery to {user} failed: {error.strerror}") from error
                try:
                    _write_all(fd, record)
                    if self.fsync:
                        os.fsync(fd)
                except OSError as error:
                    # Leave the file as it was: no torn message at the end.
                    try:
                        os.ftruncate(fd, size)
                    except OSError:
                        os.close(note)  # the note stays: the next lock holder cuts the tail
                    else:
                        _clear_note(note)
                    raise StorageError(f"delivery to {user} failed: {error.strerror}") from error
                with contextlib.suppress(OSError):
                    _clear_note(note)
            finally:
                os.close(fd)
        return uid

    @staticmethod
    def _check_tail(path: str, size: int) -> None:
        """Refuse to append after a torn last message (it would hide it)."""
        if size == 0:
            return
        with open(path, "rb") as handle:
            handle.seek(max(0, size - 2))
            tail = handle.read(2)
        if tail != b"\n\n":
            raise StorageError(
                f"{path}: last message is not terminated (changed by another program?); not appending"
            )

    def open_maildrop(self, user: str) -> Maildrop:
        base = self.user_dir(user)
        path = os.path.join(base, MBOX_NAME)
        if not os.path.isfile(path):
            raise UnknownMailbox(user)
        lock_fd = lock_session(base, user)
        mbox_fd = -1
        try:
            self._remove_stale_temps(base)
            with _flock(os.path.join(base, WRITE_LOCK), self.lock_wait):
                recover_append(base, self.fsync)
                mbox_fd = os.open(path, os.O_RDONLY)
                size = os.fstat(mbox_fd).st_size
            messages, spans = self._index(mbox_fd, size, path)
        except (OSError, StorageError) as error:
            if mbox_fd >= 0:
                os.close(mbox_fd)
            os.close(lock_fd)
            if isinstance(error, StorageError):
                raise
            raise StorageError(f"{path}: {error.strerror}") from error
        return _MboxDrop(self, base, lock_fd, mbox_fd, size, messages, spans)

    @staticmethod
    def _index(fd: int, size: int, path: str) -> tuple[list[StoredMessage], list[_Span]]:
        """The full scan of the first ``size`` bytes (no index is kept
        between logins: this cost is what the backend models)."""
        if size == 0:
            return [], []
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as image:
            return scan(image, path)

    @staticmethod
    def _remove_stale_temps(base: str) -> None:
        """Drop temporary files of a rewrite that crashed (only the session
        lock holder rewrites, and that is us)."""
        for name in os.listdir(base):
            if name.startswith(TEMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(base, name))

    def usage(self, user: str) -> int:
        try:
            return os.stat(self.mbox_path(user)).st_size
        except FileNotFoundError:
            return 0
