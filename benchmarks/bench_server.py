"""Benchmarks of the reference server over real sockets (numbers, not tests).

The server runs as its own process (``pop3suite serve``, started with
:func:`pop3suite.demo.start_server`); the load comes from separate client
processes (``multiprocessing``, spawn), each running one thread per
concurrent session with the blocking :class:`~pop3suite.client.Pop3Client`.
Three groups are measured:

1. ``sessions``: full sessions per second (connect, USER, PASS, STAT, QUIT)
   at several concurrency levels, plain and implicit TLS, once with the lab's
   scrypt cost (``--scrypt-n``, default 2**14) and once with a cheap hash
   (2**10), so the share of password hashing shows as its own row.
2. ``retr``: RETR throughput on a ~20 MB mailbox (20 x 1 MiB), plain and TLS,
   one session or several at once (one account each: the maildrop lock is
   exclusive).
3. ``uidl``: one UIDL (and LIST) on a 10,000-message mailbox, and the
   USER+PASS time for that mailbox (login scans the Maildir) against an
   empty one.

Every figure is the median over ``--rounds`` rounds, with min and max;
rounds of the cases in a group are interleaved so that noise on a shared
machine hits every case alike.  See benchmarks/README.md for how to read it.

Usage::

    python benchmarks/bench_server.py [--quick] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import platform
import shutil
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pop3suite.client import Pop3Client
from pop3suite.demo import ServerProcess, expected_wire, start_server
from pop3suite.netutil import free_port
from reference_server import config, passwords
from reference_server.lab import Lab, LabOptions, create_lab
from reference_server.storage import MaildirStore

HOST = "127.0.0.1"
PASSWORD = "bench-secret"
CHEAP_N = 2**10
MB = 1_000_000  # throughput is reported in MB/s = 10**6 octets per second

# ---------------------------------------------------------------- messages


def text_message(size: int, seed: int = 0) -> bytes:
    """A CRLF message of about ``size`` octets: many short lines of varying
    length, and every 25th line starting with a dot (so RETR has to stuff)."""
    header = (
        b"From: bench@example.test\r\nTo: reader@example.test\r\n"
        b"Subject: benchmark message %d\r\nMessage-ID: <%d.bench@example.test>\r\n\r\n" % (seed, seed)
    )
    words = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
    lines = []
    for i in range(200):
        line = b" ".join(words[: 1 + (i * 7 + seed) % len(words)])
        if i % 25 == 0:
            line = b"." + line
        elif i % 50 == 13:
            line = b"."  # a line that is a lone dot
        lines.append(line)
    block = b"\r\n".join(lines) + b"\r\n"
    body = block * (max(0, size - len(header)) // len(block) + 1)
    cut = body.rfind(b"\r\n", 0, max(2, size - len(header))) + 2
    return header + body[:cut]


def small_message(i: int) -> bytes:
    return (
        b"From: sender%d@example.test\r\nTo: bulk@example.test\r\nSubject: small %d\r\n\r\n"
        b"Hello number %d.\r\n.dot line\r\nBye.\r\n" % (i % 97, i, i)
    )


# ---------------------------------------------------------------- lab


@dataclass
class BenchLab:
    lab: Lab
    sessions_default: list[str]  # accounts hashed with --scrypt-n
    sessions_cheap: list[str]  # accounts hashed with CHEAP_N
    session_stat: tuple[int, int]
    retr_accounts: list[str]
    retr_sizes: list[int]
    retr_digests: list[str]  # SHA-256 of each message's expected RETR body
    bulk_uids: set[str]
    bulk_size: int


def build_lab(directory: Path, args: argparse.Namespace) -> BenchLab:
    """create_lab, then extra accounts appended to pop3suite.toml and mail
    delivered with MaildirStore.deliver (fsync off)."""
    ports = {
        "pop3_port": free_port(),
        "pop3s_port": free_port(),
        "smtp_port": 0,
        "submission_port": 0,
        "smtps_port": 0,
    }
    options = LabOptions(
        password=PASSWORD,
        ports=ports,
        idle_timeout=600,
        login_failure_delay=0.2,
        scrypt_n=args.scrypt_n,
        fsync=False,
    )
    lab = create_lab(directory, options)
    top = max(args.concurrency)
    sessions_default = [f"sd{i}" for i in range(top)]
    sessions_cheap = [f"sc{i}" for i in range(top)]
    retr_accounts = [f"r{i}" for i in range(max(args.retr_concurrency))]
    # One hash per cost, shared by the accounts of that cost: verifying costs
    # the same whatever the salt, and it saves seconds of set-up.
    hashed = {
        "default": passwords.hash_password(PASSWORD, n=args.scrypt_n),
        "cheap": passwords.hash_password(PASSWORD, n=CHEAP_N),
    }
    extra = [(name, "default") for name in sessions_default]
    extra += [(name, "cheap") for name in [*sessions_cheap, *retr_accounts, "bulk", "empty"]]
    with open(lab.config_path, "a", encoding="utf-8") as handle:
        handle.write("\n# added by benchmarks/bench_server.py\n")
        for name, cost in extra:
            handle.write(f'[accounts.{name}]\npassword = "{hashed[cost]}"\n\n')
    settings = config.load(lab.config_path)  # fail early on a bad config
    missing = [name for name, _ in extra if name not in settings.accounts]
    if missing:
        raise RuntimeError(f"accounts missing from the config: {missing[:5]}")

    store = MaildirStore(str(settings.mail_root), fsync=False)
    for name, _ in extra:
        store.ensure_mailbox(name)
    # Session accounts: three small messages each, so STAT has something to count.
    session_msgs = [small_message(i) for i in range(3)]
    for name in [*sessions_default, *sessions_cheap]:
        for data in session_msgs:
            store.deliver(name, data)
    session_stat = (len(session_msgs), sum(len(expected_wire(m)) for m in session_msgs))
    # RETR: 20 x 1 MiB delivered to r0, hard-linked into the other r<i>
    # (same files, same page cache; saves 20 MB of writes per account).
    retr_msgs = [text_message(args.retr_message_size, seed) for seed in range(args.retr_messages)]
    for data in retr_msgs:
        store.deliver(retr_accounts[0], data)
    first_new = Path(store.user_dir(retr_accounts[0])) / "new"
    for name in retr_accounts[1:]:
        for path in first_new.iterdir():
            os.link(path, Path(store.user_dir(name)) / "new" / path.name)
    retr_sizes = [len(expected_wire(m)) for m in retr_msgs]
    retr_digests = [hashlib.sha256(expected_wire(m)).hexdigest() for m in retr_msgs]
    # UIDL: a 10,000-message mailbox.
    bulk_uids = set()
    bulk_size = 0
    for i in range(args.bulk_messages):
        data = small_message(i)
        bulk_uids.add(store.deliver("bulk", data))
        bulk_size += len(expected_wire(data))
    return BenchLab(
        lab,
        sessions_default,
        sessions_cheap,
        session_stat,
        retr_accounts,
        retr_sizes,
        retr_digests,
        bulk_uids,
        bulk_size,
    )


# ---------------------------------------------------------------- CPU


def process_cpu_seconds(pid: int) -> float | None:
    """user+system CPU seconds of a process and all its threads."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        pass
    try:
        import psutil  # optional, for systems without /proc

        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except Exception:
        return None


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes on the machine used so far (from /proc/stat);
    minus the server's and the clients' it shows how busy the rest of a
    shared machine was during a measurement."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user + nice + system; guest time is already inside user and nice.
    # irq, softirq and steal are left out: they are not charged to any
    # process, so they could not be told apart from ours.
    busy = sum(fields[0:3]) - sum(fields[8:10])
    return busy / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Server and whole-machine CPU seconds between two readings."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.server0 = process_cpu_seconds(pid)
        self.machine0 = machine_busy_seconds()
        self.server: float | None = None
        self.machine: float | None = None

    def stop(self) -> None:
        server1, machine1 = process_cpu_seconds(self.pid), machine_busy_seconds()
        if self.server0 is not None and server1 is not None:
            self.server = server1 - self.server0
        if self.machine0 is not None and machine1 is not None:
            self.machine = machine1 - self.machine0

    def record(self, row: Row, wall: float, client_cpu: float | None, ops: float | None = None) -> None:
        """Add CPU% figures to ``row``; with ``ops``, also the server's CPU
        milliseconds per operation (one session, one MB, one command)."""
        if self.server is not None:
            row.server_cpu_pct.append(100 * self.server / wall)
            if ops:
                row.server_ms_per_op.append(1000 * self.server / ops)
        if client_cpu is not None:
            row.client_cpu_pct.append(100 * client_cpu / wall)
        if self.machine is not None and self.server is not None:
            other = self.machine - self.server - (client_cpu or 0.0)
            row.other_cpu_pct.append(max(0.0, 100 * other / wall))


