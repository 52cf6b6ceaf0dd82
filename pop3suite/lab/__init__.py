"""Shared lab services: the embedded reference-server launcher.

(:mod:`pop3suite.lab.embedded` describes such a server as the default
conformance / client-matrix target.)

``start_server`` runs ``pop3suite serve`` as its own process (the command
users run; a load run must not share a process with the asyncio server) and
waits until it listens; ``lab_server`` adds a temporary lab (accounts, test
CA, free ports: ``pop3suite.server.lab``) around it.  It sits below the
command modules (``demo.py``, ``loadcmd.py``) so that the load package,
tests and benchmarks can start a server without importing a command module.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    endpoints: dict[str, int]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(config_path: Path, timeout: float = 20.0) -> ServerProcess:
    """Run ``pop3suite serve`` as a child process and wait until it is ready.

    Raises:
        RuntimeError: the server exited or did not get ready in time; the
            message carries its output.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "pop3suite", "serve", "--config", str(config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return wait_ready(process, timeout, "pop3suite serve")


def wait_ready(process: subprocess.Popen[str], timeout: float, what: str) -> ServerProcess:
    """Read a starting server's output (``listening: NAME on HOST:PORT``
    lines) up to ``ready``; then keep draining it in a thread so the server
    never blocks on a full pipe.  Shared with the broken-server launcher.

    Raises:
        RuntimeError: the process exited or was not ready within
            ``timeout`` s (it is killed); the message carries its output.
    """
    endpoints: dict[str, int] = {}
    output: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        if "listening:" in line:
            name, _, where = line.split("listening:", 1)[1].strip().partition(" on ")
            endpoints[name] = int(where.rsplit(":", 1)[1])
        if "ready" in line:
            # The server logs one record per session: keep reading its
            # output, or a full pipe would block it (the last lines are kept).
            tail: collections.deque[str] = collections.deque(output, maxlen=200)
            threading.Thread(target=tail.extend, args=(process.stdout,), daemon=True).start()
            return ServerProcess(process, endpoints)
    process.kill()
    process.wait()
    raise RuntimeError(f"{what} did not start:\n" + "".join(output))


def auto_ports() -> dict[str, int | str]:
    """Lab listener ports for a server started here: POP3, POP3S and SMTP on
    free ports (``"auto"``: the server picks, its ``listening:`` lines say
    which), submission and SMTPS off."""
    ports: dict[str, int | str] = {"pop3_port": "auto", "pop3s_port": "auto", "smtp_port": "auto"}
    return ports | {"submission_port": 0, "smtps_port": 0}


@contextmanager
def lab_server(keep: bool = False) -> Iterator[tuple[object, ServerProcess]]:
    """A temporary lab with free ports and its running server."""
    from pop3suite.server.lab import LabOptions, create_lab

    directory = Path(tempfile.mkdtemp(prefix="pop3suite-demo-"))
    lab = create_lab(directory, LabOptions(ports=auto_ports(), login_failure_delay=0.2, fsync=False))
    server = start_server(lab.config_path)
    try:
        yield lab, server
    finally:
        server.stop()
        if keep:
            print(f"lab kept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
