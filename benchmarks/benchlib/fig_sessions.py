"""Figure: full sessions per second (connect [+ TLS handshake], USER, PASS,
STAT, QUIT), N sessions back to back at all times, one account each."""

from __future__ import annotations

import argparse
import statistics
import time

from .clients import ClientPool, sleep_until, split
from .meters import CpuMeter
from .results import Row
from .targets import Target

MODES = (("none", "plain"), ("implicit", "TLS"))


def sessions_round(
    pool: ClientPool, target: Target, row: Row, tls: str, accounts: list[str], args: argparse.Namespace
) -> None:
    """One measuring window; appends sessions/s, CPU and latency to ``row``."""
    start_at = time.monotonic() + 0.2
    window_start = start_at + args.warmup
    end_at = window_start + args.window
    tasks = [
        target.task(
            "sessions",
            tls,
            accounts=group,
            start_at=start_at,
            window_start=window_start,
            end_at=end_at,
            expect_stat=list(target.plan.session_stat),
        )
        for group in split(accounts, args.client_procs)
    ]
    pool.send(tasks)
    sleep_until(window_start)
    meter = CpuMeter(target.root_pid)
    sleep_until(end_at)
    meter.stop()
    results = pool.collect(len(tasks))
    latencies = sorted(lat for r in results for lat in r["latencies"])
    row.values.append(len(latencies) / args.window)
    meter.record(row, args.window, sum(r["cpu"] for r in results), ops=len(latencies))
    if latencies:
        row.latency_p50_ms.append(1000 * statistics.median(latencies))
        row.latency_p95_ms.append(1000 * latencies[int(0.95 * (len(latencies) - 1))])
    for result in results:
        row.add_errors(result["error_count"], result["errors"])


def session_cases(
    target: Target, concurrency: list[int], schemes: list[str] | None = None
) -> list[tuple[Row, str, list[str]]]:
    """(row, tls mode, accounts) for every mode x scheme x concurrency."""
    cases = []
    for tls, label in MODES:
        for scheme, accounts in target.session_accounts.items():
            if schemes is not None and scheme not in schemes:
                continue
            for c in concurrency:
                name = f"sessions {label:<5} c={c:<3} {scheme}"
                cases.append((Row("sessions", name, "sessions/s"), tls, accounts[:c]))
    return cases
