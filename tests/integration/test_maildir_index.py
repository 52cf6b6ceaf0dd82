"""The Maildir listing index (pop3suite/server/storage/maildir.py): a login
reuses the last listing only while ``new/`` and ``cur/`` are unchanged and
were already "settled" (older than RACY_SECONDS) when it was made.

The index must never hide mail: delivered mail appears at the next login,
removed mail disappears, and a change inside one timestamp tick is seen.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pop3suite.server.storage import maildir
from pop3suite.server.storage.maildir import MaildirStore

MSG = b"Subject: index test %d\r\n\r\nbody %d\r\n"


def _message(i: int) -> bytes:
    return MSG % (i, i)


def _snapshot(store: MaildirStore, user: str = "u") -> list[str]:
    drop = store.open_maildrop(user)
    try:
        return [m.uid for m in drop.messages]
    finally:
        drop.close()


@pytest.fixture
def stores(tmp_path: Path) -> tuple[MaildirStore, MaildirStore]:
    """(server's store with the index, another process's delivering store)."""
    server = MaildirStore(str(tmp_path), fsync=False)
    server.ensure_mailbox("u")
    return server, MaildirStore(str(tmp_path), fsync=False, index=False)


@pytest.fixture
def quick_settle(monkeypatch: pytest.MonkeyPatch) -> float:
    """A short racy margin so listings settle within the test (same rule)."""
    monkeypatch.setattr(maildir, "RACY_SECONDS", 0.2)
    return 0.3


def test_settled_listing_is_reused_and_cheap(stores, quick_settle: float) -> None:
    server, other = stores
    uids = [other.deliver("u", _message(i)) for i in range(50)]
    time.sleep(quick_settle)
    assert _snapshot(server) == uids  # lists and settles
    assert _snapshot(server) == uids  # reused
    assert server.index is not None and server.index.hits == 1 and server.index.rescans == 1


def test_mail_delivered_between_logins_appears(stores, quick_settle: float) -> None:
    server, other = stores
    first = other.deliver("u", _message(1))
    time.sleep(quick_settle)
    assert _snapshot(server) == [first]
    assert _snapshot(server) == [first]  # settled, from the index
    second = other.deliver("u", _message(2))
    assert _snapshot(server) == [first, second]


def test_removed_mail_disappears(stores, quick_settle: float) -> None:
    server, other = stores
    uids = [other.deliver("u", _message(i)) for i in range(3)]
    time.sleep(quick_settle)
    assert _snapshot(server) == uids
    drop = server.open_maildrop("u")
    drop.remove([2])  # UPDATE of a session
    drop.close()
    assert _snapshot(server) == [uids[0], uids[2]]


def test_message_moved_to_cur_keeps_its_uid(stores, quick_settle: float) -> None:
    server, other = stores
    uid = other.deliver("u", _message(1))
    time.sleep(quick_settle)
    assert _snapshot(server) == [uid]
    base = Path(server.user_dir("u"))
    (path,) = (base / "new").iterdir()
    os.rename(path, base / "cur" / (path.name + ":2,S"))  # another MUA read it
    drop = server.open_maildrop("u")
    try:
        assert [m.uid for m in drop.messages] == [uid]
        with drop.open_message(1) as handle:  # the path is the new one
            assert handle.read() == _message(1)
    finally:
        drop.close()


def _one_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend every change below happens inside one timestamp tick: each
    directory's stamp stays what it was at its first reading (a coarse
    filesystem clock; the size field is left out so that only the
    timestamps could tell)."""
    real = maildir._stamp
    frozen: dict[str, tuple[int, int, int, int]] = {}

    def stamp_in_one_tick(path: str) -> tuple[int, int, int, int]:
        if path not in frozen:
            ino, mtime, ctime, _ = real(path)
            frozen[path] = (ino, mtime, ctime, 0)
        return frozen[path]

    monkeypatch.setattr(maildir, "_stamp", stamp_in_one_tick)


def test_change_within_one_tick_is_not_missed(stores, monkeypatch: pytest.MonkeyPatch) -> None:
    # The directories were modified within RACY_SECONDS of the scan, so the
    # listing is not settled and the next login lists again.
    _one_tick(monkeypatch)
    monkeypatch.setattr(maildir, "RACY_SECONDS", 60.0)  # however slow the machine is
    server, other = stores
    first = other.deliver("u", _message(1))
    assert _snapshot(server) == [first]
    second = other.deliver("u", _message(2))  # same tick, same stamps
    assert _snapshot(server) == [first, second]


def test_the_racy_rule_is_what_catches_it(stores, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same scenario with the rule switched off (every listing trusted)
    # misses the second message: the test above is not vacuous.
    _one_tick(monkeypatch)
    monkeypatch.setattr(maildir, "RACY_SECONDS", -1e9)
    server, other = stores
    first = other.deliver("u", _message(1))
    assert _snapshot(server) == [first]
    other.deliver("u", _message(2))
    assert _snapshot(server) == [first]


def test_file_without_sizes_changed_in_place_is_remeasured(stores, quick_settle: float) -> None:
    server, _ = stores
    new = Path(server.user_dir("u")) / "new"
    path = new / "1700000000.other-mua"  # no S=/W=: sizes are measured
    path.write_bytes(b"Subject: x\n\nbare LF\n")
    old = os.stat(new)
    time.sleep(quick_settle)
    drop = server.open_maildrop("u")
    size = drop.messages[0].size
    drop.close()
    path.write_bytes(b"Subject: x\n\nbare LF, now longer\n")  # no directory change
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns + 5_000_000_000))
    drop = server.open_maildrop("u")
    try:
        assert drop.messages[0].size == size + len(", now longer")
    finally:
        drop.close()


def test_server_sees_delivery_and_dele_across_logins(
    connect: Callable[..., object], deliver: Callable[[str, bytes], str]
) -> None:
    """End to end through the server: STAT follows the mailbox."""
    pop = connect()
    pop.login("alice", "s3cret pass")
    assert pop.stat()[0] == 0
    pop.quit()
    deliver("alice", _message(1))
    deliver("alice", _message(2))
    pop = connect()
    pop.login("alice", "s3cret pass")
    assert pop.stat()[0] == 2
    pop.dele(1)
    pop.quit()
    pop = connect()
    pop.login("alice", "s3cret pass")
    assert pop.stat()[0] == 1
    assert list(pop.uidl().values()) != []
    pop.quit()
