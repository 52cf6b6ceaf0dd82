"""No data loss (security-probes.md §4 R1-R3, RFC 1939 §6): mail leaves the
maildrop only through DELE plus QUIT in TRANSACTION.

Every way a session can end without that QUIT -- TCP reset, FIN, TLS close
with or without close_notify, an abort in the middle of a RETR, the idle
timer -- must leave the maildrop exactly as it was.  The exclusive lock,
delivery during an open session and the memory bound of a 100 MB RETR to a
client that stops reading are tested here too.  The session-ending, locking
and delivery cases run on both storage backends (``BOTH_BACKENDS``).
"""

from __future__ import annotations

import gc
import hashlib
import os
import socket
import ssl
import struct
import time
from pathlib import Path

import psutil
import pytest

from pop3suite.client import Pop3Client
from pop3suite.server.lab import Lab, LabOptions, create_lab
from pop3suite.server.storage import open_store
from pop3suite.server.storage.mbox import scan
from tests.conftest import PASSWORD, login_when_free, open_client

MODES = ["plain", "stls", "implicit"]
#: Run a test on a Maildir lab and on an mbox lab (docs/storage.md).
BOTH_BACKENDS = pytest.mark.parametrize("lab", ["maildir", "mbox"], indirect=True)


@pytest.fixture
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Lab:
    """tests/conftest.py's lab, on the storage backend the test is
    parametrised with (maildir unless ``BOTH_BACKENDS``)."""
    ports = {"pop3_port": "auto", "pop3s_port": "auto"}
    ports.update(smtp_port=0, submission_port=0, smtps_port=0)
    options = LabOptions(
        password=PASSWORD,
        ports=ports,
        login_failure_delay=0.05,
        scrypt_n=2**10,
        fsync=False,
        storage=getattr(request, "param", "maildir"),
    )
    return create_lab(tmp_path / "lab", options)


@pytest.fixture
def deliver(lab: Lab):
    """Local delivery through the lab's own backend."""
    return open_store(lab.settings, fsync=False).deliver


# ------------------------------------------------------------------ helpers


def stored_files(lab, user: str = "alice") -> list[str]:
    base = Path(lab.settings.mail_root) / user
    if lab.settings.storage == "mbox":  # read without the lock: a session may hold it
        messages, _ = scan((base / "mbox").read_bytes(), str(base / "mbox"))
        return [f"{m.uid},W={m.size}" for m in messages]
    return sorted(p.name for sub in ("new", "cur") for p in (base / sub).iterdir())


def seed(deliver, count: int = 4, user: str = "alice") -> dict[str, bytes]:
    """Deliver ``count`` messages; return UID -> wire bytes."""
    mail = {}
    for i in range(1, count + 1):
        data = b"Subject: message %d\r\n\r\n.body %d\r\n" % (i, i)
        mail[deliver(user, data)] = data
    return mail


def snapshot(pop: Pop3Client) -> dict[str, bytes]:
    """UID -> message bytes of a logged-in session."""
    uids = pop.uidl()
    return {uid: pop.retr(number) for number, uid in uids.items()}


