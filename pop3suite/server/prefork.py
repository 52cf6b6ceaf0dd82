"""The server as deployed around 2007-2010: ``[era]`` in the server config.

A CentOS 5 mail server of that time differs from the default reference
server in ways that change what a poll costs (docs/capacity.md, "The
CentOS 5 era profile"):

* **a process per connection**: inetd/xinetd started one daemon per
  connection (UW ipop3d, popa3d, qpopper), and Dovecot 1.0 ran a login
  process plus a ``pop3`` process per session.  ``process_per_connection``
  makes every accepted POP3/POP3S connection a forked child that does the
  TLS handshake and the whole session and then exits; the parent only
  accepts and reaps, so the children's CPU lands in its ``children_*``
  times (what ``pop3suite.load.monitor.tree_cpu_seconds`` sums).  It forks without
  exec: cheaper than inetd's fork+exec, so it is a lower bound of that cost.
* **TLS as deployed then**: an RSA key-exchange CBC suite (``AES256-SHA``,
  ``DES-CBC3-SHA``, ``RC4-SHA``) chosen by ``ciphers``, TLS up to
  ``max_tls`` (OpenSSL 0.9.8e of CentOS 5 spoke TLS 1.0 at most), an RSA
  certificate (the lab writes one, ``pop3suite.load.capacity.era``), and no session
  resumption (no tickets, no session cache: every poll is a full handshake,
  as clients that reconnect every poll got).  ``SECLEVEL=0`` lets this
  OpenSSL 3 accept TLS 1.0 and these suites.
* AES-NI is switched off by the process environment, not here: OpenSSL
  reads ``OPENSSL_ia32cap`` once at start-up, so whoever starts the server
  sets it (``pop3suite.load.capacity.era.server_environment``).

Everything else (sessions, storage, policy) is the reference server's own.
A mailbox's ``[IN-USE]`` lock is a file lock (flock), so it holds across
processes too; ``max_connections_per_ip`` is counted per child, so it limits
nothing in this mode.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .tls import ERA_TLS_VERSIONS, allow_era_tls

if TYPE_CHECKING:
    from .config import Settings
    from .server import ReferenceServer

log = logging.getLogger("pop3suite.server.prefork")

_KEYS = {"process_per_connection": bool, "ciphers": str, "max_tls": str, "session_resumption": bool}


@dataclass(frozen=True)
class EraSettings:
    """The validated ``[era]`` table of a server config."""

    process_per_connection: bool = True
    ciphers: str = "AES256-SHA"
    max_tls: str = "1.0"
    session_resumption: bool = False


def parse_era(table: Any, path: Path) -> EraSettings:
    """Validate ``[era]``; errors name the file and the key (config.ConfigError)."""
    from .errors import ConfigError

    if not isinstance(table, dict):
        raise ConfigError(f"{path}: 'era' must be a table")
    for key, value in table.items():
        if key not in _KEYS:
            raise ConfigError(f"{path}: unknown key 'era.{key}' (known: {', '.join(sorted(_KEYS))})")
        if not isinstance(value, _KEYS[key]):
            raise ConfigError(f"{path}: key 'era.{key}': expected {_KEYS[key].__name__}, got {value!r}")
    era = EraSettings(**table)
    if era.max_tls not in ERA_TLS_VERSIONS:
        raise ConfigError(
            f"{path}: key 'era.max_tls': one of {', '.join(ERA_TLS_VERSIONS)}, got {era.max_tls!r}"
        )
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).set_ciphers(f"{era.ciphers}:@SECLEVEL=0")
    except ssl.SSLError:
        raise ConfigError(
            f"{path}: key 'era.ciphers': OpenSSL knows no such suite: {era.ciphers!r}"
        ) from None
    return era


def era_tls_context(settings: Settings, era: EraSettings) -> ssl.SSLContext | None:
    """The server TLS context of the era: RSA key exchange, CBC, no resumption."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    allow_era_tls(context, era.max_tls)
    context.set_ciphers(f"{era.ciphers}:@SECLEVEL=0")
    if not era.session_resumption:
        # No tickets; a session-ID cache entry dies with the child that made it.
        context.options |= ssl.OP_NO_TICKET
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


class ForkingListener:
    """A listening socket whose connections each run in a forked child.

    Quacks like the ``asyncio.Server`` the reference server keeps
    (``sockets``, ``close``, ``wait_closed``)."""

    _children: set[int] = set()  # every live child of this server process, for reaping

    def __init__(self, server: ReferenceServer, name: str, sock: socket.socket, tls: ssl.SSLContext | None):
        self.server, self.name, self.tls = server, name, tls
        self.sockets = [sock]
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)
        self._loop.add_signal_handler(signal.SIGCHLD, self.reap)

    @classmethod
    def reap(cls) -> None:
        """Collect ended children (their CPU moves into our ``children_*`` times)."""
        for pid in list(cls._children):
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                cls._children.discard(pid)

    def _accept(self) -> None:
        try:
            conn, _addr = self.sockets[0].accept()
        except (BlockingIOError, InterruptedError):
            return
        pid = os.fork()
        if pid == 0:  # the child: serve this one connection, never return into the parent's loop
            code = 1
            try:
                code = _serve_one(self.server, self.name, conn, self.tls, self.sockets[0])
            except BaseException:  # a forked child must reach os._exit, whatever happened
                log.exception("%s: child for one connection failed", self.name)
            finally:
                os._exit(code)
        conn.close()
        self._children.add(pid)

    def close(self) -> None:
        sock = self.sockets[0]
        if sock.fileno() >= 0:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    async def wait_closed(self) -> None:
        self.reap()


def _serve_one(
    server: ReferenceServer,
    name: str,
    conn: socket.socket,
    tls: ssl.SSLContext | None,
    listener: socket.socket,
) -> int:
    """In the child: a fresh event loop runs one session, TLS handshake included."""
    listener.close()
    signal.set_wakeup_fd(-1)  # the parent loop's self-pipe is not ours
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    asyncio.events._set_running_loop(None)  # we were forked inside the parent's running loop
    # The parent's storage pool may have worker threads, which fork did not
    # copy: work queued to it here would wait forever.  A fresh pool of ours.
    from .session import storage_executor

    server.context.storage_threads = storage_executor()
    loop = asyncio.SelectorEventLoop()
    asyncio.set_event_loop(loop)

    async def session() -> None:
        _transport, protocol = await loop.connect_accepted_socket(
            lambda: server._factory(name),
            conn,
            ssl=tls,
            ssl_handshake_timeout=server.settings.idle_timeout if tls else None,
        )
        if protocol.task is not None:
            await protocol.task

    try:
        loop.run_until_complete(session())
    except (ssl.SSLError, ConnectionError, TimeoutError) as error:
        log.info("%s: connection ended during the handshake: %s", name, error)
    finally:
        loop.close()
    return 0


async def start_forking(
    server: ReferenceServer, name: str, host: str, port: int, tls: ssl.SSLContext | None
) -> ForkingListener:
    """Bind ``host:port`` and serve it a process per connection."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    return ForkingListener(server, name, sock, tls)
