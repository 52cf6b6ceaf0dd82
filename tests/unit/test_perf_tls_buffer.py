"""Idle POP3S sessions must stay cheap: asyncio's TLS protocol zero-fills a
256 KiB read buffer per connection unless the server lowers it
(pop3suite.server.server.TLS_READ_BUFFER; 10,000 idle TLS sessions went
from 2.7 GB to ~0.5 GB)."""

from __future__ import annotations

import time
from collections.abc import Callable

from pop3suite.server.server import TLS_READ_BUFFER
from tests.conftest import PASSWORD, RunningServer


def test_tls_connection_buffer_is_small(server: RunningServer, connect: Callable[..., object]) -> None:
    pop = connect("implicit")
    pop.login("alice", PASSWORD)  # a full round trip through the TLS reader
    deadline = time.monotonic() + 5
    while not server.server._connections and time.monotonic() < deadline:
        time.sleep(0.01)
    (conn,) = server.server._connections
    protocol = conn.transport._ssl_protocol  # asyncio's SSLProtocol behind the transport
    assert len(protocol._ssl_buffer) <= TLS_READ_BUFFER < 256 * 1024
    assert pop.stat() == (0, 0)
    pop.quit()