def process_peak_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------- client processes


def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


class _ByteCounter:
    """A RETR sink that only counts."""

    def __init__(self) -> None:
        self.octets = 0

    def __call__(self, chunk: bytes) -> None:
        self.octets += len(chunk)


def _new_client(task: dict[str, Any], context: ssl.SSLContext | None) -> Pop3Client:
    return Pop3Client(HOST, task["port"], tls=task["tls"], ssl_context=context, timeout=120, transcript=False)


def _context(task: dict[str, Any]) -> ssl.SSLContext | None:
    if task["tls"] == "none":
        return None
    return ssl.create_default_context(cafile=task["cafile"])


def _run_sessions(task: dict[str, Any]) -> dict[str, Any]:
    """Each thread runs sessions back to back on its own account until
    ``end_at``; sessions that end inside [window_start, end_at] count."""
    context = _context(task)
    window_start, end_at = task["window_start"], task["end_at"]
    expect = tuple(task["expect_stat"])
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def loop(account: str) -> None:
        mine: list[float] = []
        failed: list[str] = []
        _sleep_until(task["start_at"])
        while time.monotonic() < end_at:
            t0 = time.monotonic()
            pop = _new_client(task, context)
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
    _sleep_until(window_start)
    cpu0 = time.process_time()
    _sleep_until(end_at)
    cpu1 = time.process_time()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "errors": errors[:10], "error_count": len(errors), "cpu": cpu1 - cpu0}


