"""A pre-login connection flood against the reference server (numbers, not tests).

``pop3suite serve`` runs as its own process with metrics on.  The flood opens
``--connections`` TCP connections on loopback from ``--sources`` source
addresses (127.0.1.1, 127.0.1.2, ...), reads each greeting and then holds
them without logging in, trickling one byte of a never-finished command per
connection every few seconds (slowloris).  Meanwhile a canary on 127.0.0.1
runs full sessions (USER, PASS, STAT, RETR, QUIT); it must keep working.
A second wave from one address shows the per-address limit refusing the
excess with ``-ERR [SYS/TEMP]``.

Prints: connections held, canary sessions and their latency, refusals, the
server's RSS and CPU, and whether it stayed up.

Usage::

    python benchmarks/bench_flood.py [--connections 1000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
from benchlib.meters import raise_nofile

from pop3suite.client import Pop3Client
from pop3suite.server.lab import LabOptions, create_lab
from pop3suite.server.storage import open_store

PASSWORD = "flood"
ROOT = Path(__file__).resolve().parents[1]


def serve(config: Path) -> tuple[subprocess.Popen, dict[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pop3suite", "serve", "--config", str(config), "--log-level", "warning"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ports: dict[str, int] = {}
    for line in proc.stdout:
        found = re.search(r"listening: (\S+) on \S+:(\d+)", line)
        if found:
            ports[found[1]] = int(found[2])
        if "ready" in line:
            return proc, ports
    raise SystemExit("server did not start")


def open_flood(port: int, count: int, sources: int) -> tuple[list[socket.socket], int]:
    """``count`` connections that read the greeting and stop; how many got one."""
    held, greeted = [], 0
    for i in range(count):
        sock = socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(f"127.0.1.{i % sources + 1}", 0)
        )
        if sock.recv(512).startswith(b"+OK"):
            greeted += 1
        held.append(sock)
    return held, greeted


def canary(port: int) -> float:
    started = time.perf_counter()
    with Pop3Client("127.0.0.1", port, timeout=10, transcript=False) as pop:
        pop.login("alice", PASSWORD)
        pop.stat()
        pop.retr(1)
        pop.quit()
    return time.perf_counter() - started


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found[1]) if found else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--sources", type=int, default=10, help="source addresses (default 10: 100 each)")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the flood is held")
    args = parser.parse_args()
    raise_nofile()
    with tempfile.TemporaryDirectory(prefix="bench-flood-") as tmp:
        ports = {"pop3_port": "auto", "pop3s_port": 0, "smtp_port": 0, "submission_port": 0, "smtps_port": 0}
        lab = create_lab(
            Path(tmp) / "lab", LabOptions(password=PASSWORD, ports=ports, scrypt_n=2**10, fsync=False)
        )
        text = lab.config_path.read_text()
        lab.config_path.write_text(text + '\n[metrics]\nport = "auto"\n')
        open_store(lab.settings, fsync=False).deliver("alice", b"Subject: canary\r\n\r\nstill here\r\n")
        proc, served = serve(lab.config_path)
        server = psutil.Process(proc.pid)
        server.cpu_percent(None)
        pop3, metrics = served["pop3"], served["metrics"]
        baseline = [canary(pop3) for _ in range(5)]
        try:
            started = time.perf_counter()
            held, greeted = open_flood(pop3, args.connections, args.sources)
            opened_s = time.perf_counter() - started
            latencies: list[float] = []
            failures = 0
            deadline = time.monotonic() + args.seconds
            next_trickle = time.monotonic()
            while time.monotonic() < deadline:
                if time.monotonic() >= next_trickle:
                    for sock in held:
                        sock.send(b"U")  # slowloris: a command that never ends
                    next_trickle = time.monotonic() + 3
                try:
                    latencies.append(canary(pop3))
                except OSError:
                    failures += 1
                time.sleep(0.2)
            rss_mb = server.memory_info().rss / 2**20
            cpu = server.cpu_percent(None)
            # A second wave from one address: the per-address limit (100).
            extra = [
                socket.create_connection(("127.0.0.1", pop3), source_address=("127.0.1.1", 0))
                for _ in range(20)
            ]
            refusals = sum(1 for sock in extra if b"[SYS/TEMP]" in sock.recv(512))
            refused_metric = metric(metrics, "pop3suite_connections_refused_per_address_total")
            for sock in held + extra:
                sock.close()
            alive = proc.poll() is None
            after = canary(pop3)
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"flood: {args.connections} connections from {args.sources} addresses opened in {opened_s:.2f} s, "
          f"{greeted} greeted, held {args.seconds:.0f} s with a byte every 3 s")  # fmt: skip
    print(f"canary before: median {statistics.median(baseline) * 1000:.1f} ms")
    print(f"canary during: {len(latencies)} sessions, {failures} failed, median "
          f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")  # fmt: skip
    print(
        f"canary after: {after * 1000:.1f} ms; server up: {alive}; "
        f"RSS {rss_mb:.0f} MB; CPU {cpu:.0f}% of a core"
    )
    print(
        f"second wave from one address: {refusals}/20 refused with -ERR [SYS/TEMP] "
        f"(metric {refused_metric:.0f})"
    )
    return 0 if alive and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
