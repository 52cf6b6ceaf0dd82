"""Listeners and lifecycle of the reference server.

``pop3`` is the plain port (with STLS when a certificate is configured),
``pop3s`` the implicit-TLS port (RFC 8314: TLS first, greeting inside).
Each accepted connection becomes a :class:`~pop3suite.server.session.Pop3Session`.
The SMTP listeners (``smtp``, ``submission``, ``smtps``) are started and
stopped with them (:mod:`pop3suite.server.smtp`); a POP3 login hook feeds
the POP-before-SMTP window (:mod:`pop3suite.server.relay`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from pop3suite.proto import responses

from . import eventlog, prefork
from .accounts import Authenticator
from .config import Settings, bind_port
from .connection import Connection
from .metrics import ServerMetrics
from .relay import RelayWindow
from .session import Pop3Session, ServerContext, storage_executor
from .smtp import SmtpService
from .storage import MailStore, open_store

log = logging.getLogger("pop3suite.server")


@dataclass(frozen=True)
class Endpoint:
    """A listening socket: its role, address and port."""

    name: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.name} on {host}:{self.port}"


#: Per-connection TLS read buffer of asyncio's SSLProtocol.  The stdlib
#: default, 256 KiB, is a zero-filled bytearray -- resident memory -- for
#: every TLS connection: 10,000 idle POP3S sessions took 2.7 GB (275 KiB
#: each, docs/performance.md).  POP3 clients send short commands; 32 KiB (two
#: full TLS records) costs nothing measurable in throughput.  uvloop
#: allocates its buffer lazily and is not affected.
TLS_READ_BUFFER = 32 * 1024


def shrink_asyncio_tls_buffer(size: int = TLS_READ_BUFFER) -> None:
    """Lower ``asyncio.sslproto.SSLProtocol.max_size`` to ``size`` (a class
    attribute read when each TLS connection is set up; the server process
    owns its event loop, so the change affects only this server's TLS)."""
    from asyncio import sslproto

    if getattr(sslproto.SSLProtocol, "max_size", 0) > size:
        sslproto.SSLProtocol.max_size = size


def make_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server TLS context: TLS 1.2 minimum, the library's strong suites."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    if settings.era is not None:  # the 2007-2010 deployment (pop3suite.server.prefork)
        return prefork.era_tls_context(settings, settings.era)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


class ReferenceServer:
    """The POP3/POP3S server for one :class:`Settings`.

    Use ``await server.start()`` then ``await server.stop()``, or
    ``async with ReferenceServer(settings) as server``.
    """

    def __init__(
        self, settings: Settings, store: MailStore | None = None, metrics: bool | None = None
    ) -> None:
        self.settings = settings
        self.store = store or open_store(settings)
        # Metrics are kept when the endpoint is configured, or asked for
        # (tests read them from the registry without an HTTP port).
        want_metrics = bool(settings.metrics_port) if metrics is None else metrics
        self.metrics = ServerMetrics() if want_metrics else None
        #: The bound /metrics port, once started (None: no endpoint).
        self.metrics_port: int | None = None
        self.context = ServerContext(
            settings=settings,
            store=self.store,
            authenticator=Authenticator(settings.accounts),
            tls_context=make_tls_context(settings),
            metrics=self.metrics,
        )
        self.endpoints: list[Endpoint] = []
        self._servers: list[asyncio.Server] = []
        self._connections: set[Connection] = set()
        self._per_address: dict[str, int] = {}
        # POP-before-SMTP: successful logins on the configured POP3 listeners
        # open the window; tests may replace ``relay.clock``.
        self.relay = RelayWindow(settings.relay_window)
        self.context.login_hooks.append(self.relay.login_hook(settings.relay_open_listeners))
        if self.metrics is not None and settings.relay_window > 0:
            opening = frozenset(settings.relay_open_listeners)
            windows = self.metrics.relay_windows

            def count_window(account: str, address: str, listener: str, tls_active: bool) -> None:
                if listener in opening:
                    windows.inc()

            self.context.login_hooks.append(count_window)
        self.smtp = SmtpService(settings, self.store, self.relay, self.context.tls_context)
        self.smtp.metrics = self.metrics

    def _factory(self, listener: str) -> Connection:
        def handler(conn: Connection) -> asyncio.Future[None]:
            return self._serve(conn, listener)

        return Connection(handler)  # type: ignore[arg-type]

    async def _serve(self, conn: Connection, listener: str) -> None:
        address = conn.peer[0]
        limit = self.settings.max_connections_per_ip
        if limit and self._per_address.get(address, 0) >= limit:
            # Graceful refusal (security-probes.md D3): one -ERR line, then
            # close; sessions already open from this address are untouched.
            eventlog.emit(
                log,
                logging.INFO,
                "connection_refused",
                {"address": address, "listener": listener, "open": limit},
            )
            if self.metrics is not None:
                self.metrics.refused_per_address.inc()
            conn.write(responses.err("Too many connections from your address.", "SYS/TEMP"))
            return
        self._per_address[address] = self._per_address.get(address, 0) + 1
        self._connections.add(conn)
        try:
            await Pop3Session(self.context, conn, listener).run()
        finally:
            self._connections.discard(conn)
            left = self._per_address.pop(address, 1) - 1
            if left > 0:
                self._per_address[address] = left

    async def start(self) -> list[Endpoint]:
        """Create every mailbox and bind every configured listener."""
        shrink_asyncio_tls_buffer()
        for name in self.settings.accounts:
            self.store.ensure_mailbox(name)
        loop = asyncio.get_running_loop()
        plan = [
            ("pop3", self.settings.pop3_port, None),
            ("pop3s", self.settings.pop3s_port, self.context.tls_context),
        ]
        for name, port, tls in plan:
            if not port:
                continue
            if self.settings.era is not None and self.settings.era.process_per_connection:
                forking = await prefork.start_forking(self, name, self.settings.listen, bind_port(port), tls)
                self._servers.append(forking)  # type: ignore[arg-type]
                self.endpoints.append(Endpoint(name, *forking.sockets[0].getsockname()[:2]))
                continue
            server = await loop.create_server(
                lambda name=name: self._factory(name),
                self.settings.listen,
                bind_port(port),
                ssl=tls,
                ssl_handshake_timeout=self.settings.idle_timeout if tls else None,
                reuse_address=True,
                backlog=1024,
            )
            self._servers.append(server)
            bound = server.sockets[0].getsockname()
            self.endpoints.append(Endpoint(name, bound[0], bound[1]))
        for name, host, port in await self.smtp.start():
            self.endpoints.append(Endpoint(name, host, port))
        if self.metrics is not None and self.settings.metrics_port:
            host = self.settings.metrics_listen
            self.metrics_port = self.metrics.serve(host, bind_port(self.settings.metrics_port))
            self.endpoints.append(Endpoint("metrics", host, self.metrics_port))
        return self.endpoints

    async def stop(self) -> None:
        """Stop listening and end every session (without UPDATE)."""
        for server in self._servers:
            server.close()
        for conn in list(self._connections):
            conn.abort()
            if conn.task is not None:
                conn.task.cancel()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        await self._finish_storage_work()
        await self.smtp.stop()
        if self.metrics is not None:
            self.metrics.stop()

    async def _finish_storage_work(self, patience: float = 120.0) -> None:
        """Let storage work of ended sessions finish (an mbox rewrite is not
        cut short) and their maildrops close, so every lock is released
        before stop() returns.  ``patience`` bounds it (the mbox write-lock
        wait is 60 s)."""
        work = set(self.context.storage_work)
        if work:
            await asyncio.wait(work, timeout=patience)
        await asyncio.sleep(0)  # run the done callbacks that close maildrops
        # A fresh pool (its threads are made on demand) if the server starts again.
        old, self.context.storage_threads = self.context.storage_threads, storage_executor()
        old.shutdown(wait=False)

    async def __aenter__(self) -> ReferenceServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def loop_factory(choice: str) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The event-loop factory for ``server.event_loop`` and a note to print.

    uvloop (libuv) is an optional dependency: it takes roughly a third off
    the per-connection and per-write cost of the default selector loop
    (docs/performance.md).  "uvloop" without it installed falls back to
    asyncio and says so; "auto" falls back silently.

    Returns:
        (None for the default loop or ``uvloop.new_event_loop``, note).
    """
    if choice == "asyncio":
        return None, ""
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            return None, 'warning: event_loop = "uvloop" but uvloop is not installed; using asyncio'
        return None, ""
    return uvloop.new_event_loop, f"event loop: uvloop {uvloop.__version__}"