def _run_retr(task: dict[str, Any]) -> dict[str, Any]:
    """Each thread logs in first, then at ``start_at`` RETRs every message
    once into a counting sink and checks each count against LIST."""
    context = _context(task)
    start_at = task["start_at"]
    expect_sizes = sorted(task["expect_sizes"])
    octets: list[int] = []
    ends: list[float] = []
    errors: list[str] = []
    late: list[str] = []
    lock = threading.Lock()

    def one(account: str) -> None:
        pop = _new_client(task, context)
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
            _sleep_until(start_at)
            for number in sorted(sizes):
                sink = _ByteCounter()
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
    _sleep_until(start_at)
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


_RUNNERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "sessions": _run_sessions,
    "retr": _run_retr,
}


def _worker(pipe: Connection) -> None:
    """A client process: runs tasks from the pipe until it gets None."""
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
    """Long-lived client processes (spawned once, so start-up is not timed)."""

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
        for pipe, task in zip(self.pipes, tasks, strict=False):
            pipe.send(task)

    def collect(self, count: int) -> list[dict[str, Any]]:
        results = [pipe.recv() for pipe in self.pipes[:count]]
        for result in results:
            if "fatal" in result:
                raise RuntimeError(f"client process failed: {result['fatal']}")
        return results

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


# ---------------------------------------------------------------- results


