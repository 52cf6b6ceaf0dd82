"""What the Prometheus metrics cost the reference server (numbers, not tests).

Two ``pop3suite serve`` processes on one lab, one without metrics and one with
``--metrics-port auto``; rounds alternate between them.  Figures:

* ``STAT/s``: pipelined STAT commands (batches of 500 in one write) in one
  logged-in session: the per-command path (parse, answer, one histogram
  observe) with nothing else in the way.
* ``RETR MB/s``: one session retrieving a mailbox of 20 x 1 MB messages.
* ``sessions/s``: full USER/PASS/STAT/QUIT sessions, one after another.

Usage::

    python benchmarks/bench_metrics.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pop3suite.client import Pop3Client
from pop3suite.lab import wait_ready
from pop3suite.server.lab import LabOptions, create_lab
from pop3suite.server.storage import open_store

PASSWORD = "bench"
ROOT = Path(__file__).resolve().parents[1]


def serve(config: Path, *flags: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pop3suite",
            "serve",
            "--config",
            str(config),
            "--log-level",
            "warning",
            *flags,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, wait_ready(proc, 30, "pop3suite serve").endpoints["pop3"]


def stat_rate(port: int, total: int = 20_000, batch: int = 500) -> float:
    with Pop3Client("127.0.0.1", port, timeout=30, transcript=False) as pop:
        pop.login("alice", PASSWORD)
        started = time.perf_counter()
        for _ in range(total // batch):
            pop.send_raw(b"STAT\r\n" * batch)  # pipelined: the server's rate, not round trips
            for _ in range(batch):
                if not pop.read_response().ok:
                    raise SystemExit("STAT refused")
        elapsed = time.perf_counter() - started
        pop.quit()
    return total / elapsed


def retr_rate(port: int) -> float:
    with Pop3Client("127.0.0.1", port, timeout=30) as pop:
        pop.login("alice", PASSWORD)
        count, size = pop.stat()
        started = time.perf_counter()
        for number in range(1, count + 1):
            pop.retr(number, sink=lambda chunk: None)
        elapsed = time.perf_counter() - started
        pop.quit()
    return size / elapsed / 1e6


def session_rate(port: int, sessions: int = 300) -> float:
    started = time.perf_counter()
    for _ in range(sessions):
        with Pop3Client("127.0.0.1", port) as pop:
            pop.login("bob", PASSWORD)
            pop.stat()
            pop.quit()
    return sessions / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as tmp:
        ports = {"pop3_port": "auto", "pop3s_port": 0, "smtp_port": 0, "submission_port": 0, "smtps_port": 0}
        lab = create_lab(
            Path(tmp) / "lab",
            LabOptions(password=PASSWORD, ports=ports, login_failure_delay=0.05, scrypt_n=2**10, fsync=False),
        )
        text = lab.config_path.read_text()
        text = re.sub(r'password = "[^"]*"', f'password = "{{PLAIN}}{PASSWORD}"', text)
        lab.config_path.write_text(text.replace("[server]\n", "[server]\nmax_connections_per_ip = 0\n", 1))
        store = open_store(lab.settings, fsync=False)
        body = b"x" * 76 + b"\r\n"
        for i in range(20):
            store.deliver("alice", b"Subject: %d\r\n\r\n" % i + body * (2**20 // len(body)))
        servers = {"off": serve(lab.config_path), "on": serve(lab.config_path, "--metrics-port", "auto")}
        figures: dict[str, dict[str, list[float]]] = {
            mode: {"stat": [], "retr": [], "sessions": []} for mode in servers
        }
        try:
            for _ in range(args.rounds):
                for mode, (_, port) in servers.items():
                    figures[mode]["stat"].append(stat_rate(port))
                    figures[mode]["retr"].append(retr_rate(port))
                    figures[mode]["sessions"].append(session_rate(port))
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(10)
    print(f"median of {args.rounds} rounds      metrics off   metrics on   on/off")
    for key, label in (("stat", "pipelined STAT/s"), ("retr", "RETR MB/s"), ("sessions", "sessions/s")):
        off = statistics.median(figures["off"][key])
        on = statistics.median(figures["on"][key])
        print(f"{label:<28}{off:>12,.1f}{on:>13,.1f}{on / off:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
