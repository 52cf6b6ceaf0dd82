"""No data loss with a ledger (security-probes.md §4 R1-R3, R5; RFC 1939 §6).

Every message carries a nonce header; the :class:`Ledger` records the
SHA-256 of every accepted delivery, and of every DELE acknowledged by a QUIT
``+OK``.  Reconciling checks the invariant: a message leaves the maildrop only
if it was DELE'd in a session whose QUIT in TRANSACTION was answered, and
every message accepted for delivery is retrievable byte-exact until then.

The simple disconnect cases of test_no_data_loss.py (their ``_end_*``
helpers are reused) are extended here with the ledger, a server restart,
SMTP delivery racing an open session, 2-8 concurrent sessions, ``kill -9``
of a ``pop3suite serve`` process in the middle of UPDATE, and a full disk
(a 2 MiB tmpfs as the mail root).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import secrets
import shutil
import smtplib
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pop3suite.client import ConnectionClosed, Pop3Client
from pop3suite.lab import start_server
from pop3suite.server.config import AUTO_PORT
from pop3suite.server.lab import LabOptions, create_lab
from pop3suite.server.server import ReferenceServer
from pop3suite.server.storage import MaildirStore
from tests.conftest import PASSWORD, RunningServer
from tests.integration.test_no_data_loss import (
    _end_fin,
    _end_rst,
    _end_tls_close_notify,
    _end_tls_truncate,
    open_client,
    read_until_eof,
)

NONCE = re.compile(rb"^X-Ledger-Nonce: ([0-9a-f]+)\r$", re.MULTILINE)


@dataclass
class Ledger:
    """nonce -> SHA-256 of the stored (CRLF) bytes, and the nonces whose
    removal a QUIT +OK acknowledged."""

    delivered: dict[str, str] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def message(size: int = 300) -> tuple[str, bytes]:
        nonce = secrets.token_hex(8)
        body = b"".join(b"%s\r\n" % secrets.token_hex(30).encode() for _ in range(max(1, size // 62)))
        return nonce, b"X-Ledger-Nonce: %s\r\nSubject: ledger\r\n\r\n%s" % (nonce.encode(), body)

    def accept(self, nonce: str, data: bytes) -> None:
        with self.lock:
            self.delivered[nonce] = hashlib.sha256(data).hexdigest()

    def deliver(self, store: MaildirStore, user: str = "alice", size: int = 300) -> str:
        nonce, data = self.message(size)
        store.deliver(user, data)
        self.accept(nonce, data)
        return nonce

    def verify(self, retrieved: bytes) -> str:
        """The nonce of a retrieved message; asserts it is whole."""
        match = NONCE.search(retrieved)
        assert match, f"a message without ledger nonce: {retrieved[:80]!r}"
        nonce = match[1].decode()
        assert nonce in self.delivered, f"unknown message {nonce}"
        assert hashlib.sha256(retrieved).hexdigest() == self.delivered[nonce], f"message {nonce} is not whole"
        return nonce

    def reconcile(self, client: Pop3Client) -> dict[int, str]:
        """RETR everything: each message whole, and the set is exactly the
        delivered minus the acknowledged removals.  number -> nonce."""
        count, _ = client.stat()
        found = {n: self.verify(client.retr(n)) for n in range(1, count + 1)}
        assert len(set(found.values())) == len(found), "a message is duplicated"
        assert set(found.values()) == set(self.delivered) - self.removed
        return found


def login(open_fn, user: str = "alice", patience: float = 10.0) -> Pop3Client:
    deadline = time.monotonic() + patience
    while True:
        try:
            pop = open_fn()
            pop.user(user)
            if pop.pass_(PASSWORD, check=False).ok:
                return pop
            pop.close()
        except (OSError, ConnectionClosed):
            pass
        assert time.monotonic() < deadline, "could not log in again"
        time.sleep(0.1)


# ------------------------------------------------------ R1: seven endings


def _end_idle(pop: Pop3Client) -> None:
    assert pop.sock is not None
    assert read_until_eof(pop.sock, 5) == b""  # the 1 s idle timer closes silently
    pop.close()


def _end_quit_in_authorization(pop: Pop3Client, reopen) -> None:
    """The marking session is reset; another, never logged in, sends QUIT."""
    _end_rst(pop)
    other = reopen()
    other.user("alice")
    assert other.command("QUIT").ok


ENDINGS = ["rst", "fin", "tls-close-notify", "tls-truncate", "idle-timeout", "server-restart", "quit-in-auth"]
MODE = {"tls-close-notify": "implicit", "tls-truncate": "implicit"}


@pytest.mark.parametrize("ending", ENDINGS)
def test_disconnect_before_quit_removes_nothing(ending, server_factory, tls_context, lab):
    """R1: DELE a subset, end the session without QUIT in 7 ways: the ledger reconciles with no removal."""
    ledger = Ledger()
    store = MaildirStore(str(lab.settings.mail_root), fsync=False)
    for _ in range(6):
        ledger.deliver(store)
    running = server_factory(idle_timeout=1 if ending == "idle-timeout" else 30)
    mode = MODE.get(ending, "plain")

    def reopen() -> Pop3Client:
        return open_client(running, mode, tls_context)

    pop = login(reopen)
    for number in (1, 3, 5):
        assert pop.dele(number).ok
    if ending == "rst":
        _end_rst(pop)
    elif ending == "fin":
        _end_fin(pop)
    elif ending == "tls-close-notify":
        _end_tls_close_notify(pop)
    elif ending == "tls-truncate":
        _end_tls_truncate(pop)
    elif ending == "idle-timeout":
        _end_idle(pop)
    elif ending == "server-restart":
        _restart(running)  # ends every session without UPDATE
        pop.close()
    else:
        _end_quit_in_authorization(pop, reopen)
    again = login(reopen)
    ledger.reconcile(again)
    again.quit()


def _restart(running: RunningServer) -> None:
    """Stop the server (sessions end without UPDATE) and start a new one
    with the same settings on the same loop (new ports)."""
    asyncio.run_coroutine_threadsafe(running.server.stop(), running.loop).result(10)
    running.server = ReferenceServer(running.settings)
    asyncio.run_coroutine_threadsafe(running.server.start(), running.loop).result(10)


def test_dele_quit_positive_control(connect, lab):
    """R1 control: DELE + QUIT removes exactly the DELE'd set, acknowledged by +OK."""
    ledger = Ledger()
    store = MaildirStore(str(lab.settings.mail_root), fsync=False)
    for _ in range(6):
        ledger.deliver(store)
    pop = login(lambda: connect("plain", timeout=5))
    found = ledger.reconcile(pop)
    for number in (2, 4):
        pop.dele(number)
    assert pop.command("QUIT").ok
    ledger.removed |= {found[2], found[4]}
    ledger.reconcile(login(lambda: connect("plain", timeout=5)))


