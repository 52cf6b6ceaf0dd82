"""The physical ceilings RETR MB/s is measured against on this machine:
AES-128-GCM speed of the OpenSSL that Python links (via ``cryptography``,
one core, 16 KiB records as TLS sends them) and raw loopback TCP
throughput (a socket pair pushing 256 KiB writes, one reader thread)."""

from __future__ import annotations

import os
import socket
import threading
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MB = 1_000_000


def aes_gcm_mbps(seconds: float = 1.0, record: int = 16384) -> float:
    """MB/s of AES-128-GCM encryption of ``record``-octet records."""
    aead = AESGCM(AESGCM.generate_key(bit_length=128))
    nonce, data = os.urandom(12), os.urandom(record)
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(64):
            aead.encrypt(nonce, data, None)
        done += 64 * record
    return done / MB / elapsed


def loopback_mbps(total: int = 400 * MB, chunk: int = 256 * 1024) -> float:
    """MB/s through one loopback TCP connection (writer and reader threads)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received = 0

    def reader() -> None:
        nonlocal received
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(chunk):
                received += len(data)

    thread = threading.Thread(target=reader)
    thread.start()
    payload = b"x" * chunk
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.perf_counter()
        sent = 0
        while sent < total:
            sock.sendall(payload)
            sent += chunk
        sock.shutdown(socket.SHUT_WR)
        thread.join()
        elapsed = time.perf_counter() - start
    server.close()
    return received / MB / elapsed
