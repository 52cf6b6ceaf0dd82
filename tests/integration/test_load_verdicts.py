"""Verdicts: a scenario whose SLO cannot be met makes ``pop3suite load``
exit non-zero and says which check failed; plus the ledger's arithmetic."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pop3suite.load.accounting import Ledger, RetrSink, find_nonce, make_message
from pop3suite.load.scenario import load_scenario
from tests.conftest import ROOT, run_pop3suite

IMPOSSIBLE = """
name = "impossible"
run_time = 6
[[clients]]
name = "plain"
users = 2
poll_interval = 1.0
[prefill]
count = 2
[slo]
error_rate = 0.01
[slo.steps]
"SESSION" = { p95_ms = 0.001 }
"""


@pytest.mark.slow
def test_failing_slo_gives_nonzero_exit(tmp_path: Path) -> None:
    """A p95 limit of 1 µs for SESSION fails: exit 1, verdicts.json says
    passed = false and names the SESSION check."""
    scenario = tmp_path / "impossible.toml"
    scenario.write_text(IMPOSSIBLE)
    report = tmp_path / "out"
    done = run_pop3suite("load", str(scenario), "--report", str(report))
    assert done.returncode == 1, done.stderr[-3000:]
    verdicts = json.loads((report / "verdicts.json").read_text())
    assert verdicts["passed"] is False
    failed = [c["check"] for c in verdicts["checks"] if not c["passed"]]
    assert failed == ["SESSION: p95_ms"], failed
    assert "FAIL  SESSION: p95_ms" in done.stderr


@pytest.mark.slow
def test_locusts_own_run_time_is_the_one_recorded(tmp_path: Path) -> None:
    """``locust -f pop3suite/load/locustfile.py -t 4s`` on a scenario written for 30 s:
    verdicts.json and run.json record 4 s (the per-second figures divide by
    it) and the minimum sessions are scaled to it."""
    scenario = tmp_path / "thirty.toml"
    scenario.write_text(IMPOSSIBLE.replace("run_time = 6", "run_time = 30").replace("0.001", "60000"))
    report = tmp_path / "out"
    command = [sys.executable, "-m", "locust", "-f", str(ROOT / "pop3suite" / "load" / "locustfile.py")]
    command += ["--pop3-scenario", str(scenario), "--pop3-results", str(report), "--pop3-progress", "0"]
    command += ["--headless", "--only-summary", "-u", "2", "-r", "10", "-t", "4s", "--loglevel", "WARNING"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    verdicts = json.loads((report / "verdicts.json").read_text())
    assert verdicts["run_time"] == 4.0 and verdicts["scenario_run_time"] == 30.0, done.stderr[-3000:]
    assert json.loads((report / "run.json").read_text())["run_time"] == 4.0
    minimum = next(c for c in verdicts["checks"] if c["check"] == "min_sessions")
    assert minimum["limit"] == 1 and minimum["passed"], minimum


def test_unknown_scenario_is_a_usage_error() -> None:
    """An unknown scenario name exits 2 with one line naming the shipped ones."""
    done = run_pop3suite("load", "no-such-scenario", timeout=30)
    assert done.returncode == 2
    assert "smoke" in done.stderr and "Traceback" not in done.stderr


def test_shipped_scenarios_load() -> None:
    """Every shipped scenario parses, and the required ones exist."""
    for name in (
        "smoke",
        "provider-centos5-ssl",
        "provider-centos5-plain",
        "growing-mailbox",
        "keep-vs-delete",
        "specmail2001",
    ):
        scenario = load_scenario(name)
        assert scenario.pop_users > 0 and scenario.run_time > 0


def test_ledger_reconciles_lost_duplicated_corrupted() -> None:
    """delivered = removed + left; anything else is lost; a retrieval after a
    committed deletion, or a deleted message still present, is a duplicate;
    a different hash is corruption; an uncommitted retrieval removes nothing."""
    data = {n: make_message(n, 3000, "a") for n in ("n1", "n2", "n3", "n4", "n5")}
    sinks = {}
    for nonce, message in data.items():
        sink = RetrSink()
        for i in range(0, len(message), 700):
            sink(message[i : i + 700])
        assert sink.nonce == nonce and sink.octets == len(message)
        sinks[nonce] = sink.hexdigest()
    ledger = Ledger()
    for nonce in data:
        ledger.delivered(nonce, "a", sinks[nonce])
    ledger.retrieved("n1", "a", sinks["n1"], "s1", "delete")  # removed properly
    ledger.retrieved("n2", "a", sinks["n2"], "s2", "delete")  # session not committed: still there
    ledger.retrieved("n3", "a", sinks["n3"], "s1", "delete")
    ledger.retrieved("n3", "a", sinks["n3"], "s3", "delete")  # again after commit: duplicate
    ledger.retrieved("n4", "a", "0" * 64, "s1", "delete")  # wrong bytes
    ledger.committed("s1")
    ledger.committed("s3")
    report = ledger.reconcile({"n2": "a"})  # n5 vanished
    assert report["lost"] == 1 and report["examples"]["lost"] == ["n5"]
    assert report["duplicated"] == 1 and report["examples"]["duplicated"] == ["n3"]
    assert report["corrupted"] == 1 and report["examples"]["corrupted"] == ["n4"]
    assert report["ok"] is False
    assert find_nonce(data["n1"][:200]) == "n1"
