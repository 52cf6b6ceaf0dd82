"""The external-target side of ``pop3suite capacity`` without a server: which
accounts a grid needs, the cell scenario it polls them with, the checks
that turn bad input into one-line errors, the prefill files, the CPU of a
process tree and the fit skipped when CPU was not measured.  The same paths
against a real server are in tests/integration/test_capacity_external.py."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import psutil
import pytest

from pop3suite.load.accounting import find_nonce
from pop3suite.load.capacity.analysis import analyse
from pop3suite.load.capacity.external import (
    MB,
    TargetError,
    account_plan,
    check_ports,
    check_server_pid,
    client_name,
    shortfalls,
    stat_mode,
    write_prefill,
)
from pop3suite.load.capacity.grid import Cell, cell_scenario_toml, load_grid
from pop3suite.load.capacity.sweep import select_cells
from pop3suite.load.monitor import tree_cpu_seconds
from pop3suite.loadcmd import _target_run

ROOT = Path(__file__).resolve().parents[2]
GRID = ROOT / "tests" / "data" / "capacity-external.toml"


def _cell(mb: float, users: int = 2, tls: str = "none", behaviour: str = "keep") -> Cell:
    return Cell("maildir", tls, mb, 300.0, behaviour, users)


def test_one_account_set_per_mailbox_size() -> None:
    assert client_name(_cell(0.5)) == "cap0p5mb" and client_name(_cell(40)) == "cap40mb"
    plan = account_plan([_cell(1, 2), _cell(1, 4, tls="implicit"), _cell(10, 1, behaviour="delete")])
    assert plan == {**{f"cap1mb{i:04d}": 1.0 for i in range(4)}, "cap10mb0000": 10.0}


def test_external_cell_scenario_polls_its_size_and_refills_by_smtp() -> None:
    grid = load_grid(GRID)
    delete = next(c for c in grid.cells if c.behaviour == "delete")
    scenario = tomllib.loads(cell_scenario_toml(grid, delete, 3, client=client_name(delete), refill="smtp"))
    assert scenario["clients"][0]["name"] == "cap1mb"
    assert scenario["delivery"]["to"] == ["cap1mb"] and scenario["delivery"]["rate"] > 0
    # The embedded default is unchanged: class "cap", the grid's local refill (no SMTP users).
    embedded = tomllib.loads(cell_scenario_toml(grid, delete, 3))
    assert embedded["clients"][0]["name"] == "cap" and "delivery" not in embedded


def test_ports_the_grid_needs() -> None:
    both = [_cell(1), _cell(1, tls="implicit")]
    check_ports({"pop3_port": 110, "pop3s_port": 995}, both)
    with pytest.raises(TargetError, match="implicit-TLS cells: give --target pop3s://"):
        check_ports({"pop3_port": 110, "pop3s_port": None}, both)
    with pytest.raises(TargetError, match="none/stls cells: give --target pop3://"):
        check_ports({"pop3_port": None, "pop3s_port": 995}, [_cell(1), _cell(1, tls="stls")])


def test_size_checks_connect_like_the_cells() -> None:
    both = {"pop3_port": 110, "pop3s_port": 995}
    assert stat_mode(both, [_cell(1), _cell(1, tls="implicit")]) == "none"
    assert stat_mode(both, [_cell(1, tls="stls"), _cell(1, tls="implicit")]) == "implicit"
    assert stat_mode({"pop3_port": 110, "pop3s_port": None}, [_cell(1, tls="stls")]) == "stls"


def test_shortfalls_allow_a_quarter_either_way() -> None:
    plan = {"a": 1.0, "b": 1.0, "c": 1.0}
    held = {"a": (50, int(0.8 * MB)), "b": (10, int(0.5 * MB)), "c": (90, int(1.3 * MB))}
    assert shortfalls(plan, held) == [
        "b holds 0.50 MB (10 msgs), needs 1 MB",
        "c holds 1.30 MB (90 msgs), needs 1 MB",
    ]


def test_write_prefill_makes_each_mailbox_its_size(tmp_path: Path) -> None:
    grid = load_grid(GRID)
    cells, _ = select_cells(grid, external=True, verbose=False)
    written = write_prefill(grid, cells, tmp_path)
    assert set(written) == {"cap1mb0000", "cap1mb0001"}
    for account, count in written.items():
        files = sorted((tmp_path / account).glob("*.eml"))
        assert len(files) == count
        total = sum(f.stat().st_size for f in files)
        assert abs(total - MB) < 0.25 * MB
        data = files[0].read_bytes()
        assert find_nonce(data) and b"\r\n" in data and f"To: {account}@".encode() in data


def _own_cpu_seconds(pid: int) -> float:
    """The process alone (and its reaped children): what reading only the PID gives."""
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def test_tree_cpu_counts_live_children() -> None:
    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\ntime.sleep(30)"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {busy!r}])"]
    )
    try:
        deadline = time.monotonic() + 20
        while (
            time.monotonic() < deadline and tree_cpu_seconds(parent.pid) < _own_cpu_seconds(parent.pid) + 0.3
        ):
            time.sleep(0.1)
        # The child is alive (sleeping): only the tree sum sees its 0.4 s.
        assert tree_cpu_seconds(parent.pid) >= _own_cpu_seconds(parent.pid) + 0.3
    finally:
        for proc in psutil.Process(parent.pid).children(recursive=True):
            proc.kill()
        parent.kill()
        parent.wait()


def test_server_pid_must_exist() -> None:
    check_server_pid(None)
    check_server_pid(psutil.Process().pid)
    with pytest.raises(TargetError, match="no such process"):
        check_server_pid(2**30)


def _args(*targets: str, smtp: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(
        target=list(targets), smtp=smtp, password="pw", cafile=None, insecure=False, server_pid=None
    )


def test_target_urls() -> None:
    run = _target_run(_args("pop3://h:1110", "pop3s://h:1995", smtp="smtp://h:1025"))
    assert (run["host"], run["pop3_port"], run["pop3s_port"], run["smtp_port"]) == ("h", 1110, 1995, 1025)
    for bad, message in [
        (_args("http://h:1"), "expected pop3://HOST:PORT"),
        (_args("pop3://h:1", "pop3s://other:2"), "same host"),
        (_args("pop3://h:1", smtp="h:25"), "expected smtp://HOST:PORT"),
        (_args("pop3://h:1", smtp="smtp://other:25"), "must be on the --target host"),
    ]:
        with pytest.raises(ValueError, match=message):
            _target_run(bad)


def test_no_cpu_reading_skips_the_fit_with_a_reason() -> None:
    grid = load_grid(GRID)
    cells = []
    for cell in grid.cells:
        measured = {
            "polls": 10, "errors": 0, "server_cpu_s": None, "cpu_per_poll_s": None, "p95_ms": 5.0,
            "offered_polls_per_s": 4.0, "polls_per_s": 4.0, "timeouts": 0, "idle_timeouts": 0,
            "bytes_scanned_per_poll": 1e6, "bytes_sent_per_poll": 0.0,
        }  # fmt: skip
        params = {"backend": cell.backend, "tls": cell.tls, "mailbox_mb": cell.mailbox_mb}
        cells.append({"id": cell.id, "params": {**params, "behaviour": cell.behaviour}, "measured": measured})
    model, guidance, fitted = analyse(grid, cells)
    assert model["skipped"] is True and "no --server-pid" in model["error"]
    assert guidance is None and fitted is None
