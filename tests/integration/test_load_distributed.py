"""Locust master + two workers on loopback, driven by ``pop3suite load
--workers 2``: both workers run users (striped accounts, no [IN-USE]) and
send their exact histograms and ledger events to the master."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LOAD = [sys.executable, "-m", "pop3suite", "load"]


def test_master_and_two_workers(tmp_path: Path) -> None:
    """The smoke scenario on a master and two workers passes, both workers
    reported, and the ledger (merged from both) balances."""
    report = tmp_path / "dist"
    done = subprocess.run(
        [*LOAD, "smoke", "--workers", "2", "--run-time", "10", "--report", str(report)],
        capture_output=True,
        text=True,
        timeout=58,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    verdicts = json.loads((report / "verdicts.json").read_text())
    assert verdicts["passed"] and verdicts["workers"] == 2 and verdicts["workers_reported"] == 2
    ledger = json.loads((report / "ledger.json").read_text())
    assert ledger["lost"] == 0 and ledger["duplicated"] == 0 and ledger["retrievals"] > 0
    steps = json.loads((report / "steps.json").read_text())
    assert steps["SESSION"]["ok"] >= 10
    assert (report / "locust_stats.csv").is_file()
