"""No session waits for another (issue 16, STYLE.md principle 4).

alice's UPDATE rewrites a big mbox (thousands of messages, tens of MB).  The
rewrite runs in a worker thread, so bob's NOOPs, sent from another logged-in
session while alice's QUIT is outstanding, are answered as fast as ever.
Before the fix, ``maildrop.remove()`` ran on the event loop and bob waited for
the whole rewrite (417 ms for ~6,000 messages / 140 MB in the issue).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from pop3suite.client import Pop3Client
from pop3suite.server.lab import Lab, LabOptions, create_lab
from pop3suite.server.storage.mbox import MBOX_NAME, SENDER, UID_HEADER
from tests.conftest import PASSWORD, open_client

MESSAGES = 6_000
BODY_LINE = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\n"
BODY = BODY_LINE * 250  # ~20 KB per message, ~120 MB in all (the issue: 140 MB)
#: The issue's bound for another session's NOOP during the commit.
NOOP_BOUND = 0.050


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    ports = {"pop3_port": "auto", "pop3s_port": 0, "smtp_port": 0, "submission_port": 0, "smtps_port": 0}
    options = LabOptions(
        password=PASSWORD, ports=ports, login_failure_delay=0.05, scrypt_n=2**10, fsync=False, storage="mbox"
    )
    return create_lab(tmp_path / "lab", options)


def write_big_mbox(path: Path, count: int) -> int:
    """An mboxrd file in the layout MboxStore.deliver writes, made in one
    sequential write (delivering 5,000 messages one by one takes far longer)."""
    stamp = time.asctime(time.gmtime()).encode()
    with open(path, "wb") as handle:
        for i in range(count):
            head = b"From %s %s\n%s%d.big\nSubject: big %d\n\n" % (SENDER, stamp, UID_HEADER, i, i)
            handle.write(head + BODY + b"\n")
        return handle.tell()


def commit_with_noops(port: int) -> tuple[float, list[float]]:
    """alice's DELE 1 + QUIT while bob NOOPs: (commit seconds, NOOP latencies)."""
    alice = Pop3Client("127.0.0.1", port, timeout=60, transcript=False)
    bob = Pop3Client("127.0.0.1", port, timeout=10, transcript=False)
    alice.connect()
    bob.connect()
    alice.login("alice", PASSWORD)
    bob.login("bob", PASSWORD)
    alice.dele(1)
    latencies: list[float] = []
    done = threading.Event()

    def keep_nooping() -> None:
        while not done.is_set():
            started = time.perf_counter()
            bob.noop()
            latencies.append(time.perf_counter() - started)
            time.sleep(0.002)

    nooper = threading.Thread(target=keep_nooping)
    nooper.start()
    try:
        started = time.perf_counter()
        reply = alice.quit()
        commit = time.perf_counter() - started
    finally:
        done.set()
        nooper.join(10)
        alice.close()
    assert reply.ok, reply.raw
    bob.quit()
    bob.close()
    return commit, latencies


def test_update_of_a_big_mbox_does_not_stall_other_sessions(lab):
    """While alice's DELE 1 + QUIT rewrites a ~125 MB mbox, bob's NOOPs (another
    logged-in session) are each answered within 50 ms.

    The server runs as its own process (``pop3suite serve``), as in service.
    On a loaded 2-core CI machine one NOOP can lose 50 ms to the scheduler
    alone, so a second commit gets a second chance; with UPDATE on the event
    loop every attempt fails (137-227 ms here before the fix)."""
    from tests.integration.test_operations import Served

    size = write_big_mbox(Path(lab.settings.mail_root) / "alice" / MBOX_NAME, MESSAGES)
    assert size > 100_000_000
    served = Served(lab, "--log-level", "warning")
    try:
        attempts = []
        for _ in range(2):
            commit, latencies = commit_with_noops(served.ports["pop3"])
            assert latencies, "no NOOP was answered during the commit"
            attempts.append((commit, len(latencies), max(latencies)))
            print(
                f"commit {commit * 1000:.0f} ms, {len(latencies)} NOOPs, max {max(latencies) * 1000:.1f} ms"
            )
            if max(latencies) < NOOP_BOUND:
                break
    finally:
        served.stop()
    slowest = attempts[-1][2]
    assert slowest < NOOP_BOUND, (
        f"NOOPs waited up to {slowest * 1000:.0f} ms during alice's UPDATE: {attempts}"
    )
    assert os.path.getsize(Path(lab.settings.mail_root) / "alice" / MBOX_NAME) < size


def _store_opens(lab: Lab, patience: float = 10.0) -> int:
    """Messages in alice's mbox, once the lock is free (it must become free)."""
    from pop3suite.server.storage import MaildropLocked, open_store

    store = open_store(lab.settings, fsync=False)
    deadline = time.monotonic() + patience
    while True:
        try:
            with store.open_maildrop("alice") as drop:
                return len(drop.messages)
        except MaildropLocked:
            assert time.monotonic() < deadline, "the session lock was never released"
            time.sleep(0.05)


@pytest.mark.parametrize("moment", ["login", "update"])
def test_server_stop_during_storage_work_releases_the_lock(server_factory, lab, tls_context, moment):
    """Stopping the server while a session's mbox scan (login) or rewrite
    (UPDATE) runs in its worker thread lets the work finish, then releases
    the lock: the mbox is whole (6,000 or 5,999 messages) and can be opened."""
    server = server_factory()
    write_big_mbox(Path(lab.settings.mail_root) / "alice" / MBOX_NAME, MESSAGES)
    alice = open_client(server, "plain", tls_context, timeout=60)
    if moment == "login":
        alice.user("alice")
        alice.send_raw(f"PASS {PASSWORD}\r\n".encode())
    else:
        alice.login("alice", PASSWORD)
        alice.dele(1)
        alice.send_raw(b"QUIT\r\n")
    time.sleep(0.02)  # the worker thread has started
    asyncio.run_coroutine_threadsafe(server.server.stop(), server.loop).result(60)
    alice.close()
    assert _store_opens(lab) in (MESSAGES, MESSAGES - 1)
