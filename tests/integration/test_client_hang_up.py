"""``Pop3Client.hang_up``: ending a session without QUIT and waiting for the
server's close (the conformance fixtures' teardown), against plain loopback
peers whose behaviour must be exact and against the reference server."""

from __future__ import annotations

import socket
import threading
import time

from pop3suite.client import Pop3Client
from tests.conftest import PASSWORD


def _peer(script) -> tuple[Pop3Client, threading.Thread, socket.socket]:
    """A client connected to a one-shot loopback server running ``script(conn)``."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"+OK hello\r\n")
            script(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = Pop3Client("127.0.0.1", listener.getsockname()[1], timeout=5)
    client.connect()
    return client, thread, listener


def test_hang_up_sends_fin_and_returns_when_the_server_closes():
    seen: list[bytes] = []

    def script(conn: socket.socket) -> None:
        while chunk := conn.recv(4096):  # until our FIN
            seen.append(chunk)
        seen.append(b"<EOF>")

    client, thread, listener = _peer(script)
    started = time.monotonic()
    client.hang_up(10)
    assert time.monotonic() - started < 5  # did not wait out the 10 s
    assert client.sock is None and seen == [b"<EOF>"]  # no QUIT, just the FIN
    thread.join(5)
    listener.close()


def test_hang_up_waits_at_most_its_time_and_survives_a_reset():
    release = threading.Event()
    client, thread, listener = _peer(lambda conn: release.wait(10))  # holds the session open
    started = time.monotonic()
    client.hang_up(0.5)
    assert 0.4 < time.monotonic() - started < 5 and client.sock is None
    release.set()
    thread.join(5)

    def reset(conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    client, thread, listener2 = _peer(reset)
    thread.join(5)  # the peer has reset the connection
    client.hang_up(5)  # a reset ends the wait; no exception
    assert client.sock is None
    client.hang_up(5)  # not connected: nothing to do
    listener.close()
    listener2.close()


def test_hang_up_over_tls_releases_the_maildrop_at_once(server, tls_context):
    """Implicit TLS on the reference server: after hang_up the next session
    logs in straight away (the first one left without QUIT, no UPDATE)."""
    first = Pop3Client("127.0.0.1", server.port("pop3s"), tls="implicit", ssl_context=tls_context, timeout=5)
    first.connect()
    first.login("alice", PASSWORD)
    first.hang_up(3)
    assert first.sock is None
    with Pop3Client(
        "127.0.0.1", server.port("pop3s"), tls="implicit", ssl_context=tls_context, timeout=5
    ) as second:
        assert second.login("alice", PASSWORD).ok
        second.quit()
