"""A minimal byte stream over :class:`asyncio.Protocol`.

Why not ``asyncio.StreamReader``?  At STLS the server must drop every
plaintext byte the client sent after ``STLS\\r\\n`` (the CVE-2011-0411
command-injection class).  Bytes can already sit in a StreamReader's private
buffer, and no public API empties it.  Here the buffer is ours:
:meth:`Connection.discard_buffered` empties it, and :meth:`Connection.start_tls`
upgrades with the public ``loop.start_tls``.

Flow control both ways keeps memory bounded: reading pauses when more than
``READ_HIGH_WATER`` bytes wait unread (a client flooding a 1 MiB line), and
:meth:`Connection.drain` waits while the transport's write buffer is above
its high-water mark (a client that does not read a 100 MB RETR).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import cast

READ_HIGH_WATER = 64 * 1024
WRITE_HIGH_WATER = 256 * 1024


class Connection(asyncio.Protocol):
    """One accepted connection; ``handler(self)`` runs as its task."""

    def __init__(self, handler: Callable[[Connection], Awaitable[None]]) -> None:
        self._handler = handler
        self._buffer = bytearray()
        self._eof = False
        self._lost = False
        self._reading_paused = False
        self._writing_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.peer: tuple[str, int] = ("", 0)
        #: Octets handed to the transport (the session-end record, metrics).
        self.octets_out = 0

    # ------------------------------------------------- asyncio.Protocol side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing
        # asyncio.Transport, so no isinstance check here.
        self.transport = cast(asyncio.Transport, transport)
        transport = self.transport
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = (peer[0], peer[1])
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            await self._handler(self)
        finally:
            self.close()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > READ_HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake_reader()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = self._lost = True
        self._wake_reader()
        self._writing_paused = False
        self._wake_drainer()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_drainer()

    def _wake_reader(self) -> None:
        if self._read_waiter is not None and not self._read_waiter.done():
            self._read_waiter.set_result(None)

    def _wake_drainer(self) -> None:
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # ------------------------------------------------------ the handler side

    async def read(self) -> bytes:
        """Bytes received so far (waiting for some), or b"" at EOF."""
        while not self._buffer and not self._eof:
            self._read_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        data = bytes(self._buffer)
        self._buffer.clear()
        if self._reading_paused and self.transport and not self._lost:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self._lost and not self.transport.is_closing():
            self.octets_out += len(data)
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the peer has taken enough of what we wrote.

        Raises:
            ConnectionResetError: the connection is gone.
        """
        if self._lost:
            raise ConnectionResetError("connection lost")
        while self._writing_paused:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
            if self._lost:
                raise ConnectionResetError("connection lost")

    def discard_buffered(self) -> int:
        """Drop unread received bytes; returns how many."""
        dropped = len(self._buffer)
        self._buffer.clear()
        return dropped

    async def start_tls(self, context: ssl.SSLContext, handshake_timeout: float) -> None:
        """Upgrade to TLS as the server (STLS, RFC 2595 §4)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        new_transport = await loop.start_tls(
            self.transport, self, context, server_side=True, ssl_handshake_timeout=handshake_timeout
        )
        if new_transport is None:
            raise ConnectionResetError("connection closed during TLS handshake")
        self.transport = new_transport

    @property
    def tls_active(self) -> bool:
        return self.tls_object is not None

    @property
    def tls_object(self) -> ssl.SSLObject | None:
        """The TLS state (version, cipher) while TLS is on, else None."""
        if self.transport is None:
            return None
        return self.transport.get_extra_info("ssl_object")

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
