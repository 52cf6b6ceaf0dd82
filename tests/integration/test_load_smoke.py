"""``pop3suite load smoke`` end to end: real Locust, real reference server
(its own process), real SMTP delivery, bounded (< 60 s)."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from pop3suite.load.report import render_report
from tests.conftest import run_pop3suite

pytestmark = pytest.mark.slow


def run_load(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return run_pop3suite("load", *args, timeout=timeout)


def test_smoke_scenario_end_to_end(tmp_path: Path) -> None:
    """The smoke scenario passes: exit 0, Locust CSV/HTML, per-step exact
    histograms, monitor samples of the server PID, a ledger with nothing lost
    or duplicated, and verdicts as JSON with the run time actually run."""
    report = tmp_path / "smoke"
    done = run_load("smoke", "--run-time", "10", "--report", str(report))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    for name in (
        "locust_stats.csv",
        "locust.html",
        "steps.json",
        "cells.json",
        "ledger.json",
        "verdicts.json",
        "monitor.csv",
        "monitor.json",
        "run.json",
        "histograms/SESSION.hgrm",
        "histograms/encoded.json",
    ):
        assert (report / name).is_file(), name
    ledger = json.loads((report / "ledger.json").read_text())
    assert ledger["lost"] == 0 and ledger["duplicated"] == 0 and ledger["corrupted"] == 0, ledger
    assert ledger["delivered"] > ledger["left"] >= 0
    assert ledger["retrievals"] > 0 and ledger["removed"] > 0
    verdicts = json.loads((report / "verdicts.json").read_text())
    assert verdicts["passed"] is True
    # The run time actually run (--run-time 10, the file says 20) is the one recorded and divided by.
    assert verdicts["run_time"] == 10.0 and verdicts["scenario_run_time"] == 20.0, verdicts
    assert 9.5 <= verdicts["elapsed_s"] < 40, verdicts
    assert json.loads((report / "run.json").read_text())["run_time"] == 10.0
    minimum = next(c for c in verdicts["checks"] if c["check"] == "min_sessions")
    assert minimum["limit"] == 10  # smoke.toml's 20 sessions are for its 20 s
    html = render_report([report], tmp_path / "report").read_text()
    sessions = json.loads((report / "steps.json").read_text())["SESSION"]["ok"]
    assert f"<td>{sessions}</td><td>{round(sessions / 10.0, 3):.6g}</td>" in html
    assert "the run time actually run (10 s)" in html
    assert any(c["check"] == "ledger: lost" for c in verdicts["checks"])
    steps = json.loads((report / "steps.json").read_text())
    for step in ("CONNECT", "TLS", "AUTH", "STAT", "UIDL", "LIST", "DELE", "QUIT", "SESSION", "SESSION(CO)"):
        assert steps[step]["ok"] > 0, step
    assert any(name.startswith("RETR[") for name in steps)
    assert any(name.startswith("DELIVER[") for name in steps)
    with open(report / "locust_stats.csv", newline="") as handle:
        names = {row["Name"] for row in csv.DictReader(handle)}
    assert {"AUTH", "SESSION", "SESSION(CO)"} <= names
    monitor = json.loads((report / "monitor.json").read_text())
    assert monitor["samples"] >= 5 and monitor["rss_bytes_max"] > 0
