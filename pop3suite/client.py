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

import base64
import hashlib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .proto import BodyReader, Response, parse_status_line
from .proto.errors import MalformedResponse
from .proto.limits import CRLF

TlsMode = Literal["none", "stls", "implicit"]

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

    # ------------------------------------------------------------ plumbing

    def connect(self) -> Response:
        """Open the connection (and TLS, per ``tls``); return the greeting."""
        self.sock = socket.create_connection(
            (self.host, self.port), timeout=self.timeout, source_address=self.source_address
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls == "implicit":
            self._wrap()
        self.greeting = self.read_response()
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

    def read_line(self) -> bytes:
        """One line from the server, CRLF included."""
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

    # ------------------------------------------------------------ commands

    def capa(self) -> list[str]:
        body = self.multiline("CAPA")
        return [line.decode("utf-8", "replace") for line in body.lines()]

    def stls(self) -> Response:
        response = self.command("STLS")
        self._buf = b""
        self._wrap()
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
        digest = hashlib.md5((timestamp + secret).encode("utf-8")).hexdigest()
        return self.command(f"APOP {name} {digest}", check=check)

    def auth_plain(self, name: str, password: str, check: bool = True, initial: bool = True) -> Response:
        """SASL PLAIN (RFC 5034, RFC 4616), with or without initial response."""
        token = base64.b64encode(f"\0{name}\0{password}".encode()).decode("ascii")
        if initial:
            return self.command(f"AUTH PLAIN {token}", check=check)
        challenge = self.command("AUTH PLAIN", check=check)
        if not challenge.continuation:
            return challenge
        return self.command(token, check=check)

    def stat(self) -> tuple[int, int]:
        response = self.command("STAT")
        count, size = response.text.split()[:2]
        return int(count), int(size)

    def list(self) -> dict[int, int]:
        body = self.multiline("LIST")
        return {int(n): int(s) for n, s in (line.split()[:2] for line in body.lines())}

    def uidl(self) -> dict[int, str]:
        body = self.multiline("UIDL")
        return {int(n): u.decode("ascii", "replace") for n, u in (line.split()[:2] for line in body.lines())}

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


def apop_timestamp(greeting: Response | None) -> str | None:
    """The ``<...@...>`` msg-id in a greeting, if any."""
    if greeting is None:
        return None
    text = greeting.text
    start = text.find("<")
    end = text.find(">", start)
    if start < 0 or end < 0 or "@" not in text[start:end]:
        return None
    return text[start : end + 1]


def _safe(raw: bytes) -> str:
    """The command for error messages, with secrets hidden."""
    keyword = raw.split(b" ", 1)[0].upper()
    if keyword in (b"PASS", b"APOP", b"AUTH"):
        return keyword.decode() + " ..."
    return raw.decode("utf-8", "replace")