@dataclass
class Row:
    group: str
    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    server_cpu_pct: list[float] = field(default_factory=list)
    client_cpu_pct: list[float] = field(default_factory=list)
    other_cpu_pct: list[float] = field(default_factory=list)
    server_ms_per_op: list[float] = field(default_factory=list)
    latency_p50_ms: list[float] = field(default_factory=list)
    latency_p95_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_errors(self, count: int, samples: list[str]) -> None:
        self.errors += count
        for sample in samples:
            if len(self.error_samples) < 5 and sample not in self.error_samples:
                self.error_samples.append(sample)

    def as_dict(self) -> dict[str, Any]:
        def summary(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            return {"median": statistics.median(values), "min": min(values), "max": max(values)}

        return {
            "group": self.group,
            "name": self.name,
            "unit": self.unit,
            **(summary(self.values) or {"median": None, "min": None, "max": None}),
            "values": self.values,
            "server_cpu_pct": summary(self.server_cpu_pct),
            "client_cpu_pct": summary(self.client_cpu_pct),
            "other_cpu_pct": summary(self.other_cpu_pct),
            "server_cpu_ms_per_op": summary(self.server_ms_per_op),
            "latency_p50_ms": summary(self.latency_p50_ms),
            "latency_p95_ms": summary(self.latency_p95_ms),
            "errors": self.errors,
            "error_samples": self.error_samples,
            "notes": self.notes,
        }


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'benchmark':<44} {'unit':<10} {'median':>9} {'min':>9} {'max':>9} "
        f"{'srv CPU%':>8} {'cli CPU%':>8} {'oth CPU%':>8} {'srv ms/op':>9} {'p50 ms':>8} {'err':>4}"
    )
    print(head)
    print("-" * len(head))
    group = None
    for row in rows:
        if row.group != group:
            if group is not None:
                print()
            group = row.group
        values = row.values
        digits = 2 if values and max(values) < 10 else 1
        print(
            f"{row.name:<44} {row.unit:<10} {_fmt(_median(values), digits):>9} "
            f"{_fmt(min(values) if values else None, digits):>9} "
            f"{_fmt(max(values) if values else None, digits):>9} "
            f"{_fmt(_median(row.server_cpu_pct), 0):>8} {_fmt(_median(row.client_cpu_pct), 0):>8} "
            f"{_fmt(_median(row.other_cpu_pct), 0):>8} {_fmt(_median(row.server_ms_per_op), 2):>9} "
            f"{_fmt(_median(row.latency_p50_ms), 1):>8} {row.errors:>4}"
        )
    problems = [row for row in rows if row.errors or row.notes]
    if problems:
        print()
        for row in problems:
            for sample in row.error_samples:
                print(f"  {row.name}: error: {sample}")
            for note in row.notes:
                print(f"  {row.name}: note: {note}")


def _pow2(n: int) -> str:
    return f"2^{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else str(n)


# ---------------------------------------------------------------- benchmarks


