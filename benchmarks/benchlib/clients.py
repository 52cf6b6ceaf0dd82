"""Load-client processes: long-lived (spawned once, so start-up is not
timed), one thread per concurrent session, the blocking
:class:`~pop3suite.client.Pop3Client`.  Load generator, server and driver
never share an interpreter or a GIL.

A task is a dict with ``kind`` (``sessions``, ``retr``, ``idle_open``,
``idle_close``), ``host``, ``port``, ``tls`` (``none``/``implicit``),
``cafile``, ``password`` and what the kind needs.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import ssl
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from pop3suite.client import Pop3Client

from .meters import raise_nofile


def sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


class ByteCounter:
    """A RETR/UIDL sink that only counts."""

    def __init__(self) -> None:
        self.octets = 0

    def __call__(self, chunk: bytes) -> None:
        self.octets += len(chunk)


def context_for(task: dict[str, Any]) -> ssl.SSLContext | None:
    if task["tls"] == "none":
        return None
    return ssl.create_default_context(cafile=task["cafile"])


def new_client(task: dict[str, Any], context: ssl.SSLContext | None) -> Pop3Client:
    return Pop3Client(
        task["host"], task["port"], tls=task["tls"], ssl_context=context, timeout=120, transcript=False
    )


def _run_sessions(task: dict[str, Any]) -> dict[str, Any]:
    """Each thread runs sessions (connect, USER, PASS, STAT, QUIT) back to
    back on its own account until ``end_at``; those ending inside
    [window_start, end_at] count.  Every STAT is checked."""
    context = context_for(task)
    window_start, end_at = task["window_start"], task["end_at"]
    expect = tuple(task["expect_stat"])
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def loop(account: str) -> None:
        mine: list[float] = []
        failed: list[str] = []
        sleep_until(task["start_at"])
        while time.monotonic() < end_at:
            t0 = time.monotonic()
            pop = new_client(task, context)
            try:
                pop.connect()
                pop.login(account, task["password"])
                got = pop.stat()
                pop.quit()
                ok = got == expect
                if not ok:
                    failed.append(f"{account}: STAT {got}, expected {expect}")
            except Exception as error:
                pop.close()
                failed.append(f"{account}: {type(error).__name__}: {error}")
                ok = False
                time.sleep(0.01)
            t1 = time.monotonic()
            if ok and window_start <= t1 <= end_at:
                mine.append(t1 - t0)
        with lock:
            latencies.extend(mine)
            errors.extend(failed)

    threads = [threading.Thread(target=loop, args=(a,), daemon=True) for a in task["accounts"]]
    for thread in threads:
        thread.start()
    sleep_until(window_start)
    cpu0 = time.process_time()
    sleep_until(end_at)
    cpu1 = time.process_time()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "errors": errors[:10], "error_count": len(errors), "cpu": cpu1 - cpu0}


def _run_retr(task: dict[str, Any]) -> dict[str, Any]:
    """Each thread logs in first, then at ``start_at`` RETRs every message
    once into a counting sink and checks each count against LIST."""
    context = context_for(task)
    start_at = task["start_at"]
    expect_sizes = sorted(task["expect_sizes"])
    octets: list[int] = []
    ends: list[float] = []
    errors: list[str] = []
    late: list[str] = []
    lock = threading.Lock()

    def one(account: str) -> None:
        pop = new_client(task, context)
        got = 0
        try:
            pop.connect()
            pop.login(account, task["password"])
            sizes = pop.list()
            if sorted(sizes.values()) != expect_sizes:
                raise RuntimeError(
                    f"LIST sizes {sorted(sizes.values())[:3]}..., expected {expect_sizes[:3]}..."
                )
            if time.monotonic() > start_at:
                with lock:
                    late.append(account)
            sleep_until(start_at)
            for number in sorted(sizes):
                sink = ByteCounter()
                pop.retr(number, sink=sink)
                if sink.octets != sizes[number]:
                    raise RuntimeError(f"RETR {number} gave {sink.octets} octets, LIST said {sizes[number]}")
                got += sink.octets
            end = time.monotonic()
            pop.quit()
            with lock:
                octets.append(got)
                ends.append(end)
        except Exception as error:
            pop.close()
            with lock:
                errors.append(f"{account}: {type(error).__name__}: {error}")

    threads = [threading.Thread(target=one, args=(a,), daemon=True) for a in task["accounts"]]
    for thread in threads:
        thread.start()
    sleep_until(start_at)
    cpu0 = time.process_time()
    for thread in threads:
        thread.join()
    cpu1 = time.process_time()
    return {
        "octets": octets,
        "ends": ends,
        "errors": errors[:10],
        "error_count": len(errors),
        "late": late,
        "cpu": cpu1 - cpu0,
    }


#: Idle connections this client process holds open between idle_open and idle_close.
_HELD: list[socket.socket] = []


def _run_idle_open(task: dict[str, Any]) -> dict[str, Any]:
    """Open ``count`` connections (implicit TLS if the task says so: the
    handshake is done) and read each greeting; keep them."""
    errors: list[str] = []
    context = context_for(task)
    for _ in range(task["count"]):
        try:
            sock = socket.create_connection((task["host"], task["port"]), timeout=30)
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=task["host"])
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(512)
                if not chunk:
                    raise ConnectionError("closed before the greeting")
                data += chunk
            if not data.startswith(b"+OK"):
                raise ConnectionError(f"greeting {data[:60]!r}")
            _HELD.append(sock)
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
            if len(errors) > 20:
                break
    return {"opened": len(_HELD), "errors": errors[:5], "error_count": len(errors)}


def _run_idle_close(task: dict[str, Any]) -> dict[str, Any]:
    """Check the held connections are still open (no EOF), then close them."""
    alive = 0
    for sock in _HELD:
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            try:
                alive += sock.recv(1) != b""  # data would be unexpected but means alive
            except (BlockingIOError, ssl.SSLWantReadError):
                alive += 1
        sock.close()
    _HELD.clear()
    return {"alive": alive}


_RUNNERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "sessions": _run_sessions,
    "retr": _run_retr,
    "idle_open": _run_idle_open,
    "idle_close": _run_idle_close,
}


def _worker(pipe: Connection) -> None:
    """A client process: runs tasks from the pipe until it gets None."""
    raise_nofile()
    while True:
        task = pipe.recv()
        if task is None:
            return
        try:
            result = _RUNNERS[task["kind"]](task)
        except Exception as error:
            result = {"fatal": f"{type(error).__name__}: {error}"}
        pipe.send(result)


class ClientPool:
    """Long-lived client processes."""

    def __init__(self, size: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for _ in range(size):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def send(self, tasks: list[dict[str, Any]]) -> None:
        if len(tasks) > len(self.pipes):
            raise ValueError(f"{len(tasks)} tasks for {len(self.pipes)} client processes")
        for pipe, task in zip(self.pipes, tasks, strict=False):
            pipe.send(task)

    def collect(self, count: int) -> list[dict[str, Any]]:
        results = [pipe.recv() for pipe in self.pipes[:count]]
        for result in results:
            if "fatal" in result:
                raise RuntimeError(f"client process failed: {result['fatal']}")
        return results

    def run(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.send(tasks)
        return self.collect(len(tasks))

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()


def split(accounts: list[str], parts: int) -> list[list[str]]:
    """Round-robin the accounts over ``parts`` client processes."""
    parts = max(1, min(parts, len(accounts)))
    return [accounts[i::parts] for i in range(parts)]
