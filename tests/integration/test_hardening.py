"""Hardening of the reference server (security-probes.md §3.2-3.4): the
absolute pre-login deadline, the per-address connection limit, and their
config keys.  The conformance probes in pop3suite/conformance/security/ check the
same from outside; these pin the mechanism with small settings."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from pop3suite.client import Pop3Client
from pop3suite.proto import Authenticate
from pop3suite.server import config
from pop3suite.server.accounts import Authenticator
from tests.conftest import PASSWORD


def _connect(running) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", running.port()), timeout=10)
    return sock, sock.recv(512)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(512):
            pass
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


def test_trickle_does_not_extend_the_login_deadline(server_factory):
    """D1: one byte every 0.3 s without CRLF is closed by login_timeout=1, though idle_timeout is 30."""
    running = server_factory(login_timeout=1, idle_timeout=30)
    sock, greeting = _connect(running)
    assert greeting.startswith(b"+OK")
    started = time.monotonic()
    closed = False
    while time.monotonic() - started < 5:
        try:
            sock.sendall(b"N")
        except OSError:
            closed = True
            break
        if _closed_within(sock, 0.3):
            closed = True
            break
    took = time.monotonic() - started
    assert closed and 0.9 <= took < 2.5, took
    sock.close()


def test_login_deadline_does_not_apply_after_login(server_factory):
    """The pre-login deadline ends at login: a logged-in session lives by the idle timer."""
    running = server_factory(login_timeout=1, idle_timeout=30)
    pop = Pop3Client("127.0.0.1", running.port(), timeout=10)
    pop.connect()
    pop.login("alice", PASSWORD)
    time.sleep(1.5)
    assert pop.noop().ok
    pop.quit()


def test_per_address_limit_refuses_gracefully_and_recovers(server_factory):
    """D3: beyond max_connections_per_ip the server answers -ERR [SYS/TEMP] and closes; sessions go on."""
    running = server_factory(max_connections_per_ip=3)
    holder = Pop3Client("127.0.0.1", running.port(), timeout=10)
    holder.connect()
    holder.login("alice", PASSWORD)
    others = [_connect(running) for _ in range(2)]
    assert all(greeting.startswith(b"+OK") for _, greeting in others)
    refused, line = _connect(running)
    assert line.startswith(b"-ERR [SYS/TEMP]"), line
    assert _closed_within(refused, 5)
    assert holder.noop().ok
    others[0][0].close()
    deadline = time.monotonic() + 5
    while True:
        sock, greeting = _connect(running)
        sock.close()
        if greeting.startswith(b"+OK"):
            break
        assert time.monotonic() < deadline, "no recovery after a connection closed"
        time.sleep(0.05)
    holder.quit()


def test_zero_means_no_per_address_limit(server_factory):
    running = server_factory(max_connections_per_ip=0)
    socks = [_connect(running) for _ in range(120)]
    assert all(greeting.startswith(b"+OK") for _, greeting in socks)
    for sock, _ in socks:
        sock.close()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("login_timeout = 0", "'server.login_timeout': must be more than 0"),
        ("login_timeout = true", "'server.login_timeout': expected a number"),
        ("max_connections_per_ip = -1", "'server.max_connections_per_ip': must be 0 (no limit) or more"),
        ("max_connections_per_ip = 1.5", "'server.max_connections_per_ip': expected an integer"),
    ],
)
def test_bad_hardening_keys_give_one_line_errors(line, message, tmp_path: Path):
    path = tmp_path / "pop3suite.toml"
    path.write_text(f"[server]\n{line}\n", encoding="utf-8")
    with pytest.raises(config.ConfigError) as error:
        config.load(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_hardening_defaults():
    settings = config.Settings(path=Path("x"))
    assert settings.login_timeout == 180 and settings.max_connections_per_ip == 100


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../b", "~root", "alice\0", "alice/"])
def test_path_like_usernames_are_unknown(lab, name):
    """A15: path-like names are just unknown users (no account lookup by path)."""
    checker = Authenticator(lab.settings.accounts)
    assert checker.check(Authenticate("USER", name, PASSWORD.encode())) is None
