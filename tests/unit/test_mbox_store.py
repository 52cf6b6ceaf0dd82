"""The mbox backend on its own (pop3suite/server/storage/mbox.py): format,
quoting, sizes, UIDs, the UPDATE rewrite and damaged files.

Everything runs against real files in a temporary directory; the crash and
disk-full cases live in tests/integration/test_mbox_backend.py.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pop3suite.proto.framing import CrlfNormalizer
from pop3suite.server.storage import MaildropLocked, StorageError, UnknownMailbox
from pop3suite.server.storage.mbox import MboxReadError, MboxStore

VALID_UID = re.compile(r"[\x21-\x7e]{1,70}")


def wire(data: bytes) -> bytes:
    """What RETR must send for ``data`` (before dot-stuffing)."""
    normalizer = CrlfNormalizer()
    return normalizer.feed(data) + normalizer.finish()


def make_store(root: Path, user: str = "alice") -> MboxStore:
    store = MboxStore(str(root), fsync=False, lock_wait=5)
    store.ensure_mailbox(user)
    return store


def contents(store: MboxStore, user: str = "alice", chunk_size: int = 256 * 1024) -> dict[str, bytes]:
    """UID -> wire bytes of every message, in a fresh session."""
    with store.open_maildrop(user) as drop:
        result = {}
        for number, message in enumerate(drop.messages, 1):
            data = b"".join(drop.read_chunks(number, chunk_size))
            assert message.size == len(data), "LIST size must equal the octets RETR sends"
            result[message.uid] = data
        return result


# ------------------------------------------------------- format round trip

#: Pieces that stress mboxrd quoting and line-end handling.
TOKENS = [
    b"From ",
    b">From ",
    b">>From x",
    b"From",
    b">",
    b"\r",
    b"\n",
    b"\r\n",
    b".",
    b"X-UIDL: abc",
    b"Subject: x",
    b" ",
    b"\x00",
    b"\xff",
]
messages = st.lists(st.sampled_from(TOKENS) | st.binary(max_size=6), max_size=25).map(b"".join)


@settings(max_examples=150, deadline=None)
@given(batch=st.lists(messages, min_size=1, max_size=4), chunk_size=st.integers(min_value=1, max_value=9))
@example(batch=[b"From x\n>From y\n>>From z"], chunk_size=1)
@example(batch=[b"", b"\r", b"a\r\r\nb", b"X-UIDL: fake\r\n\r\nbody"], chunk_size=2)
def test_any_message_comes_back_identical_in_wire_form(batch: list[bytes], chunk_size: int) -> None:
    """Delivered bytes come back as their wire form (CRLF, unquoted) with
    LIST size = RETR octets, whatever chunk boundaries the reader uses."""
    with tempfile.TemporaryDirectory() as root:
        store = make_store(Path(root))
        uids = [store.deliver("alice", data) for data in batch]
        assert len(set(uids)) == len(uids)
        expected = {uid: wire(data) for uid, data in zip(uids, batch, strict=True)}
        assert contents(store, chunk_size=chunk_size) == expected
        assert contents(store) == expected
        with store.open_maildrop("alice") as drop:
            assert [drop.open_message(n).read() for n in range(1, len(batch) + 1)] == [
                wire(data) for data in batch
            ]
        disk = (Path(root) / "alice" / "mbox").read_bytes()
        assert not re.search(rb"(?m)^From (?!MAILER-DAEMON )", disk), "a body line escaped quoting"


def test_disk_form_is_lf_mboxrd_with_uid_line(tmp_path: Path) -> None:
    """On disk: From_ line, X-UIDL line, LF line ends, >From quoting, blank separator."""
    store = make_store(tmp_path)
    uid = store.deliver("alice", b"Subject: s\r\n\r\nFrom me\r\n>From you\r\n")
    disk = (tmp_path / "alice" / "mbox").read_bytes()
    assert re.fullmatch(
        rb"From MAILER-DAEMON [A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\n"
        rb"X-UIDL: " + re.escape(uid.encode()) + rb"\nSubject: s\n\n>From me\n>>From you\n\n",
        disk,
    ), disk
    assert store.usage("alice") == len(disk)


# ------------------------------------------------------------------- UIDs


def test_uids_stable_across_sessions_and_rewrites_and_never_reused(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    uids = [store.deliver("alice", b"Subject: %d\r\n\r\nbody\r\n" % i) for i in range(6)]
    assert all(VALID_UID.fullmatch(uid) for uid in uids)
    first = contents(store)
    assert list(first) == uids
    assert contents(store) == first
    with store.open_maildrop("alice") as drop:
        drop.remove([2, 5])
    after = contents(store)
    assert list(after) == [uids[0], uids[2], uids[3], uids[5]]
    assert all(after[uid] == first[uid] for uid in after)
    later = store.deliver("alice", b"Subject: 0\r\n\r\nbody\r\n")  # same bytes as message 1
    assert later not in uids


def test_foreign_mbox_gets_content_uids_frozen_by_the_next_rewrite(tmp_path: Path) -> None:
    """Messages written by another tool (no X-UIDL line) get SHA-1 UIDs,
    distinct for identical copies, and keep them after a rewrite."""
    store = make_store(tmp_path)
    foreign = (
        b"From a@example.test Mon Jan  1 00:00:00 2001\nSubject: same\n\nhi\n\n"
        b"From a@example.test Mon Jan  1 00:00:00 2001\nSubject: same\n\nhi\n\n"
        b"From b@example.test Mon Jan  1 00:00:00 2001\nSubject: other\n\n>From quoted\n\n"
    )
    (tmp_path / "alice" / "mbox").write_bytes(foreign)
    before = contents(store)
    uids = list(before)
    assert len(uids) == 3 and uids[1] == uids[0] + ".2"
    assert before[uids[2]] == b"Subject: other\r\n\r\nFrom quoted\r\n"
    with store.open_maildrop("alice") as drop:
        drop.remove([1])
    after = contents(store)
    assert after == {uid: before[uid] for uid in uids[1:]}
    assert (tmp_path / "alice" / "mbox").read_bytes().count(b"\nX-UIDL: ") == 2


# ---------------------------------------------------------------- UPDATE


def test_remove_nothing_does_not_rewrite(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.deliver("alice", b"x\r\n")
    inode = (tmp_path / "alice" / "mbox").stat().st_ino
    with store.open_maildrop("alice") as drop:
        drop.remove([])
    assert (tmp_path / "alice" / "mbox").stat().st_ino == inode


def test_rewrite_keeps_mail_delivered_during_the_session(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    old = [store.deliver("alice", b"old %d\r\n" % i) for i in range(3)]
    with store.open_maildrop("alice") as drop:
        late = [store.deliver("alice", b"late %d\r\n" % i) for i in range(2)]
        assert [m.uid for m in drop.messages] == old  # the snapshot
        drop.remove([1, 2, 3])
    assert list(contents(store)) == late
    assert not list((tmp_path / "alice").glob(".mbox.rewrite.*"))


def test_concurrent_delivery_during_a_session_and_its_rewrite(tmp_path: Path) -> None:
    """Deliveries from several threads (separate flock descriptions) while a
    session holds the maildrop and rewrites it: every message arrives once."""
    store = make_store(tmp_path)
    for i in range(20):
        store.deliver("alice", b"seed %d\r\n" % i)
    delivered: list[str] = []
    errors: list[BaseException] = []

    def sender(worker: int) -> None:
        try:
            for i in range(25):
                delivered.append(store.deliver("alice", b"From w%d\r\nmsg %d\r\n" % (worker, i)))
        except BaseException as error:  # reported below
            errors.append(error)

    with store.open_maildrop("alice") as drop:
        threads = [threading.Thread(target=sender, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        drop.remove(range(1, 21))
        for thread in threads:
            thread.join()
    assert not errors
    final = contents(store)
    assert sorted(final) == sorted(delivered) and len(delivered) == 100


def test_second_session_is_locked_out(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with store.open_maildrop("alice"), pytest.raises(MaildropLocked):
        store.open_maildrop("alice")
    with store.open_maildrop("alice") as drop:
        assert drop.messages == []


# ------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"Subject: no From line\n\nbody\n\n", "does not begin"),
        (b"From x Mon Jan  1 00:00:00 2001\nSubject: t\n\nbody cut", "truncated"),
        (b"From x Mon Jan  1 00:00:00 2001\nSubject: t\n\nbody\n", "truncated"),
        (b"From x Mon Jan  1 00:00:00 2001", "no line end"),
        (b"From x Mon Jan  1 00:00:00 2001\nX-UIDL: abc", "X-UIDL"),
    ],
    ids=["no-from-line", "cut-mid-line", "no-separator", "from-line-only", "cut-uid-line"],
)
def test_damaged_mbox_is_a_clear_storage_error(tmp_path: Path, content: bytes, reason: str) -> None:
    store = make_store(tmp_path)
    (tmp_path / "alice" / "mbox").write_bytes(content)
    with pytest.raises(StorageError, match=reason):
        store.open_maildrop("alice")
    # The failed login released the session lock.
    (tmp_path / "alice" / "mbox").write_bytes(b"")
    with store.open_maildrop("alice") as drop:
        assert drop.messages == []


def test_delivery_refuses_to_append_after_a_torn_message(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    torn = b"From x Mon Jan  1 00:00:00 2001\nSubject: t\n\nbody cu"
    (tmp_path / "alice" / "mbox").write_bytes(torn)
    with pytest.raises(StorageError, match="not terminated"):
        store.deliver("alice", b"new\r\n")
    assert (tmp_path / "alice" / "mbox").read_bytes() == torn


def test_unknown_and_unsafe_users(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    for user in ("nobody", "../alice", ".hidden"):
        with pytest.raises(UnknownMailbox):
            store.open_maildrop(user)
        with pytest.raises(UnknownMailbox):
            store.deliver(user, b"x")
    assert store.usage("nobody") == 0


def test_file_cut_under_a_session_is_a_read_error_not_garbage(tmp_path: Path) -> None:
    """Another program truncating the mbox under a session: reading fails
    with an error that is both a StorageError ([SYS/TEMP] before RETR's
    first byte) and an OSError (the session ends without UPDATE after it)."""
    store = make_store(tmp_path)
    store.deliver("alice", b"x" * 100_000 + b"\r\n")
    with store.open_maildrop("alice") as drop:
        os.truncate(tmp_path / "alice" / "mbox", 50_000)
        with pytest.raises(MboxReadError) as caught:
            b"".join(drop.read_chunks(1, chunk_size=4096))
        assert isinstance(caught.value, OSError) and isinstance(caught.value, StorageError)
        with pytest.raises(StorageError, match="shrank"):
            drop.remove([1])
