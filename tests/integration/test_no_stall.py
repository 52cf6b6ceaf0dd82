"""No session waits for another (issue 16, STYLE.md principle 4).

alice's UPDATE rewrites a big mbox (thousands of messages, tens of MB).  The
rewrite runs in a worker thread, so bob's NOOPs, sent from another logged-in
session while alice's QUIT is outstanding, are answered as fast as ever.
Before the fix, ``maildrop.remove()`` ran on the event loop and bob waited for
the whole rewrite (417 ms for ~6,000 messages / 140 MB in the issue).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from reference_server.lab import Lab, LabOptions, create_lab
from reference_server.storage.mbox import MBOX_NAME, SENDER, UID_HEADER
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


def test_update_of_a_big_mbox_does_not_stall_other_sessions(server_factory, lab, tls_context):
    """While alice's DELE 1 + QUIT rewrites a ~120 MB mbox, bob's NOOPs (another
    logged-in session) are each answered within 50 ms."""
    server = server_factory()
    size = write_big_mbox(Path(lab.settings.mail_root) / "alice" / MBOX_NAME, MESSAGES)
    assert size > 100_000_000
    alice = open_client(server, "plain", tls_context, timeout=60)
    alice.login("alice", PASSWORD)
    assert alice.stat()[0] == MESSAGES
    bob = open_client(server, "plain", tls_context, timeout=10)
    bob.login("bob", PASSWORD)
    alice.dele(1)

    latencies: list[float] = []
    committing = threading.Event()
    done = threading.Event()

    def keep_nooping() -> None:
        committing.wait(10)
        while not done.is_set():
            started = time.perf_counter()
            bob.noop()
            latencies.append(time.perf_counter() - started)
            time.sleep(0.002)

    nooper = threading.Thread(target=keep_nooping)
    nooper.start()
    try:
        committing.set()
        started = time.perf_counter()
        reply = alice.quit()
        commit = time.perf_counter() - started
    finally:
        done.set()
        nooper.join(10)
    assert reply.ok, reply.raw
    assert latencies, "no NOOP was answered during the commit"
    print(f"commit {commit * 1000:.0f} ms, {len(latencies)} NOOPs, max {max(latencies) * 1000:.1f} ms")
    assert max(latencies) < NOOP_BOUND, (
        f"a NOOP waited {max(latencies) * 1000:.0f} ms while alice's UPDATE ({commit * 1000:.0f} ms) ran"
    )
    assert os.path.getsize(Path(lab.settings.mail_root) / "alice" / MBOX_NAME) < size
    bob.quit()
