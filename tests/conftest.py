"""Shared fixtures: a lab on free ports and the reference server running in a
background thread with its own event loop (real sockets, real TLS).

``server_factory(**overrides)`` starts a server whose settings differ from the
lab's (e.g. ``idle_timeout=1``); every server is stopped at test end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pop3suite.client import Pop3Client
from pop3suite.server.config import AUTO_PORT
from pop3suite.server.lab import Lab, LabOptions, create_lab
from pop3suite.server.server import ReferenceServer

PASSWORD = "s3cret pass"  # a space on purpose: RFC 1939 §7 passwords may contain spaces


class RunningServer:
    """A ReferenceServer on its own event loop thread."""

    def __init__(self, server: ReferenceServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> RunningServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def port(self, name: str = "pop3") -> int:
        return next(e.port for e in self.server.endpoints if e.name == name)

    @property
    def settings(self):
        return self.server.settings


def open_client(
    running: RunningServer,
    mode: str,
    tls_context: ssl.SSLContext,
    timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
) -> Pop3Client:
    """A connected client for a server started with ``server_factory``
    (``ssl_context`` overrides ``tls_context``, e.g. for a later STLS)."""
    tls_context = ssl_context or tls_context
    if mode == "implicit":
        client = Pop3Client(
            "127.0.0.1", running.port("pop3s"), tls="implicit", ssl_context=tls_context, timeout=timeout
        )
    elif mode == "stls":
        client = Pop3Client("127.0.0.1", running.port(), tls="stls", ssl_context=tls_context, timeout=timeout)
    else:
        client = Pop3Client("127.0.0.1", running.port(), ssl_context=tls_context, timeout=timeout)
    client.connect()
    return client


def login_when_free(
    open_fn: Callable[[], Pop3Client], user: str = "alice", patience: float = 5.0
) -> Pop3Client:
    """Log in, retrying while the ended session's lock is still being released."""
    deadline = time.monotonic() + patience
    while True:
        pop = open_fn()
        pop.user(user)
        response = pop.pass_(PASSWORD, check=False)
        if response.ok:
            return pop
        pop.close()
        assert response.code == ("IN-USE",), response.raw
        assert time.monotonic() < deadline, "maildrop still locked after the session ended"
        time.sleep(0.05)


ROOT = Path(__file__).resolve().parents[1]


def run_pop3suite(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``python -m pop3suite ARGS`` from the project root, output captured as text.

    The timeout is generous on purpose: a busy 2-core CI machine runs
    these next to the Dovecot conformance run."""
    return subprocess.run(
        [sys.executable, "-m", "pop3suite", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


#: Modules that mostly wait on a real peer (Dovecot's ~4.5 s auth penalty
#: after each deliberate bad login): run first, so that with
#: ``pytest -n 2 --dist loadfile`` (./dev test) one worker waits on them
#: while the other runs everything else.
LONG_WAITING_MODULES = ("tests/integration/test_conformance_runs.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: not item.nodeid.startswith(LONG_WAITING_MODULES))


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    """A fresh lab: accounts alice, bob (USER/PASS) and carol (APOP), password PASSWORD."""
    ports = {"pop3_port": "auto", "pop3s_port": "auto"}
    ports.update(smtp_port=0, submission_port=0, smtps_port=0)
    options = LabOptions(
        password=PASSWORD, ports=ports, login_failure_delay=0.05, scrypt_n=2**10, fsync=False
    )
    return create_lab(tmp_path / "lab", options)


@pytest.fixture
def server_factory(lab: Lab) -> Iterator[Callable[..., RunningServer]]:
    """Start a server for the lab, with settings overrides as keyword args."""
    started: list[RunningServer] = []

    def start(**overrides: object) -> RunningServer:
        # Any port a test asks for is bound as "auto": the OS picks a free
        # one at bind time, so parallel runs on one machine cannot collide.
        for key, value in list(overrides.items()):
            if key.endswith("_port") and isinstance(value, int) and value > 0:
                overrides[key] = AUTO_PORT
        settings = dataclasses.replace(lab.settings, **overrides)
        running = RunningServer(ReferenceServer(settings)).start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def server(server_factory: Callable[..., RunningServer]) -> RunningServer:
    """The lab's server with its default settings."""
    return server_factory()


@pytest.fixture
def tls_context(lab: Lab) -> ssl.SSLContext:
    """A client context that trusts only the lab's test CA (verification on)."""
    return ssl.create_default_context(cafile=str(lab.ca_file))


@pytest.fixture
def connect(server: RunningServer, tls_context: ssl.SSLContext) -> Iterator[Callable[..., Pop3Client]]:
    """``connect(mode="plain"|"stls"|"implicit")``: a connected client."""
    clients: list[Pop3Client] = []

    def connect_mode(mode: str = "plain", **kwargs: object) -> Pop3Client:
        client = open_client(server, mode, tls_context, **kwargs)
        clients.append(client)
        return client

    yield connect_mode
    for client in clients:
        client.close()


@pytest.fixture
def deliver(lab: Lab) -> Callable[[str, bytes], str]:
    """``deliver(user, data)``: local delivery through the server's storage code."""
    from pop3suite.server.storage import MaildirStore

    store = MaildirStore(str(lab.settings.mail_root), fsync=False)
    return store.deliver
