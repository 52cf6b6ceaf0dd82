"""``pop3suite capacity --target`` against a separately started ``pop3suite
serve``: the external mode a capacity planner points at their own server.

One reference server (its own process, so ``--server-pid`` reads only its
CPU) with the two accounts tests/data/capacity-external.toml needs; the
sweeps fill them over SMTP (``--prefill``).  Two cells of 3 s with
``--quick``: a plain keep cell and an implicit-TLS delete cell refilled by
SMTP.  The bad-input cases go through the CLI too: one line on stderr,
exit 2, no traceback, nothing measured.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pop3suite.lab import ServerProcess, start_server
from pop3suite.load.capacity.external import account_plan
from pop3suite.load.capacity.grid import load_grid
from pop3suite.netutil import free_port
from pop3suite.server.lab import Lab, LabOptions, create_lab
from tests.conftest import ROOT, run_pop3suite

pytestmark = pytest.mark.slow

GRID = ROOT / "tests" / "data" / "capacity-external.toml"
PASSWORD = "cap pass"


@dataclass
class Target:
    lab: Lab
    server: ServerProcess

    @property
    def pid(self) -> int:
        return self.server.process.pid

    def args(self, *, pop3: bool = True, pop3s: bool = True, smtp: bool = True, password: str = PASSWORD):
        """The --target options of this server."""
        out = ["--password", password, "--cafile", str(self.lab.ca_file)]
        if pop3:
            out += ["--target", f"pop3://127.0.0.1:{self.server.endpoints['pop3']}"]
        if pop3s:
            out += ["--target", f"pop3s://127.0.0.1:{self.server.endpoints['pop3s']}"]
        if smtp:
            out += ["--smtp", f"smtp://127.0.0.1:{self.server.endpoints['smtp']}"]
        return out


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """``pop3suite serve`` on a lab holding the grid's (empty) cap* accounts."""
    ports = {"pop3_port": "auto", "pop3s_port": "auto", "smtp_port": "auto"}
    ports.update(submission_port=0, smtps_port=0)
    options = LabOptions(
        password=PASSWORD, ports=ports, login_failure_delay=0.05, scrypt_n=2**10, fsync=False
    )
    lab = create_lab(tmp_path_factory.mktemp("capext") / "lab", options)
    with open(lab.config_path, "a", encoding="utf-8") as handle:
        for account in account_plan(load_grid(GRID).cells):
            handle.write(f'\n[accounts.{account}]\npassword = "{{PLAIN}}{PASSWORD}"\n')
    server = start_server(lab.config_path)
    try:
        yield Target(lab, server)
    finally:
        server.stop()


def _capacity(report: Path, *args: str):
    return run_pop3suite("capacity", str(GRID), "--quick", "--report", str(report), *args, timeout=150)


def _cells(report: Path) -> tuple[dict, dict[str, dict]]:
    doc = json.loads((report / "capacity.json").read_text())
    return doc, {c["id"]: c for c in doc["cells"]}


