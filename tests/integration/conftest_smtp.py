"""Helpers for the SMTP-side tests (imported by tests/integration/test_smtp_*.py).

:class:`MailLab` starts the reference server with all three SMTP listeners on
free ports, a fake clock in its POP-before-SMTP window, and gives the tests
short ways to log in over POP3, open SMTP clients per role and look at the
spool and the mailboxes without going through POP3 (a POP3 login would open
a relay window and spoil the test).
"""

from __future__ import annotations

import contextlib
import dataclasses
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

from pop3suite.client import Pop3Client
from pop3suite.netutil import free_port
from pop3suite.server.lab import Lab
from pop3suite.server.smtp import RelaySpool
from pop3suite.server.storage import MaildirStore
from tests.conftest import PASSWORD, RunningServer

OTHER_ADDRESS = "127.0.0.2"  # the whole 127/8 is loopback on Linux


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MailLab:
    """A running reference server with its SMTP side, and handy clients."""

    def __init__(self, running: RunningServer, lab: Lab, tls_context: ssl.SSLContext) -> None:
        self.running = running
        self.lab = lab
        self.tls_context = tls_context
        self.clock = FakeClock()
        running.server.relay.clock = self.clock
        self._closers: list[Callable[[], object]] = []

    @classmethod
    def start(
        cls,
        server_factory: Callable[..., RunningServer],
        lab: Lab,
        tls_context: ssl.SSLContext,
        quotas: dict[str, float | str] | None = None,
        **overrides: object,
    ) -> MailLab:
        """Start a server with smtp/submission/smtps on free ports.

        ``quotas`` sets per-account ``quota_mb`` overrides.
        """
        ports = {key: free_port() for key in ("smtp_port", "submission_port", "smtps_port")}
        if quotas:
            accounts = dict(lab.settings.accounts)
            for name, quota in quotas.items():
                accounts[name] = dataclasses.replace(accounts[name], quota_mb=quota)
            overrides["accounts"] = accounts
        return cls(server_factory(**{**ports, **overrides}), lab, tls_context)

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(OSError, smtplib.SMTPException):
                closer()

    @property
    def store(self) -> MaildirStore:
        return MaildirStore(str(self.lab.settings.mail_root), fsync=False)

    def port(self, name: str) -> int:
        return self.running.port(name)

    # --------------------------------------------------------------- POP3

    def pop(self, mode: str = "plain", source: str | None = None) -> Pop3Client:
        """A connected POP3 client (plain, stls or implicit), not logged in."""
        source_address = (source, 0) if source else None
        if mode == "implicit":
            client = Pop3Client(
                "127.0.0.1",
                self.port("pop3s"),
                tls="implicit",
                ssl_context=self.tls_context,
                source_address=source_address,
            )
        else:
            client = Pop3Client(
                "127.0.0.1",
                self.port("pop3"),
                tls="stls" if mode == "stls" else "none",
                ssl_context=self.tls_context,
                source_address=source_address,
            )
        client.connect()
        self._closers.append(client.close)
        return client

    def pop_login(self, mode: str = "plain", user: str = "alice", source: str | None = None) -> None:
        """A complete, successful POP3 session: login, STAT, QUIT."""
        client = self.pop(mode, source)
        client.login(user, PASSWORD)
        client.stat()
        client.quit()

    def retr_all(self, user: str) -> list[bytes]:
        """Every message of ``user`` as POP3 RETR returns it (opens a relay
        window for 127.0.0.1 as a side effect)."""
        client = self.pop()
        client.login(user, PASSWORD)
        count, _ = client.stat()
        messages = [client.retr(n) for n in range(1, count + 1)]
        client.quit()
        return messages

    # --------------------------------------------------------------- SMTP

    def smtp(self, role: str = "smtp", source: str | None = None, login: str | None = None) -> smtplib.SMTP:
        """An SMTP client after EHLO: plain for ``smtp``, STARTTLS for
        ``submission``, implicit TLS for ``smtps``; AUTH if ``login``."""
        source_address = (source, 0) if source else None
        client: smtplib.SMTP
        if role == "smtps":
            client = smtplib.SMTP_SSL(
                "127.0.0.1",
                self.port("smtps"),
                context=self.tls_context,
                source_address=source_address,
                timeout=10,
            )
        else:
            client = smtplib.SMTP("127.0.0.1", self.port(role), source_address=source_address, timeout=10)
        self._closers.append(client.close)
        client.ehlo("client.test")
        if role == "submission":
            client.starttls(context=self.tls_context)
            client.ehlo("client.test")
        if login:
            client.login(login, PASSWORD)
        return client

    def raw_smtp(self, role: str = "smtp") -> socket.socket:
        """A raw TCP connection to an SMTP listener, greeting already read."""
        sock = socket.create_connection(("127.0.0.1", self.port(role)), timeout=10)
        self._closers.append(sock.close)
        read_reply(sock)
        return sock

    # ------------------------------------------------------------ results

    def spooled(self) -> list[str]:
        """Ids of the relayed messages in the spool."""
        return RelaySpool(self.lab.settings.spool_dir).ids()

    def spool_envelope(self, spool_id: str) -> str:
        return (Path(self.lab.settings.spool_dir) / f"{spool_id}.json").read_text()

    def stored(self, user: str) -> list[bytes]:
        """The files in ``user``'s Maildir, read directly (no POP3 login)."""
        with self.store.open_maildrop(user) as drop:
            return [b"".join(drop.read_chunks(n)) for n in range(1, len(drop.messages) + 1)]


def mail_lab_factory(
    server_factory: Callable[..., RunningServer], lab: Lab, tls_context: ssl.SSLContext
) -> Iterator[Callable[..., MailLab]]:
    """Body of each test module's ``mail_factory`` fixture:
    ``mail_factory(quotas=..., **settings overrides)`` -> :class:`MailLab`."""
    started: list[MailLab] = []

    def start(**kwargs: object) -> MailLab:
        mail = MailLab.start(server_factory, lab, tls_context, **kwargs)  # type: ignore[arg-type]
        started.append(mail)
        return mail

    yield start
    for mail in started:
        mail.close()


def read_reply(sock: socket.socket) -> list[str]:
    """One complete (possibly multi-line) SMTP reply, as text lines."""
    data = b""
    while True:
        offset = 0
        while (end := data.find(b"\r\n", offset)) != -1:
            line, offset = data[offset:end], end + 2
            if line[3:4] != b"-":
                return [raw.decode("latin-1") for raw in data[:offset].split(b"\r\n")[:-1]]
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server after {data!r}")
        data += chunk


def read_until_closed(sock: socket.socket) -> list[str]:
    """Every reply line until the server closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return [line.decode("latin-1") for line in data.split(b"\r\n") if line]


def message(subject: str, body: bytes = b"Hello.\r\n") -> bytes:
    """A small well-formed message with CRLF line ends."""
    return b"From: x@ext.test\r\nTo: r@ext.test\r\nSubject: " + subject.encode() + b"\r\n\r\n" + body
