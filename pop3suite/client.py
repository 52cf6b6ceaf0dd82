"""A blocking POP3 client on the sans-I/O core.

Used by the conformance tests, the benchmarks, the demo and (gevent-patched)
the load users.  Unlike :mod:`poplib` it never hides framing: it keeps a
wire transcript, reports how a body was stuffed, has no 2048-octet line cap,
and streams RETR bodies in large chunks without building them line by line.

Example::

    with Pop3Client("127.0.0.1", 11110) as pop:
        pop.login("alice", "secret")
        count, size = pop.stat()
        body = pop.retr(1)
        pop.quit()
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .proto import (
    BodyReader,
    Response,
    apop_digest,
    capability_map,
    greeting_timestamp,
    parse_drop_listing,
    parse_scan_listing,
    parse_status_line,
    parse_uid_listing,
    sasl_plain_encode,
)
from .proto.errors import MalformedResponse
from .proto.limits import CRLF

_monotonic = time.monotonic

TlsMode = Literal["none", "stls", "implicit"]
#: How a server ended a TLS session (:meth:`Pop3Client.tls_ending`).
TlsEnding = Literal["close_notify", "no close_notify", "data", "open"]

#: A status line longer than this is not a POP3 server talking; stop reading.
_SANITY_LINE_LIMIT = 64 * 1024
_RECV_SIZE = 256 * 1024


class Pop3ClientError(Exception):
    """Base class of client errors."""


def trust_context(cafile: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    """The client TLS context every part of the suite uses for a target:
    verify against ``cafile`` (default: the system's CAs), or, with
    ``insecure``, verify nothing (a self-signed server the user chose to trust)."""
    context = ssl.create_default_context(cafile=None if insecure else cafile)
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ErrResponse(Pop3ClientError):
    """The server answered ``-ERR`` where ``+OK`` was needed."""

    def __init__(self, response: Response, command: str) -> None:
        self.response = response
        self.command = command
        super().__init__(f"{command}: {response.raw.decode('utf-8', 'replace').rstrip()}")


class ConnectionClosed(Pop3ClientError):
    """The server closed the connection while a reply was expected."""


@dataclass
class Transcript:
    """What went over the wire, in order: ``("C", bytes)`` sent by the
    client, ``("S", bytes)`` received.  Bodies are cut to ``body_limit``."""

    entries: list[tuple[str, bytes]] = field(default_factory=list)
    enabled: bool = True
    body_limit: int = 2048

    def add(self, direction: str, data: bytes) -> None:
        if self.enabled:
            if len(data) > self.body_limit:
                data = data[: self.body_limit] + b"...[%d octets]" % len(data)
            self.entries.append((direction, data))

    def render(self) -> str:
        out = []
        for direction, data in self.entries:
            text = data.decode("utf-8", "replace")
            for line in text.splitlines() or [""]:
                out.append(f"{direction}: {line}")
        return "\n".join(out)


@dataclass
class Body:
    """A multi-line response: its status line, the unstuffed bytes, and how
    the server framed it."""

    response: Response
    data: bytes
    octets: int
    unstuffed_dot_lines: int

    def lines(self) -> list[bytes]:
        return self.data.split(CRLF)[:-1] if self.data else []


class Pop3Client:
    """One POP3 connection.

    Args:
        host, port: the server.
        tls: ``"none"``, ``"stls"`` (upgrade right after the greeting) or
            ``"implicit"`` (TLS before the greeting, RFC 8314).
        ssl_context: context for TLS; default verifies against the system CAs.
        server_hostname: name to verify; defaults to ``host``.
        timeout: socket timeout in seconds for every operation.
        source_address: local address to bind (e.g. ``("127.0.0.2", 0)``).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: TlsMode = "none",
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = 30.0,
        source_address: tuple[str, int] | None = None,
        transcript: bool = True,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname or host
        self.timeout = timeout
        self.source_address = source_address
        self.transcript = Transcript(enabled=transcript)
        self.sock: socket.socket | None = None
        self._buf = b""
        self.greeting: Response | None = None
        #: Plaintext that followed the STLS ``+OK`` and was dropped (:meth:`starttls`).
        self.discarded_plaintext = b""

    # ------------------------------------------------------------ plumbing

    def connect(self) -> Response:
        """Open the connection (and TLS, per ``tls``); return the greeting."""
        self.open_tcp()
        if self.tls == "implicit":
            self._wrap()
        self.read_greeting()
        if self.tls == "stls":
            self.stls()
        return self.greeting

    def _context(self) -> ssl.SSLContext:
        if self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
        return self.ssl_context

    def _wrap(self) -> None:
        assert self.sock is not None
        self.sock = self._context().wrap_socket(self.sock, server_hostname=self.server_hostname)

    @property
    def tls_active(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)

    def send_raw(self, data: bytes) -> None:
        """Send bytes exactly as given (for probes)."""
        if self.sock is None:
            raise Pop3ClientError("not connected")
        self.transcript.add("C", data)
        self.sock.sendall(data)

    def _fill(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(_RECV_SIZE)
        if not data:
            raise ConnectionClosed("server closed the connection")
        self._buf += data

    def read_line(self, timeout: float | None = None) -> bytes:
        """One line from the server, CRLF included.  ``timeout``: seconds
        for this read only (``TimeoutError`` if no line end comes in time)."""
        if timeout is not None:
            with self._timeout(timeout):
                return self.read_line()
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line, self._buf = self._buf[: end + 1], self._buf[end + 1 :]
                self.transcript.add("S", line)
                return line
            if len(self._buf) > _SANITY_LINE_LIMIT:
                raise MalformedResponse(f"no line end in {len(self._buf)} octets")
            self._fill()

    def read_response(self) -> Response:
        """Read and parse one status line."""
        return parse_status_line(self.read_line())

    def read_body(self, sink: Callable[[bytes], None] | None = None) -> tuple[bytes, BodyReader]:
        """Read a multi-line body up to its terminator.

        Args:
            sink: if given, each unstuffed chunk is passed to it and the
                returned bytes are empty (streaming, bounded memory).
        """
        reader = BodyReader()
        parts: list[bytes] = []
        data, self._buf = self._buf, b""
        while True:
            chunk = reader.feed(data)
            if chunk:
                if sink is not None:
                    sink(chunk)
                else:
                    parts.append(chunk)
            if reader.finished:
                break
            assert self.sock is not None
            data = self.sock.recv(_RECV_SIZE)
            if not data:
                raise ConnectionClosed("server closed the connection inside a multi-line response")
        self._buf = reader.leftover
        body = b"".join(parts)
        self.transcript.add("S", body + b".\r\n")
        return body, reader

    def command(self, line: str | bytes, check: bool = True) -> Response:
        """Send one command; return its single-line response."""
        raw = line.encode("utf-8") if isinstance(line, str) else line
        self.send_raw(raw + CRLF)
        response = self.read_response()
        if check and not response.ok:
            raise ErrResponse(response, _safe(raw))
        return response

    def multiline(
        self, line: str | bytes, check: bool = True, sink: Callable[[bytes], None] | None = None
    ) -> Body:
        """Send a command whose ``+OK`` answer carries a body."""
        raw = line.encode("utf-8") if isinstance(line, str) else line
        self.send_raw(raw + CRLF)
        response = self.read_response()
        if not response.ok:
            if check:
                raise ErrResponse(response, _safe(raw))
            return Body(response, b"", 0, 0)
        data, reader = self.read_body(sink)
        return Body(response, data, reader.octets, reader.unstuffed_dot_lines)

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self) -> Pop3Client:
        if self.sock is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ probes
    #
    # For conformance cases that judge framing, closes and TLS upgrades:
    # each does one wire-level thing and records it in the transcript, so no
    # case needs the socket or the transcript's internals.

    @contextlib.contextmanager
    def _timeout(self, seconds: float):
        sock = self._socket()
        sock.settimeout(seconds)
        try:
            yield sock
        finally:
            if self.sock is sock:
                sock.settimeout(self.timeout)

    def _socket(self) -> socket.socket:
        if self.sock is None:
            raise Pop3ClientError("not connected")
        return self.sock

    def read_exact_line(self, timeout: float | None = None) -> bytes:
        """One line, raw (CRLF included), reading no byte past its line end.

        For the line before a TLS handshake (RFC 2595 §4: it "begins
        immediately after the CRLF"): the bytes after it stay in the socket
        for the handshake or for :meth:`receive_within`.  On a TLS socket it
        is :meth:`read_line`.
        """
        if self._buf or isinstance(self.sock, ssl.SSLSocket):
            return self.read_line(timeout)
        with self._timeout(self.timeout if timeout is None else timeout) as sock:
            line = b""
            while not line.endswith(b"\n"):
                peeked = sock.recv(_RECV_SIZE, socket.MSG_PEEK)
                if not peeked:
                    raise ConnectionClosed("server closed the connection inside a line")
                end = peeked.find(b"\n")
                line += sock.recv(len(peeked) if end < 0 else end + 1)
                if len(line) > _SANITY_LINE_LIMIT:
                    raise MalformedResponse(f"no line end in {len(line)} octets")
        self.transcript.add("S", line)
        return line

    def receive_within(self, seconds: float) -> bytes:
        """The bytes that arrive within ``seconds`` (buffered ones first),
        ``b""`` if none: for "the server sends nothing here" checks.

        Raises:
            ConnectionClosed: the server closed (EOF) with nothing to read.
        """
        if self._buf:
            data, self._buf = self._buf, b""
        else:
            try:
                with self._timeout(seconds) as sock:
                    data = sock.recv(_RECV_SIZE)
            except TimeoutError:
                return b""
            if not data:
                raise ConnectionClosed("server closed the connection")
        self.transcript.add("S", data)
        return data

    def read_until_close(self, seconds: float) -> bytes | None:
        """Everything the server sends until it closes, or None if it is
        still open after ``seconds``.  A reset (ECONNRESET, EPIPE) or a TLS
        EOF counts as the close; other errors propagate."""
        received, closed = self._receive_until_close(seconds, restart=False)
        return received if closed else None

    def closed_within(self, seconds: float) -> bool:
        """True only if the server really closes within ``seconds``: EOF,
        ECONNRESET, EPIPE or a TLS EOF.  Data it sends meanwhile is read and
        recorded; a timeout is not a close; other errors propagate."""
        return self.read_until_close(seconds) is not None

    def starttls(self, ssl_context: ssl.SSLContext | None = None) -> Response:
        """STLS on a plain connection (RFC 2595 §4): send it, read exactly
        its reply line, and on ``+OK`` drop any plaintext that was buffered
        or is already waiting (CVE-2011-0411: it must never be read as if it
        came inside TLS; it is kept in :attr:`discarded_plaintext` for the
        case to judge) and do the handshake.  ``-ERR`` leaves the
        connection plain.  Handshake errors propagate (``ssl.SSLError``,
        ``ssl.SSLCertVerificationError`` for our own trust settings)."""
        if self.tls_active:
            raise Pop3ClientError("TLS is already active")
        self.send_raw(b"STLS" + CRLF)
        response = parse_status_line(self.read_exact_line())
        if not response.ok:
            return response
        self.discarded_plaintext = self._buf + self._pending_plaintext()
        self._buf = b""
        if ssl_context is not None:
            self.ssl_context = ssl_context
        self._wrap()
        return response

    def _pending_plaintext(self) -> bytes:
        """Bytes already waiting in the socket, without blocking."""
        sock = self._socket()
        data = b""
        sock.setblocking(False)
        try:
            while chunk := sock.recv(_RECV_SIZE):
                data += chunk
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            sock.settimeout(self.timeout)
        return data

    def shutdown_write(self) -> None:
        """Half-close: send our FIN (TCP) and keep reading."""
        self._socket().shutdown(socket.SHUT_WR)

    def set_receive_buffer(self, octets: int) -> None:
        """A small receive buffer, so a big reply stalls in the server."""
        self._socket().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, octets)

    def reset(self) -> None:
        """End the connection with a TCP RST (SO_LINGER 0), no QUIT."""
        sock = self._socket()
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close_tls(self) -> None:
        """End TLS with close_notify, then close the TCP connection."""
        sock = self._socket()
        if not isinstance(sock, ssl.SSLSocket):
            raise Pop3ClientError("TLS is not active")
        self.sock = None
        try:
            sock.unwrap().close()
        except (ssl.SSLError, OSError):
            sock.close()

    def truncate_tls(self) -> None:
        """End TLS without close_notify: a bare TCP FIN (a truncation attack)."""
        self._socket().shutdown(socket.SHUT_RDWR)
        self.close()

    def detach(self) -> socket.socket:
        """Hand the open socket over (to hold a connection open); this
        client forgets it and will not close it."""
        sock = self._socket()
        self.sock = None
        return sock

    def note_received(self, data: bytes) -> None:
        """Record bytes a case read some other way in the transcript."""
        self.transcript.add("S", data)

    def transcript_text(self) -> str:
        """The wire transcript as ``C: ...``/``S: ...`` lines."""
        return self.transcript.render()

    def read_until_close_or_idle(self, idle: float) -> tuple[bytes, bool]:
        """Everything the server sends until it closes or is silent for
        ``idle`` seconds, the wait starting again with each chunk:
        ``(data, closed)``, buffered bytes first.

        For closes that may follow a stream of replies (after QUIT, after
        a hundred bad commands): unlike :meth:`read_until_close` a slow but
        live server is not cut off by a total deadline.  A close is what
        :meth:`closed_within` counts (EOF, reset, broken pipe, TLS EOF);
        other errors propagate."""
        return self._receive_until_close(idle, restart=True)

    def receive_for(self, seconds: float) -> bytes:
        """Everything that arrives within ``seconds`` (a total deadline),
        buffered bytes first, ending early if the server closes (what
        :meth:`closed_within` counts; other errors propagate): for "the
        server never answers this" checks that judge whatever came."""
        return self._receive_until_close(seconds, restart=False)[0]

    def _receive_until_close(self, seconds: float, restart: bool) -> tuple[bytes, bool]:
        received, self._buf = self._buf, b""
        sock = self._socket()
        deadline = _monotonic() + seconds
        closed = False
        try:
            while (left := deadline - _monotonic()) > 0:
                sock.settimeout(left)
                chunk = sock.recv(_RECV_SIZE)
                if not chunk:
                    closed = True
                    break
                received += chunk
                if restart:
                    deadline = _monotonic() + seconds
        except TimeoutError:
            pass
        except OSError as error:
            if not _is_close(error):
                raise
            closed = True
        finally:
            if received:
                self.transcript.add("S", received)
            if self.sock is sock:
                sock.settimeout(self.timeout)
        return received, closed

    def handshake(self, ssl_context: ssl.SSLContext | None = None) -> None:
        """The TLS handshake, now, on a plain connection whose STLS ``+OK``
        the case has read itself (with :meth:`read_exact_line`), for probes
        that send STLS with more behind it in one write (CVE-2011-0411).
        Unlike :meth:`starttls` nothing is sent and no waiting plaintext is
        dropped: it goes into the handshake, as it would for a real client.
        Handshake errors propagate; the connection then stays plain."""
        if self.tls_active:
            raise Pop3ClientError("TLS is already active")
        self._socket()
        if ssl_context is not None:
            self.ssl_context = ssl_context
        self._wrap()

    def connect_without_greeting(self) -> None:
        """Open the TCP connection, and for ``tls="implicit"`` the TLS
        session, but read nothing: for probes that judge what comes first
        themselves (bytes in clear on the POP3S port, a handshake the server
        must refuse, before any POP3).  ``"stls"`` is not upgraded here.
        Connection and handshake errors propagate; call :meth:`close` then."""
        self.open_tcp()
        if self.tls == "implicit":
            self.start_implicit_tls()

    def tls_version(self) -> str | None:
        """The negotiated TLS version (``"TLSv1.3"``), None without TLS."""
        return self.sock.version() if isinstance(self.sock, ssl.SSLSocket) else None

    def tls_cipher(self) -> str | None:
        """The negotiated cipher suite's name, None without TLS."""
        cipher = self.sock.cipher() if isinstance(self.sock, ssl.SSLSocket) else None
        return cipher[0] if cipher else None

    def tls_ending(self, idle: float, chunks: int = 16) -> TlsEnding:
        """How the server ends the TLS session after its last reply (RFC
        8314 §3.4 wants the close_notify alert before the TCP close):
        ``"close_notify"`` (then EOF), ``"no close_notify"`` (a bare TCP
        close), ``"data"`` (``chunks`` reads all brought data) or ``"open"``
        (silent for ``idle`` seconds).  Data sent first is recorded.  The
        client's context must not have ``ssl.OP_IGNORE_UNEXPECTED_EOF``
        (else OpenSSL reports a bare close as close_notify).  A reset and
        other errors propagate."""
        sock = self._socket()
        if not isinstance(sock, ssl.SSLSocket):
            raise Pop3ClientError("TLS is not active")
        if self._buf:
            self.note_received(self._buf)
            self._buf = b""
            chunks -= 1
        suppress, sock.suppress_ragged_eofs = sock.suppress_ragged_eofs, False
        try:
            with self._timeout(idle):
                for _ in range(chunks):
                    data = sock.recv(_RECV_SIZE)
                    if not data:
                        return "close_notify"
                    self.note_received(data)
                return "data"
        except ssl.SSLEOFError:
            return "no close_notify"
        except TimeoutError:
            return "open"
        finally:
            sock.suppress_ragged_eofs = suppress

    # ------------------------------------------------------------ commands

    def capa(self) -> list[str]:
        body = self.multiline("CAPA")
        return [line.decode("utf-8", "replace") for line in body.lines()]

    def capabilities(self) -> dict[str, list[str]]:
        """CAPA as a tag map (``{"SASL": ["PLAIN"], "TOP": []}``)."""
        return capability_map(self.capa())

    def stls(self) -> Response:
        """STLS that must succeed (:meth:`starttls`, ``-ERR`` raises)."""
        response = self.starttls()
        if not response.ok:
            raise ErrResponse(response, "STLS")
        return response

    def user(self, name: str) -> Response:
        return self.command(f"USER {name}")

    def pass_(self, password: str, check: bool = True) -> Response:
        return self.command(f"PASS {password}", check=check)

    def login(self, name: str, password: str) -> Response:
        """USER/PASS login."""
        self.user(name)
        return self.pass_(password)

    def apop(self, name: str, secret: str, check: bool = True) -> Response:
        """APOP login with the timestamp from the greeting (RFC 1939 §7)."""
        timestamp = apop_timestamp(self.greeting)
        if timestamp is None:
            raise Pop3ClientError("greeting carries no APOP timestamp")
        digest = apop_digest(timestamp, secret)
        return self.command(f"APOP {name} {digest}", check=check)

    def auth_plain(self, name: str, password: str, check: bool = True, initial: bool = True) -> Response:
        """SASL PLAIN (RFC 5034, RFC 4616), with or without initial response."""
        token = sasl_plain_encode(name, password)
        if initial:
            return self.command(f"AUTH PLAIN {token}", check=check)
        challenge = self.command("AUTH PLAIN", check=check)
        if not challenge.continuation:
            return challenge
        return self.command(token, check=check)

    def stat(self) -> tuple[int, int]:
        return parse_drop_listing(self.command("STAT").text)

    def list(self) -> dict[int, int]:
        return parse_scan_listing(self.multiline("LIST").lines())

    def uidl(self) -> dict[int, str]:
        return parse_uid_listing(self.multiline("UIDL").lines())

    def retr(self, number: int, sink: Callable[[bytes], None] | None = None) -> bytes:
        return self.multiline(f"RETR {number}", sink=sink).data

    def top(self, number: int, lines: int) -> bytes:
        return self.multiline(f"TOP {number} {lines}").data

    def dele(self, number: int) -> Response:
        return self.command(f"DELE {number}")

    def rset(self) -> Response:
        return self.command("RSET")

    def noop(self) -> Response:
        return self.command("NOOP")

    def quit(self) -> Response:
        """QUIT and close the socket."""
        try:
            return self.command("QUIT", check=False)
        finally:
            self.close()

    # ------------------------------------------- connect() step by step, timed apart

    def open_tcp(self) -> None:
        """The TCP connection alone, no TLS and no greeting read: the first
        step of :meth:`connect`, for a caller that times the steps apart (a
        load user's CONNECT and TLS); then :meth:`start_implicit_tls` and
        :meth:`read_greeting`, or :meth:`read_greeting` and :meth:`stls`."""
        self.sock = socket.create_connection(
            (self.host, self.port), timeout=self.timeout, source_address=self.source_address
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def start_implicit_tls(self) -> None:
        """The TLS handshake on a fresh connection, before the greeting (RFC 8314)."""
        self._wrap()

    def read_greeting(self) -> Response:
        """Read the server's greeting line (kept as :attr:`greeting`)."""
        self.greeting = self.read_response()
        return self.greeting

    # ------------------------------------------------------------ ending without QUIT

    def hang_up(self, wait: float) -> None:
        """End the session without QUIT (no UPDATE state): send our FIN, read
        until the server closes its end too or ``wait`` seconds pass, then
        close.  A no-op when not connected.

        For a caller whose next session must not race the server's teardown
        (a server that releases the maildrop lock only after reading our EOF
        would still hold it).  A reset or a TLS error on the way ends the
        wait early: the session is over for us either way."""
        if self.sock is None:
            return
        try:
            with contextlib.suppress(OSError, ValueError):
                self.shutdown_write()
                self.read_until_close(wait)
        finally:
            self.close()


def apop_timestamp(greeting: Response | None) -> str | None:
    """The ``<...@...>`` msg-id in a greeting, if any."""
    return None if greeting is None else greeting_timestamp(greeting.text)


def _safe(raw: bytes) -> str:
    """The command for error messages, with secrets hidden."""
    keyword = raw.split(b" ", 1)[0].upper()
    if keyword in (b"PASS", b"APOP", b"AUTH"):
        return keyword.decode() + " ..."
    return raw.decode("utf-8", "replace")


def _is_close(error: OSError) -> bool:
    """A real close: reset, broken pipe, or TLS EOF without close_notify."""
    if isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return True
    return isinstance(error, ConnectionResetError | BrokenPipeError) or error.errno in (
        errno.ECONNRESET,
        errno.EPIPE,
    )