def read_until_eof(sock: socket.socket, timeout: float) -> bytes:
    """Everything the peer sends until it closes (TLS EOFs count as close)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLEOFError, ConnectionResetError):
            return data
        if not chunk:
            return data
        data += chunk


def rst(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ------------------------------------------------ ending without QUIT


def _end_rst(pop: Pop3Client) -> None:
    assert pop.sock is not None
    rst(pop.sock)
    pop.sock = None


def _end_fin(pop: Pop3Client) -> None:
    assert pop.sock is not None
    tls = isinstance(pop.sock, ssl.SSLSocket)
    pop.sock.shutdown(socket.SHUT_WR)  # on TLS: a bare FIN, no close_notify
    rest = read_until_eof(pop.sock, 5)  # the server closes in turn
    if not tls:
        assert rest == b"", "the server answered a FIN"
    pop.close()


def _end_tls_close_notify(pop: Pop3Client) -> None:
    assert isinstance(pop.sock, ssl.SSLSocket)
    raw = pop.sock.unwrap()  # sends close_notify, waits for the server's
    raw.close()
    pop.sock = None


def _end_tls_truncate(pop: Pop3Client) -> None:
    assert isinstance(pop.sock, ssl.SSLSocket)
    pop.close()  # no close_notify: the TCP connection just ends


def _end_rst_mid_retr(pop: Pop3Client) -> None:
    assert pop.sock is not None
    pop.send_raw(b"RETR 5\r\n")
    assert pop.read_line().startswith(b"+OK")
    pop.sock.recv(1024)
    rst(pop.sock)
    pop.sock = None


ENDINGS = [
    ("rst", "plain", _end_rst),
    ("rst", "stls", _end_rst),
    ("rst", "implicit", _end_rst),
    ("fin", "plain", _end_fin),
    ("fin", "implicit", _end_fin),
    ("tls-close-notify", "stls", _end_tls_close_notify),
    ("tls-close-notify", "implicit", _end_tls_close_notify),
    ("tls-truncate", "implicit", _end_tls_truncate),
    ("rst-mid-retr", "plain", _end_rst_mid_retr),
    ("rst-mid-retr", "implicit", _end_rst_mid_retr),
]


@BOTH_BACKENDS
@pytest.mark.parametrize(("ending", "mode", "end"), ENDINGS, ids=[f"{e}-{m}" for e, m, _ in ENDINGS])
def test_session_ended_without_quit_deletes_nothing(ending, mode, end, connect, deliver, lab):
    """DELE then an end without QUIT (RST, FIN, TLS close, abort mid-RETR) removes nothing (RFC 1939 §6)."""
    mail = seed(deliver)
    big = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 4000  # 4 MB: RETR outlasts a recv
    mail[deliver("alice", big)] = big
    files = stored_files(lab)
    pop = connect(mode, timeout=5)
    pop.login("alice", PASSWORD)
    for number in (1, 2, 4):
        assert pop.dele(number).ok
    end(pop)
    again = login_when_free(lambda: connect(mode, timeout=5))
    assert snapshot(again) == mail
    assert stored_files(lab) == files


@BOTH_BACKENDS
def test_quit_in_authorization_deletes_nothing(connect, deliver, lab):
    """DELE before login is refused and QUIT in AUTHORIZATION removes nothing (RFC 1939 §4, §6)."""
    mail = seed(deliver)
    pop = connect("plain", timeout=5)
    assert not pop.command("DELE 1", check=False).ok
    pop.user("alice")
    assert not pop.command("DELE 2", check=False).ok
    assert pop.command("QUIT").ok
    assert pop.sock is not None and read_until_eof(pop.sock, 5) == b""
    again = connect("plain", timeout=5)
    again.login("alice", PASSWORD)
    assert snapshot(again) == mail


@BOTH_BACKENDS
def test_dele_quit_removes_exactly_marked(connect, deliver, lab):
    """Positive control: DELE 1, 3 and QUIT remove exactly messages 1 and 3 (RFC 1939 §6)."""
    mail = seed(deliver, 5)
    uids = list(mail)
    pop = connect("plain", timeout=5)
    pop.login("alice", PASSWORD)
    pop.dele(1)
    pop.dele(3)
    assert pop.command("QUIT").ok
    again = login_when_free(lambda: connect("plain", timeout=5))
    assert snapshot(again) == {uid: mail[uid] for uid in (uids[1], uids[3], uids[4])}
    assert len(stored_files(lab)) == 3


@pytest.mark.parametrize("mode", MODES)
def test_idle_timeout_closes_silently_without_update(mode, server_factory, tls_context, deliver):
    """On the idle timer the server closes without a response and without UPDATE (RFC 1939 §3, §6)."""
    running = server_factory(idle_timeout=1)
    mail = seed(deliver)
    pop = open_client(running, mode, tls_context)
    pop.login("alice", PASSWORD)
    pop.dele(1)
    pop.dele(2)
    started = time.monotonic()
    assert pop.sock is not None
    assert read_until_eof(pop.sock, 5) == b"", "the server must close silently"
    assert time.monotonic() - started >= 0.9
    again = login_when_free(lambda: open_client(running, mode, tls_context))
    assert snapshot(again) == mail


def test_commands_reset_idle_timer(server_factory, tls_context, deliver):
    """Each command restarts the inactivity timer, so a client sending NOOPs stays connected (RFC 1939 §3)."""
    running = server_factory(idle_timeout=1.5)
    seed(deliver, 1)
    pop = open_client(running, "plain", tls_context)
    pop.login("alice", PASSWORD)
    deadline = time.monotonic() + 2.5  # longer than one timer period
    while time.monotonic() < deadline:
        time.sleep(0.4)
        assert pop.noop().ok
    assert pop.stat()[0] == 1


# ------------------------------------------------------------ locking


@BOTH_BACKENDS
def test_second_login_gets_in_use_only_with_correct_credentials(connect, deliver):
    """A second login gets [IN-USE] only with valid credentials, else [AUTH]; then works (RFC 2449 §8.1.2)."""
    mail = seed(deliver, 2)
    first = connect("plain", timeout=5)
    first.login("alice", PASSWORD)
    first.dele(1)
    second = connect("plain", timeout=5)
    second.user("alice")
    wrong = second.pass_("wrong password", check=False)
    assert not wrong.ok and wrong.code == ("AUTH",)
    second.user("alice")
    busy = second.pass_(PASSWORD, check=False)
    assert not busy.ok and busy.code == ("IN-USE",)
    plain_busy = second.auth_plain("alice", PASSWORD, check=False)
    assert not plain_busy.ok and plain_busy.code == ("IN-USE",)
    plain_wrong = second.auth_plain("alice", "nope", check=False)
    assert not plain_wrong.ok and plain_wrong.code == ("AUTH",)
    assert first.stat()[0] == 1  # the holder is unaffected
    assert first.command("QUIT").ok
    deadline = time.monotonic() + 5
    while True:  # the same connection may retry: it stayed in AUTHORIZATION
        second.user("alice")
        response = second.pass_(PASSWORD, check=False)
        if response.ok:
            break
        assert response.code == ("IN-USE",) and time.monotonic() < deadline
        time.sleep(0.05)
    assert snapshot(second) == {uid: mail[uid] for uid in list(mail)[1:]}


@BOTH_BACKENDS
def test_delivery_during_session_not_in_snapshot_and_survives_quit(connect, deliver):
    """Mail delivered mid-session is not in its numbering and survives its QUIT (RFC 1939 §4-6, R2)."""
    mail = seed(deliver, 3)
    pop = connect("plain", timeout=5)
    pop.login("alice", PASSWORD)
    before = pop.uidl()
    new = {deliver("alice", b"Subject: late %d\r\n\r\nlate\r\n" % i): b"" for i in range(2)}
    assert pop.stat()[0] == 3
    assert pop.uidl() == before
    assert not pop.command("RETR 4", check=False).ok
    assert not pop.command("DELE 4", check=False).ok
    for number in (1, 2, 3):
        pop.dele(number)
    assert pop.command("QUIT").ok
    again = login_when_free(lambda: connect("plain", timeout=5))
    after = snapshot(again)
    assert set(after) == set(new)
    assert not set(after) & set(mail)


# ------------------------------------------------------- streaming RETR


BIG_SIZE = 100 * 1024 * 1024
BIG_LINE = b"x" * 78 + b"\r\n"


def _write_big_message(directory: Path) -> tuple[int, str]:
    """A CRLF-clean 100 MB message written straight into new/; returns size, SHA-256."""
    chunk = BIG_LINE * (1024 * 1024 // len(BIG_LINE))
    header = b"Subject: big\r\n\r\n"
    digest = hashlib.sha256(header)
    size = len(header)
    tmp = directory / "tmp" / "big"
    with open(tmp, "wb") as handle:
        handle.write(header)
        while size + len(chunk) <= BIG_SIZE:
            handle.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    os.rename(tmp, directory / "new" / f"1700000000.M1P1.big,S={size},W={size}")
    return size, digest.hexdigest()


@pytest.mark.slow
def test_retr_of_100_mb_to_stalled_client_keeps_memory_bounded(connect, lab):
    """A 100 MB RETR to a stalled reader keeps server memory bounded, then arrives whole (D5, RFC 1939 §5)."""
    size, sha = _write_big_message(Path(lab.settings.mail_root) / "alice")
    pop = connect("plain", timeout=10)
    pop.login("alice", PASSWORD)
    assert pop.list() == {1: size}
    gc.collect()
    process = psutil.Process()
    baseline = process.memory_info().rss
    pop.send_raw(b"RETR 1\r\n")
    status = pop.read_response()  # reads at most one 256 KiB chunk
    assert status.ok
    time.sleep(2)  # stall: the server must wait, not buffer 100 MB
    grown = process.memory_info().rss - baseline
    assert grown < 50 * 1024 * 1024, f"server RSS grew by {grown / 2**20:.0f} MiB for a stalled RETR"
    digest = hashlib.sha256()
    received = 0

    def sink(chunk: bytes) -> None:
        nonlocal received
        received += len(chunk)
        digest.update(chunk)

    pop.transcript.enabled = False
    pop.read_body(sink)
    assert received == size
    assert digest.hexdigest() == sha
    assert pop.noop().ok