class Bench:
    def __init__(self, args: argparse.Namespace, blab: BenchLab, server: ServerProcess, pool: ClientPool):
        self.args = args
        self.blab = blab
        self.server = server
        self.pool = pool
        self.pid = server.process.pid
        self.ports = {"none": server.endpoints["pop3"], "implicit": server.endpoints["pop3s"]}
        self.cafile = str(blab.lab.ca_file)

    def _task(self, kind: str, tls: str, **extra: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "tls": tls,
            "port": self.ports[tls],
            "cafile": self.cafile,
            "password": PASSWORD,
            **extra,
        }

    def sessions_round(self, row: Row, tls: str, accounts: list[str]) -> None:
        args = self.args
        start_at = time.monotonic() + 0.2
        window_start = start_at + args.warmup
        end_at = window_start + args.window
        groups = split(accounts, args.client_procs)
        tasks = [
            self._task(
                "sessions",
                tls,
                accounts=group,
                start_at=start_at,
                window_start=window_start,
                end_at=end_at,
                expect_stat=list(self.blab.session_stat),
            )
            for group in groups
        ]
        self.pool.send(tasks)
        _sleep_until(window_start)
        meter = CpuMeter(self.pid)
        _sleep_until(end_at)
        meter.stop()
        results = self.pool.collect(len(tasks))
        latencies = sorted(lat for r in results for lat in r["latencies"])
        row.values.append(len(latencies) / args.window)
        meter.record(row, args.window, sum(r["cpu"] for r in results), ops=len(latencies))
        if latencies:
            row.latency_p50_ms.append(1000 * statistics.median(latencies))
            row.latency_p95_ms.append(1000 * latencies[int(0.95 * (len(latencies) - 1))])
        for result in results:
            row.add_errors(result["error_count"], result["errors"])

    def retr_round(self, row: Row, tls: str, concurrency: int) -> None:
        args = self.args
        accounts = self.blab.retr_accounts[:concurrency]
        start_at = time.monotonic() + args.retr_lead
        groups = split(accounts, args.client_procs)
        tasks = [
            self._task("retr", tls, accounts=group, start_at=start_at, expect_sizes=self.blab.retr_sizes)
            for group in groups
        ]
        self.pool.send(tasks)
        _sleep_until(start_at)
        meter = CpuMeter(self.pid)
        results = self.pool.collect(len(tasks))
        meter.stop()
        collected = time.monotonic()
        for result in results:
            row.add_errors(result["error_count"], result["errors"])
            if result["late"]:
                row.notes.append(f"login not done before the start for {result['late']} (lead too short)")
        ends = [end for r in results for end in r["ends"]]
        octets = sum(o for r in results for o in r["octets"])
        if not ends:
            return
        wall = max(ends) - start_at
        row.values.append(octets / MB / wall)
        # CPU is read from the start until the results are in (a few ms
        # after the last RETR), so the percentages are a little low.
        meter.record(row, collected - start_at, sum(r["cpu"] for r in results), ops=octets / MB)

    def run_sessions(self) -> list[Row]:
        args = self.args
        blab = self.blab
        cases = []
        for tls, label in (("none", "plain"), ("implicit", "TLS")):
            for accounts, n in ((blab.sessions_default, args.scrypt_n), (blab.sessions_cheap, CHEAP_N)):
                for concurrency in args.concurrency:
                    name = f"sessions {label:<5} c={concurrency:<3} scrypt n={_pow2(n)}"
                    cases.append((Row("sessions", name, "sessions/s"), tls, accounts[:concurrency]))
        for round_no in range(args.rounds):
            for row, tls, accounts in cases:
                self.sessions_round(row, tls, accounts)
                time.sleep(args.pause)
            _progress(f"sessions: round {round_no + 1}/{args.rounds} done")
        return [row for row, _, _ in cases]

    def run_retr(self) -> list[Row]:
        args = self.args
        total = sum(self.blab.retr_sizes) / MB
        cases = []
        for tls, label in (("none", "plain"), ("implicit", "TLS")):
            for concurrency in args.retr_concurrency:
                name = f"RETR {label:<5} c={concurrency:<3} ({total:.0f} MB per session)"
                cases.append((Row("retr", name, "MB/s"), tls, concurrency))
        self.verify_retr(cases)
        for round_no in range(args.rounds):
            for row, tls, concurrency in cases:
                self.retr_round(row, tls, concurrency)
                time.sleep(args.pause)
            _progress(f"retr: round {round_no + 1}/{args.rounds} done")
        return [row for row, _, _ in cases]

    def verify_retr(self, cases: list[tuple[Row, str, int]]) -> None:
        """Untimed: every message of the last RETR account comes back byte
        for byte (the timed rounds only count octets), in both modes."""
        account = self.blab.retr_accounts[-1]
        want = sorted(self.blab.retr_digests)
        for tls in ("none", "implicit"):
            context = _context({"tls": tls, "cafile": self.cafile})
            pop = _new_client({"port": self.ports[tls], "tls": tls}, context)
            try:
                pop.connect()
                pop.login(account, PASSWORD)
                count, _ = pop.stat()
                got = sorted(hashlib.sha256(pop.retr(n)).hexdigest() for n in range(1, count + 1))
                pop.quit()
                problem = "" if got == want else f"{account}: RETR bodies differ from what was delivered"
            except Exception as error:
                pop.close()
                problem = f"{account}: {type(error).__name__}: {error}"
            if problem:
                for row, row_tls, _ in cases:
                    if row_tls == tls:
                        row.add_errors(1, [problem])

    def run_uidl(self) -> list[Row]:
        args = self.args
        blab = self.blab
        count = args.bulk_messages
        login_bulk = Row("uidl", f"login USER+PASS, {count} msgs, n={_pow2(CHEAP_N)}", "ms")
        login_empty = Row("uidl", f"login USER+PASS, empty, n={_pow2(CHEAP_N)}", "ms")
        uidl = Row("uidl", f"UIDL, {count} msgs (one command)", "ms")
        listing = Row("uidl", f"LIST, {count} msgs (one command)", "ms")
        stat = Row("uidl", f"STAT, {count} msgs (one command)", "ms")
        port = self.ports["none"]
        for round_no in range(args.rounds):
            pop = Pop3Client(HOST, port, transcript=False, timeout=120)
            pop.connect()
            t0 = time.perf_counter()
            pop.login("empty", PASSWORD)
            login_empty.values.append(1000 * (time.perf_counter() - t0))
            pop.quit()

            pop = Pop3Client(HOST, port, transcript=False, timeout=120)
            pop.connect()
            meter, own = CpuMeter(self.pid), time.process_time()
            t0 = time.perf_counter()
            pop.login("bulk", PASSWORD)
            elapsed = time.perf_counter() - t0
            meter.stop()
            login_bulk.values.append(1000 * elapsed)
            meter.record(login_bulk, elapsed, time.process_time() - own, ops=1)
            if round_no == 0:
                got_stat = pop.stat()
                if got_stat != (count, blab.bulk_size):
                    uidl.add_errors(1, [f"STAT {got_stat}, expected ({count}, {blab.bulk_size})"])
                uids = pop.uidl()
                if len(uids) != count or set(uids.values()) != blab.bulk_uids:
                    uidl.add_errors(1, [f"UIDL: {len(uids)} lines, {len(set(uids.values()))} unique"])
                sizes = pop.list()
                if len(sizes) != count or sum(sizes.values()) != blab.bulk_size:
                    listing.add_errors(1, [f"LIST: {len(sizes)} lines, {sum(sizes.values())} octets"])
            for command, row in (("UIDL", uidl), ("LIST", listing)):
                times = []
                meter, own = CpuMeter(self.pid), time.process_time()
                for _ in range(args.uidl_repeats):
                    t0 = time.perf_counter()
                    pop.multiline(command, sink=_ByteCounter())
                    times.append(time.perf_counter() - t0)
                meter.stop()
                row.values.append(1000 * statistics.median(times))
                meter.record(row, sum(times), time.process_time() - own, ops=len(times))
            times = []
            for _ in range(args.uidl_repeats):
                t0 = time.perf_counter()
                pop.stat()
                times.append(time.perf_counter() - t0)
            stat.values.append(1000 * statistics.median(times))
            pop.quit()
            time.sleep(args.pause)
        _progress("uidl: done")
        return [login_empty, login_bulk, stat, uidl, listing]


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive numbers")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmarks of the pop3suite reference server.")
    parser.add_argument("--quick", action="store_true", help="short windows and 3 rounds (< 2 minutes)")
    parser.add_argument("--rounds", type=int, help="rounds per figure (default 5, --quick 3)")
    parser.add_argument("--json", metavar="OUT", help="write every number to this JSON file")
    parser.add_argument(
        "--scrypt-n",
        type=int,
        default=passwords.DEFAULT_N,
        help=f"scrypt cost of the lab's hashes (default {passwords.DEFAULT_N}); "
        f"a cheap {CHEAP_N} is always measured too",
    )
    parser.add_argument("--concurrency", type=_int_list, default=[1, 16, 64], help="session concurrency")
    parser.add_argument("--retr-concurrency", type=_int_list, default=[1, 8], help="RETR concurrency")
    parser.add_argument("--client-procs", type=int, default=4, help="load client processes (default 4)")
    parser.add_argument("--window", type=float, help="seconds counted per sessions round (default 3)")
    parser.add_argument("--warmup", type=float, help="seconds before counting starts (default 0.5)")
    parser.add_argument("--retr-messages", type=int, default=20, help="messages in the RETR mailbox")
    parser.add_argument("--retr-message-size", type=int, default=2**20, help="octets per RETR message")
    parser.add_argument("--bulk-messages", type=int, default=10_000, help="messages in the UIDL mailbox")
    parser.add_argument(
        "--only", choices=["sessions", "retr", "uidl"], action="append", help="run only these"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary lab and print its path")
    args = parser.parse_args(argv)
    if args.scrypt_n < 2 or args.scrypt_n & (args.scrypt_n - 1):
        parser.error("--scrypt-n must be a power of two")
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.window = args.window or (1.0 if args.quick else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 0.5)
    args.uidl_repeats = 5 if args.quick else 9
    args.pause = 0.1
    args.retr_lead = 0.6 if args.quick else 1.0
    args.only = args.only or ["sessions", "retr", "uidl"]
    return args


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "openssl": ssl.OPENSSL_VERSION,
    }
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = os.getloadavg()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    meta = {"machine": machine_info(), "args": {k: v for k, v in vars(args).items() if k != "json"}}
    directory = Path(tempfile.mkdtemp(prefix="pop3suite-bench-"))
    pool = ClientPool(args.client_procs)
    server: ServerProcess | None = None
    rows: list[Row] = []
    server_log: deque[str] = deque(maxlen=200)
    try:
        t0 = time.monotonic()
        blab = build_lab(directory, args)
        meta["setup_seconds"] = round(time.monotonic() - t0, 2)
        _progress(f"lab ready in {meta['setup_seconds']} s: {directory}")
        server = start_server(blab.lab.config_path)
        assert server.process.stdout is not None
        stdout = server.process.stdout

        def drain() -> None:  # keep the pipe from filling up; keep the tail
            for line in stdout:
                server_log.append(line.rstrip())

        threading.Thread(target=drain, daemon=True).start()
        bench = Bench(args, blab, server, pool)
        if "sessions" in args.only:
            rows += bench.run_sessions()
        if "retr" in args.only:
            rows += bench.run_retr()
        if "uidl" in args.only:
            rows += bench.run_uidl()
        meta["server_peak_rss_mb"] = process_peak_rss_mb(server.process.pid)
        meta["server_cpu_seconds_total"] = process_cpu_seconds(server.process.pid)
    finally:
        pool.close()
        if server is not None:
            server.stop()
        if args.keep:
            print(f"lab kept in {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    meta["elapsed_seconds"] = round(time.monotonic() - started, 1)
    suspicious = [line for line in server_log if any(w in line for w in ("WARNING", "ERROR", "Traceback"))]
    meta["server_log_problems"] = suspicious[-20:]

    machine = meta["machine"]
    print(
        f"\npop3suite server benchmarks: {machine.get('cpu_model', '?')}, {machine['cpus']} CPUs, "
        f"Python {machine['python']}, {machine['openssl']}"
    )
    print(
        f"rounds={args.rounds} window={args.window}s warmup={args.warmup}s "
        f"client procs={args.client_procs}; median/min/max over rounds; "
        f"CPU% = CPU seconds per wall second (100 = one core)\n"
    )
    print_table(rows)
    if suspicious:
        print("\nserver log problems:")
        for line in suspicious[-10:]:
            print(f"  {line}")
    print(
        f"\nserver peak RSS {_fmt(meta['server_peak_rss_mb'])} MB; "
        f"total run {meta['elapsed_seconds']} s (set-up {meta['setup_seconds']} s)"
    )
    if args.json:
        payload = {"meta": meta, "results": [row.as_dict() for row in rows]}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"numbers written to {args.json}")
    return 1 if any(row.errors for row in rows) or suspicious else 0


if __name__ == "__main__":
    sys.exit(main())
