"""Pop3Client's probe API against the real reference server (real sockets,
real TLS) and against plain listening sockets where the peer's behaviour
must be exact (a reset, silence, bytes pipelined behind a reply)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from pop3suite.client import ConnectionClosed, Pop3Client
from tests.conftest import PASSWORD


@pytest.fixture
def peer() -> Iterator[Callable[[Callable[[socket.socket], None]], Pop3Client]]:
    """``peer(script)``: a client connected to a one-shot loopback server that
    runs ``script(conn)`` in a thread after sending a greeting."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []
    clients: list[Pop3Client] = []

    def start(script: Callable[[socket.socket], None]) -> Pop3Client:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"+OK hello\r\n")
                script(conn)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        client = Pop3Client("127.0.0.1", listener.getsockname()[1], timeout=5)
        client.connect()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()
    for thread in threads:
        thread.join(5)
    for listener in listeners:
        listener.close()


def _wait_for(conn: socket.socket, data: bytes) -> None:
    got = b""
    while data not in got:
        chunk = conn.recv(4096)
        if not chunk:
            return
        got += chunk


def test_closed_within_sees_eof_and_records_what_came_before(peer):
    client = peer(lambda conn: (_wait_for(conn, b"QUIT\r\n"), conn.sendall(b"+OK bye\r\n")))
    client.send_raw(b"QUIT\r\n")
    assert client.closed_within(5)
    assert "S: +OK bye" in client.transcript_text()


def test_closed_within_sees_a_reset():
    listener = socket.create_server(("127.0.0.1", 0))
    with listener:
        client = Pop3Client("127.0.0.1", listener.getsockname()[1], timeout=5)
        client.sock = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        conn.close()  # RST
        assert client.closed_within(5)
        client.close()


def test_silence_is_not_a_close(peer):
    done = threading.Event()
    client = peer(lambda conn: done.wait(5))
    assert not client.closed_within(0.3)
    assert client.read_until_close(0.2) is None
    assert client.receive_within(0.2) == b""
    done.set()


def test_read_exact_line_leaves_the_next_bytes_in_the_socket(peer):
    def script(conn: socket.socket) -> None:
        _wait_for(conn, b"X\r\n")
        conn.sendall(b"+OK one\r\nNOT-A-LINE-YET")

    client = peer(script)
    client.send_raw(b"X\r\n")
    assert client.read_exact_line(timeout=5) == b"+OK one\r\n"
    assert client._buf == b""  # nothing read ahead
    assert client.receive_within(2).startswith(b"NOT-A-LINE")


def test_read_line_timeout_raises_and_restores_the_default(peer):
    done = threading.Event()
    client = peer(lambda conn: done.wait(5))
    with pytest.raises(TimeoutError):
        client.read_line(timeout=0.2)
    assert client.sock is not None and client.sock.gettimeout() == 5
    done.set()


def test_receive_within_raises_on_eof(peer):
    client = peer(lambda conn: None)
    with pytest.raises(ConnectionClosed):
        client.receive_within(5)


def test_starttls_on_the_reference_server_discards_pipelined_plaintext(server, tls_context):
    client = Pop3Client("127.0.0.1", server.port(), ssl_context=tls_context, timeout=5)
    with client:
        assert not client.tls_active
        reply = client.starttls()
        assert reply.ok and client.tls_active
        assert client.discarded_plaintext == b""
        assert client.capabilities().get("STLS") is None  # not offered inside TLS
        client.login("alice", PASSWORD)
        assert client.stat() == (0, 0)


def test_starttls_err_leaves_the_connection_plain(server, tls_context):
    client = Pop3Client("127.0.0.1", server.port(), ssl_context=tls_context, timeout=5)
    with client:
        client.login("alice", PASSWORD)
        reply = client.starttls()  # RFC 2595 §4: only in AUTHORIZATION state
        assert not reply.ok and not client.tls_active
        assert client.noop().ok


def test_probes_on_the_reference_server(server, deliver, tls_context):
    deliver("alice", b"Subject: a\r\n\r\nbody\r\n")
    client = Pop3Client("127.0.0.1", server.port("pop3s"), tls="implicit", ssl_context=tls_context, timeout=5)
    with client:
        client.login("alice", PASSWORD)
        assert client.list() == {1: client.stat()[1]}
        assert set(client.uidl()) == {1}
        assert "UIDL" in client.capabilities()
        client.send_raw(b"NOOP\r\n")
        assert client.read_exact_line(timeout=5).startswith(b"+OK")
        client.send_raw(b"QUIT\r\n")
        assert client.closed_within(5)
    held = Pop3Client("127.0.0.1", server.port(), timeout=5)
    held.connect()
    sock = held.detach()
    assert held.sock is None
    sock.close()
    aborted = Pop3Client("127.0.0.1", server.port(), timeout=5)
    aborted.connect()
    aborted.reset()
    assert aborted.sock is None
