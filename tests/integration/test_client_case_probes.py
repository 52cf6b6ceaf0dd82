"""The probes Pop3Client gained so that no conformance case touches its
socket: real loopback peers where the peer's timing or its TLS ending must
be exact, the real reference server (real TLS) for the rest."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable

import pytest

from pop3suite.client import Pop3Client, Pop3ClientError
from tests.conftest import PASSWORD
from tests.integration.test_client_probes import _wait_for, peer  # noqa: F401 (the fixture)


def _answers_go_then_stays_open(reply: bytes, done: threading.Event) -> Callable[[socket.socket], None]:
    """A peer script: wait for ``GO``, send ``reply``, stay open until ``done``."""

    def script(conn: socket.socket) -> None:
        _wait_for(conn, b"GO\r\n")
        conn.sendall(reply)
        done.wait(5)

    return script


def test_read_until_close_or_idle_waits_for_a_slow_but_live_server(peer):  # noqa: F811
    def script(conn: socket.socket) -> None:
        _wait_for(conn, b"GO\r\n")
        for _ in range(5):  # 1.5 s in all, never silent for 0.8 s
            conn.sendall(b"-ERR no\r\n")
            time.sleep(0.3)

    client = peer(script)
    client.send_raw(b"GO\r\n")
    data, closed = client.read_until_close_or_idle(0.8)
    assert closed
    assert data == b"-ERR no\r\n" * 5
    assert "S: -ERR no" in client.transcript_text()


def test_read_until_close_or_idle_reports_silence_and_keeps_buffered_bytes(peer):  # noqa: F811
    done = threading.Event()
    client = peer(_answers_go_then_stays_open(b"+OK one\r\n+OK two\r\n", done))
    client.send_raw(b"GO\r\n")
    assert client.read_line(timeout=5) == b"+OK one\r\n"  # "+OK two" may sit in the buffer
    started = time.monotonic()
    data, closed = client.read_until_close_or_idle(0.3)
    assert (data, closed) == (b"+OK two\r\n", False)
    assert time.monotonic() - started < 3
    assert client.sock is not None and client.sock.gettimeout() == 5  # restored
    done.set()


def test_receive_for_keeps_what_came_on_an_open_connection_and_stops_at_a_close(peer):  # noqa: F811
    done = threading.Event()
    client = peer(_answers_go_then_stays_open(b"garbage", done))
    client.send_raw(b"GO\r\n")
    started = time.monotonic()
    assert client.receive_for(0.5) == b"garbage"
    assert time.monotonic() - started >= 0.4  # a total deadline, not "the first chunk"
    done.set()

    closer = peer(lambda conn: (_wait_for(conn, b"GO\r\n"), conn.sendall(b"bye")))
    closer.send_raw(b"GO\r\n")
    started = time.monotonic()
    assert closer.receive_for(10) == b"bye"
    assert time.monotonic() - started < 5  # ended by the close


def test_handshake_after_a_pipelined_stls_read_by_hand(server, tls_context):
    client = Pop3Client("127.0.0.1", server.port(), ssl_context=tls_context, timeout=5)
    with client:
        client.send_raw(b"STLS\r\n")
        assert client.read_exact_line().startswith(b"+OK")
        assert client.tls_version() is None and client.tls_cipher() is None
        client.handshake()
        assert client.tls_active
        assert client.tls_version() in ("TLSv1.2", "TLSv1.3")
        assert client.tls_cipher()
        client.login("alice", PASSWORD)
        assert client.noop().ok
        with pytest.raises(Pop3ClientError):
            client.handshake()


def test_connect_without_greeting_reads_nothing(server, tls_context):
    implicit = Pop3Client(
        "127.0.0.1", server.port("pop3s"), tls="implicit", ssl_context=tls_context, timeout=5
    )
    implicit.connect_without_greeting()
    with implicit:  # already connected: no second connect
        assert implicit.tls_active and implicit.greeting is None
        assert implicit.read_line().startswith(b"+OK")  # the greeting is still there to judge
    plain_to_pop3s = Pop3Client("127.0.0.1", server.port("pop3s"), timeout=5)
    plain_to_pop3s.connect_without_greeting()
    with plain_to_pop3s:
        assert plain_to_pop3s.receive_within(0.3) == b""  # TLS first: nothing in clear


def test_tls_ending_sees_the_reference_servers_close_notify(server, tls_context):
    tls_context.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # else a bare close looks clean
    client = Pop3Client("127.0.0.1", server.port("pop3s"), tls="implicit", ssl_context=tls_context, timeout=5)
    with client:
        client.command("QUIT")
        assert client.tls_ending(5) == "close_notify"


def _tls_peer(lab, ending: str) -> tuple[socket.socket, threading.Thread]:
    """A one-shot implicit-TLS server with the lab's certificate that sends
    a greeting, answers QUIT and ends the session as ``ending`` says."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(lab.settings.tls_cert, lab.settings.tls_key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as tls:
            tls.sendall(b"+OK hello\r\n")
            _wait_for(tls, b"QUIT\r\n")
            tls.sendall(b"+OK bye\r\n")
            if ending == "close_notify":
                with contextlib.suppress(OSError):  # the client need not answer the alert
                    tls.unwrap().close()
            elif ending == "open":
                time.sleep(2)
            # else: close() sends no TLS alert, only the TCP FIN

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize("ending", ["close_notify", "no close_notify", "open"])
def test_tls_ending_tells_close_notify_from_a_bare_close(lab, tls_context, ending):
    listener, thread = _tls_peer(lab, ending)
    tls_context.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # else a bare close looks clean
    client = Pop3Client(
        "127.0.0.1",
        listener.getsockname()[1],
        tls="implicit",
        ssl_context=tls_context,
        timeout=5,
    )
    with client:
        client.command("QUIT")
        assert client.tls_ending(1.0) == ending
    thread.join(5)
    listener.close()
