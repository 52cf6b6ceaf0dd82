"""The per-cell arithmetic of the sweep: measurements from a cell's
steps.json and the CV of CPU per request from the CPU samples and Locust's
stats history."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pop3suite.load.capacity.grid import Cell
from pop3suite.load.capacity.sweep import cpu_cv, measure


def _history(path: Path, rows: list[tuple[float, int, float]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Timestamp", "User Count", "Type", "Name", "Total Request Count"])
        for t, users, count in rows:
            writer.writerow([t, users, "", "Aggregated", count])
            writer.writerow([t, users, "POP3", "SESSION", count / 5])  # ignored: not Aggregated


def test_cv_is_zero_for_steady_cost_and_positive_for_varying(tmp_path: Path) -> None:
    history = tmp_path / "h.csv"
    _history(history, [(1000 + t, 4 if t else 0, 10.0 * t) for t in range(31)])  # 10 requests/s
    steady = [(1000 + t, 0.05 * t) for t in range(31)]  # 5 ms per request
    assert cpu_cv(steady, history) == pytest.approx(0.0, abs=1e-9)
    bursty = [(1000 + t, 0.05 * t + (0.2 if t >= 15 else 0.0)) for t in range(31)]
    assert cpu_cv(bursty, history) > 0.1


def test_cv_needs_enough_windows(tmp_path: Path) -> None:
    history = tmp_path / "h.csv"
    _history(history, [(1000 + t, 4, 10.0 * t) for t in range(4)])
    assert cpu_cv([(1000 + t, 0.05 * t) for t in range(4)], history) is None
    assert cpu_cv([(1000.0, 0.0)] * 5, tmp_path / "absent.csv") is None


def test_measure_reads_sessions_failures_and_idle_closes(tmp_path: Path) -> None:
    steps = {
        "SESSION": {"requests": 40, "failures": 3, "octets": 400000, "p50_ms": 10.0, "p95_ms": 30.0,
                    "p99_ms": 50.0, "max_ms": 70.0,
                    "failure_types": {"Pop3Timeout": 1, "Pop3ConnectionError": 2}},
        "RETR[100KB]": {"requests": 10, "failures": 2, "octets": 400000,
                        "failure_types": {"Pop3ConnectionError": 2}},
        "CONNECT": {"requests": 40, "failures": 0, "octets": 0, "failure_types": {}},
    }  # fmt: skip
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    cell = Cell("maildir", "none", 5, 300, "delete", 4)
    m = measure(tmp_path, cell, real_interval=2.0, run_time=10.0)
    assert m["polls"] == 40 and m["polls_per_s"] == 4.0 and m["offered_polls_per_s"] == 2.0
    assert m["errors"] == 3 and m["timeouts"] == 1 and m["idle_timeouts"] == 2
    assert m["bytes_sent_per_poll"] == 10000 and m["p95_ms"] == 30.0
    assert m["error_types"] == {"Pop3Timeout": 1, "Pop3ConnectionError": 2}