# ------------------------------------------- R2: delivery racing a session


def _smtp_send(port: int, data: bytes, user: str = "alice") -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        try:
            smtp.sendmail("racer@example.test", [f"{user}@example.test"], data)
        except smtplib.SMTPResponseException as error:
            return error.smtp_code
        except smtplib.SMTPRecipientsRefused as error:
            return next(iter(error.recipients.values()))[0]
    return 250


def test_smtp_delivery_racing_an_open_session(server_factory, tls_context, lab):
    """R2: M SMTP deliveries while a session has DELE'd some: final = initial - deleted + delivered."""
    ledger = Ledger()
    store = MaildirStore(str(lab.settings.mail_root), fsync=False)
    for _ in range(5):
        ledger.deliver(store)
    running = server_factory(smtp_port=AUTO_PORT)
    smtp_port = running.port("smtp")
    pop = login(lambda: open_client(running, "plain", tls_context))
    found = ledger.reconcile(pop)
    for number in (1, 2):
        pop.dele(number)
    errors: list[BaseException] = []

    def racer(count: int) -> None:
        try:
            for _ in range(count):
                nonce, data = Ledger.message(2000)
                if _smtp_send(smtp_port, data) == 250:
                    ledger.accept(nonce, data)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=racer, args=(5,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for _ in range(10):
        assert pop.stat()[0] == 3  # the login-time snapshot does not grow
        time.sleep(0.02)
    for thread in threads:
        thread.join()
    assert not errors
    assert pop.command("QUIT").ok
    ledger.removed |= {found[1], found[2]}
    assert len(ledger.delivered) == 5 + 15
    ledger.reconcile(login(lambda: open_client(running, "plain", tls_context)))


def test_aborted_smtp_delivery_never_half_written(server_factory, tls_context, lab):
    """R2 crash injection: a DATA cut by a reset before CRLF.CRLF is lost, never stored half-written."""
    ledger = Ledger()
    store = MaildirStore(str(lab.settings.mail_root), fsync=False)
    ledger.deliver(store)
    running = server_factory(smtp_port=AUTO_PORT)
    for cut in (10, 500, 4000):
        _nonce, data = Ledger.message(8000)
        sock = socket.create_connection(("127.0.0.1", running.port("smtp")), timeout=10)
        for line in (
            None,
            b"EHLO x",
            b"MAIL FROM:<a@example.test>",
            b"RCPT TO:<alice@example.test>",
            b"DATA",
        ):
            if line:
                sock.sendall(line + b"\r\n")
            time.sleep(0.05)
            sock.recv(4096)
        sock.sendall(data[:cut])
        time.sleep(0.05)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    time.sleep(0.3)
    ledger.reconcile(login(lambda: open_client(running, "plain", tls_context)))


# -------------------------------------- R3: 2-8 sessions on one maildrop


@pytest.mark.parametrize("sessions", [2, 8])
def test_concurrent_sessions_on_one_maildrop(sessions, server_factory, tls_context, lab):
    """R3: N clients race RETR/DELE/QUIT on one account: losers get [IN-USE]; only QUIT +OK removes."""
    ledger = Ledger()
    store = MaildirStore(str(lab.settings.mail_root), fsync=False)
    for _ in range(4 * sessions):
        ledger.deliver(store)
    running = server_factory()
    codes: list[object] = []
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        rng = random.Random(index)
        try:
            for _round in range(3):
                pop = open_client(running, "plain", tls_context, timeout=10)
                pop.user("alice")
                reply = pop.pass_(PASSWORD, check=False)
                if not reply.ok:
                    codes.append(reply.code)
                    pop.close()
                    time.sleep(rng.uniform(0, 0.05))
                    continue
                found = {n: ledger.verify(pop.retr(n)) for n in pop.list()}
                marked = {n for n in found if rng.random() < 0.3}
                for number in marked:
                    pop.dele(number)
                if rng.random() < 0.3:
                    _end_rst(pop)  # no QUIT: nothing may go
                    continue
                if pop.command("QUIT").ok:
                    with ledger.lock:
                        ledger.removed |= {found[n] for n in marked}
                pop.close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert all(code == ("IN-USE",) for code in codes), codes
    ledger.reconcile(login(lambda: open_client(running, "plain", tls_context)))


# ---------------------------------- R5: kill -9 of the server during UPDATE


@pytest.mark.slow
def test_kill_9_during_update_leaves_messages_whole_or_marked_gone(tmp_path):
    """R5: kill -9 of `pop3suite serve` right after QUIT of 600 marked messages: whole, or gone if marked."""
    ports = {"pop3_port": "auto", "pop3s_port": 0, "smtp_port": 0, "submission_port": 0, "smtps_port": 0}
    lab = create_lab(
        tmp_path / "lab",
        LabOptions(password=PASSWORD, ports=ports, login_failure_delay=0.05, scrypt_n=2**10, fsync=False),
    )
    store = MaildirStore(str(lab.settings.mail_root), fsync=False)
    ledger = Ledger()
    for _ in range(1200):
        ledger.deliver(store, size=1000)
    partial_hits = 0
    for delay in (0.0, 0.005, 0.02):
        server = start_server(lab.config_path)
        try:
            pop = login(lambda server=server: _connect(server.endpoints["pop3"]))
            found = {n: u for n, u in pop.uidl().items()}
            count = len(found)
            marked = set(range(1, count + 1, 2))
            pop.send_raw(b"".join(b"DELE %d\r\n" % n for n in sorted(marked)))
            for _ in marked:
                assert pop.read_response().ok
            numbers = {n: ledger.verify(pop.retr(n)) for n in sorted(set(found) - marked)[:5]}
            assert numbers
            marked_nonces = _nonces_of(lab, marked, found)
            pop.send_raw(b"QUIT\r\n")
            time.sleep(delay)
            server.process.kill()  # SIGKILL, mid-UPDATE (or just before/after it)
            server.process.wait(10)
            pop.close()
        finally:
            server.stop()
        server = start_server(lab.config_path)
        try:
            again = login(lambda server=server: _connect(server.endpoints["pop3"]))
            count_after, _ = again.stat()
            present = {ledger.verify(again.retr(n)) for n in range(1, count_after + 1)}
            again.quit()
        finally:
            server.stop()
        gone = set(ledger.delivered) - ledger.removed - present
        assert gone <= marked_nonces, "an unmarked message disappeared"
        if 0 < len(gone) < len(marked_nonces):
            partial_hits += 1
        ledger.removed |= gone
        assert not list((lab.settings.mail_root / "alice" / "tmp").iterdir()), "half-written files left"
    print(f"kill -9 landed inside UPDATE {partial_hits} of 3 times")


def _connect(port: int) -> Pop3Client:
    client = Pop3Client("127.0.0.1", port, timeout=20)
    client.connect()
    return client


def _nonces_of(lab, marked: set[int], uids: dict[int, str]) -> set[str]:
    """The nonces of the marked messages, read from the files by UID."""
    wanted = {uids[n] for n in marked}
    nonces = set()
    base = Path(lab.settings.mail_root) / "alice"
    from pop3suite.server.storage.maildir import uid_for

    for sub in ("new", "cur"):
        for path in (base / sub).iterdir():
            if uid_for(path.name) in wanted:
                nonces.add(NONCE.search(path.read_bytes())[1].decode())
    return nonces


# ---------------------------------------------------- R5: a full disk


@pytest.fixture
def small_tmpfs(tmp_path) -> Path:
    """A 2 MiB tmpfs (skipped with the reason if it cannot be mounted)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,nr_inodes=64", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs (needs root / CAP_SYS_ADMIN): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_fails_delivery_openly_and_pop_never_loses(small_tmpfs, server_factory, tls_context, lab):
    """R5: a full mail root: SMTP 452/552 (never 250-then-lost); POP serves whole mail or -ERR [SYS/TEMP]."""
    running = server_factory(mail_root=small_tmpfs, smtp_port=AUTO_PORT)
    (small_tmpfs / "bob" / ".pop3.lock").unlink()  # as if bob's maildrop was made by a delivery
    ledger = Ledger()
    codes = []
    for _ in range(80):
        nonce, data = Ledger.message(60_000)
        code = _smtp_send(running.port("smtp"), data)
        codes.append(code)
        if code == 250:
            ledger.accept(nonce, data)
        elif len(codes) > 3 and codes[-2] != 250:
            break
    refusals = [c for c in codes if c != 250]
    assert refusals, "a 2 MiB disk never filled"
    assert all(code in (452, 552) for code in refusals), codes
    # POP on the full disk: bob never logged in, so his lock file cannot be
    # created (no inode left): that is -ERR [SYS/TEMP], not a crash.
    filler = 0
    with contextlib.suppress(OSError):
        while True:
            (small_tmpfs / f"filler-{filler}").touch()
            filler += 1
    pop = open_client(running, "plain", tls_context)
    pop.user("bob")
    reply = pop.pass_(PASSWORD, check=False)
    assert reply.code == ("SYS", "TEMP"), reply.raw
    assert not pop.command("STAT", check=False).ok  # still AUTHORIZATION
    pop.close()
    # alice: every accepted message is there, whole; DELE + QUIT frees space.
    pop = login(lambda: open_client(running, "plain", tls_context))
    found = ledger.reconcile(pop)
    for number in list(found)[: len(found) // 2]:
        pop.dele(number)
        ledger.removed.add(found[number])
    assert pop.command("QUIT").ok
    for index in range(filler):
        (small_tmpfs / f"filler-{index}").unlink()
    nonce, data = Ledger.message(60_000)
    assert _smtp_send(running.port("smtp"), data) == 250
    ledger.accept(nonce, data)
    ledger.reconcile(login(lambda: open_client(running, "plain", tls_context)))
