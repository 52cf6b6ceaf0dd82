"""``pop3suite capacity`` end to end on a tiny grid: real Locust, a fresh
embedded reference server per cell, real CPU accounting, the fit and the
guidance.  2 x 2 cells of 4 s (about 45 s on 2 cores)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_pop3suite

pytestmark = pytest.mark.slow


TINY = """
name = "capacity-tiny"
description = "integration test grid"
cell_time = 4
time_compression = 300      # 150 s simulated -> 0.5 s real
message_sizes = [[5000, 60], [40000, 40]]
delete_per_poll = 1
idle_timeout = 120
[grid]
backend = ["maildir"]
tls = ["implicit"]
mailbox_mb = [0.2, 1.5]
poll_interval = [150]
behaviour = ["keep", "delete"]
users = [2]
[slo]
p95_ms = 5000
[guidance]
accounts = 500
cpu_budget_cores = 1.0
"""


def test_tiny_sweep_writes_the_three_files(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY, encoding="utf-8")
    report = tmp_path / "out"
    done = run_pop3suite("capacity", str(scenario), "--report", str(report), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    capacity = json.loads((report / "capacity.json").read_text())
    model = json.loads((report / "model.json").read_text())
    guidance = json.loads((report / "guidance.json").read_text())

    assert capacity["kind"] == "capacity" and capacity["target"]["kind"] == "embedded"
    assert capacity["machine"]["cpus"] >= 1 and capacity["finished"]
    cells = {c["id"]: c for c in capacity["cells"]}
    assert len(cells) == 4
    for cell in cells.values():
        m = cell["measured"]
        assert (report / cell["dir"] / "steps.json").exists()
        assert m["polls"] > 0 and m["errors"] == 0, cell
        assert m["cpu_per_poll_s"] > 0 and m["server_cpu_s"] > 0
        assert m["p95_ms"] > 0 and m["offered_polls_per_s"] == pytest.approx(4.0)
        assert 0.9 * 1e6 < m["bytes_scanned_per_poll"] / cell["params"]["mailbox_mb"] < 1.3e6, cell["id"]
        if cell["params"]["behaviour"] == "keep":
            assert m["bytes_sent_per_poll"] == 0  # initial_sync: nothing new to fetch
        else:
            assert m["bytes_sent_per_poll"] > 0 and m["refill_messages"] > 0
            # refilled as fast as emptied: the mailbox stays within a few messages of its size
            assert abs(m["mailbox_bytes_end"] - m["mailbox_bytes_start"]) < 0.5 * m["mailbox_bytes_start"]
    held = [c for c in cells.values() if c["held_out"]]
    assert len(held) == 1
    assert model["held_out"]["cell"] == held[0]["id"]
    assert model["held_out"]["measured_cpu_per_poll_s"] == held[0]["measured"]["cpu_per_poll_s"]
    assert held[0]["id"] not in model["residuals"] and model["n_cells"] == 3
    assert set(model["coefficients"]) == set(model["terms"]) == set(model["units"])
    assert {r["connection"] for r in guidance["rows"]} == {"tls", "plain"}
    assert len(guidance["heatmap"]["load_cores"]["tls"]) == len(guidance["heatmap"]["sizes_mb"])
    assert {c["verdict"] for c in guidance["comparison"]} <= {"agrees", "stricter", "looser"}
    assert "held-out" in done.stdout and "provider-ssl-30MB" in done.stdout


def test_bad_capacity_scenario_is_a_usage_error(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text(TINY.replace('tls = ["implicit"]', 'tls = ["ssl3"]'), encoding="utf-8")
    done = run_pop3suite("capacity", str(scenario), timeout=90)
    assert done.returncode == 2
    assert "bad.toml: grid.tls" in done.stderr and "Traceback" not in done.stderr