def _one_line_error(done, *needles: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("pop3suite: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def test_unfilled_mailboxes_are_refused_with_how_to_fill(target: Target, tmp_path: Path) -> None:
    done = _capacity(tmp_path / "out", *target.args(), "--server-pid", str(target.pid))
    _one_line_error(done, "cap1mb0000 holds 0.00 MB", "--prefill", "--write-prefill")
    assert not (tmp_path / "out").exists()


def test_prefill_to_a_domain_the_server_relays(target: Target, tmp_path: Path) -> None:
    """--rcpt-domain reaches the SMTP envelope.  The reference server relays
    mail for a foreign domain (the pre-flight POP login opened the
    POP-before-SMTP window) instead of delivering it, and the size check
    after the prefill says the mailboxes are still empty: nothing is
    measured on them (runs while the mailboxes are still empty)."""
    done = _capacity(tmp_path / "out", *target.args(), "--prefill", "--rcpt-domain", "elsewhere.test")
    _one_line_error(done, "cap1mb0000 holds 0.00 MB", "--prefill")
    envelopes = [json.loads(p.read_text()) for p in (target.lab.directory / "spool").glob("*.json")]
    assert any("cap1mb0000@elsewhere.test" in json.dumps(e) for e in envelopes), envelopes[:1]


def test_sweep_against_the_server_measures_its_cpu(target: Target, tmp_path: Path) -> None:
    report = tmp_path / "out"
    done = _capacity(report, *target.args(), "--server-pid", str(target.pid), "--prefill")
    # Two cells cannot fit the model's terms: the sweep completes, the fit says why (exit 1).
    assert done.returncode == 1 and "no model: 2 cells cannot fit" in done.stdout, done.stderr[-3000:]
    doc, cells = _cells(report)
    assert doc["target"]["kind"] == "external" and doc["target"]["server_pid"] == target.pid
    assert doc["target"]["cpu_measured"] is True and not doc["interrupted"]
    assert set(doc["target"]["mailboxes_at_start"]) == {"cap1mb0000", "cap1mb0001"}
    assert set(cells) == {"maildir-none-1mb-keep-i150-u2", "maildir-implicit-1mb-delete-i150-u2"}
    for cell in cells.values():
        m = cell["measured"]
        assert m["polls"] > 0 and m["errors"] == 0, cell
        assert m["server_cpu_s"] > 0 and m["cpu_per_poll_s"] == pytest.approx(m["server_cpu_s"] / m["polls"])
        # The size is what STAT said before and after the cell, not the nominal 1 MB.
        assert 0.7e6 < m["mailbox_bytes_start"] < 1.3e6 and m["bytes_scanned_per_poll"] != 1e6, cell
        assert m["ledger_checked"] is False
        scenario = (report / cell["dir"] / "scenario.toml").read_text()
        assert 'name = "cap1mb"' in scenario
    delete = cells["maildir-implicit-1mb-delete-i150-u2"]["measured"]
    assert delete["refill"] == "smtp" and delete["bytes_sent_per_poll"] > 0
    assert delete["delivered_bytes_per_poll"] > 0  # Locust's SMTP users refilled over --smtp
    steps = json.loads((report / "cells" / "maildir-implicit-1mb-delete-i150-u2" / "steps.json").read_text())
    assert steps["TLS"]["requests"] > 0 and steps["TLS"]["failures"] == 0  # verified with --cafile
    keep = cells["maildir-none-1mb-keep-i150-u2"]["measured"]
    assert keep["bytes_sent_per_poll"] == 0 and keep["mailbox_bytes_end"] == keep["mailbox_bytes_start"]


def test_without_server_pid_the_sweep_completes_without_cpu(target: Target, tmp_path: Path) -> None:
    report = tmp_path / "out"
    done = _capacity(report, *target.args(), "--prefill")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "no --server-pid: server CPU is not measured" in done.stderr
    assert "no model: CPU was not measured (no --server-pid)" in done.stdout
    doc, cells = _cells(report)
    assert doc["target"]["cpu_measured"] is False and len(cells) == 2
    for cell in cells.values():
        m = cell["measured"]
        assert m["polls"] > 0 and m["p95_ms"] > 0
        assert m["server_cpu_s"] is None and m["cpu_per_poll_s"] is None
    model = json.loads((report / "model.json").read_text())
    assert model["skipped"] is True and "--server-pid" in model["error"]
    assert not (report / "guidance.json").exists()


def test_unreachable_target(target: Target, tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    args = [*target.args(pop3=False), "--target", f"pop3://127.0.0.1:{closed}"]
    _one_line_error(_capacity(tmp_path / "out", *args), f"pop3://127.0.0.1:{closed}: connection refused")


def test_wrong_password(target: Target, tmp_path: Path) -> None:
    done = _capacity(tmp_path / "out", *target.args(password="not it"))
    _one_line_error(done, "login as cap1mb0000", "wrong --password")


def test_grid_with_tls_cells_needs_pop3s(target: Target, tmp_path: Path) -> None:
    done = _capacity(tmp_path / "out", *target.args(pop3s=False))
    _one_line_error(done, "implicit-TLS cells", "pop3s://")


def test_untrusted_certificate(target: Target, tmp_path: Path) -> None:
    args = [a for a in target.args() if a not in ("--cafile", str(target.lab.ca_file))]
    _one_line_error(_capacity(tmp_path / "out", *args), "not trusted", "--cafile", "--insecure")


def test_delete_cells_need_smtp_and_a_live_server_pid(target: Target, tmp_path: Path) -> None:
    _one_line_error(_capacity(tmp_path / "a", *target.args(smtp=False)), "--smtp smtp://HOST:PORT")
    done = _capacity(tmp_path / "b", *target.args(), "--server-pid", "999999999")
    _one_line_error(done, "--server-pid 999999999")
