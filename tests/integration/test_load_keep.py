"""The keep-on-server client (UIDL-based) fetches only new mail: each
message is retrieved exactly once, nothing is removed, and every delivered
message is still in its mailbox at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_pop3suite

pytestmark = pytest.mark.slow


KEEP = """
name = "keep-only"
run_time = 10
[prefill]
count = 4
sizes = [[1500, 1], [50000, 1]]
[[clients]]
name = "keeper"
users = 3
behaviour = "keep"
poll_interval = 1.0
[[clients]]
name = "synced"
users = 1
behaviour = "keep"
initial_sync = true
poll_interval = 1.0
[delivery]
rate = 6
users = 1
to = ["keeper"]
[slo]
error_rate = 0.0
min_sessions = 20
"""


def test_keep_on_server_fetches_only_new(tmp_path: Path) -> None:
    """Polls every second with mail arriving: retrievals == distinct
    messages, none removed, delivered == left; the client that had seen its
    mailbox before (initial_sync) retrieves nothing of the pre-fill."""
    scenario = tmp_path / "keep.toml"
    scenario.write_text(KEEP)
    report = tmp_path / "keep"
    done = run_pop3suite("load", str(scenario), "--report", str(report))
    assert done.returncode == 0, done.stderr[-5000:]
    ledger = json.loads((report / "ledger.json").read_text())
    assert ledger["duplicated"] == 0 and ledger["lost"] == 0 and ledger["corrupted"] == 0
    assert ledger["removed"] == 0
    assert ledger["left"] == ledger["delivered"]
    assert ledger["retrievals"] == ledger["retrieved_distinct"]
    # The 3 keepers saw their 12 pre-filled messages plus new deliveries.
    assert ledger["retrieved_distinct"] >= 12 + 5
    cells = json.loads((report / "cells.json").read_text())
    keeper = cells["keeper"]
    retr = sum(row["ok"] for name, row in keeper.items() if name.startswith("RETR"))
    assert retr == ledger["retrievals"]
    assert keeper["UIDL"]["ok"] == keeper["SESSION"]["ok"] >= 15
    assert not any(name.startswith("RETR") for name in cells["synced"])
    assert "DELE" not in keeper
