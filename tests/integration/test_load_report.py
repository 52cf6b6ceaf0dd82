"""``pop3suite report RUN`` on a real short load run (real Locust, real
reference server in its own process, a tiny scenario written here) and on a
capacity directory whose cell is that real run."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pop3suite.load.report import render_report
from pop3suite.load.report.html import fmt
from pop3suite.load.report.render import data_uri
from tests.conftest import run_pop3suite
from tests.unit.test_report_capacity import make_capacity_dir
from tests.unit.test_report_charts import assert_png_drawn, html_links

pytestmark = pytest.mark.slow


TINY = """
name = "reporttiny"
run_time = 5
time_compression = 1.0
seed = 11
spawn_rate = 20

[prefill]
count = 3
sizes = [[1500, 70], [120000, 30]]

[[clients]]
name = "plaindel"
users = 2
tls = "none"
behaviour = "delete"
poll_interval = 1.0

[[clients]]
name = "stlskeep"
users = 1
tls = "stls"
behaviour = "keep"
poll_interval = 1.0

[delivery]
rate = 2.0
users = 1
sizes = [[1500, 100]]

[slo]
error_rate = 0.05
spec_qos = true
min_sessions = 3
"""

DRAWN = ("latency_over_time", "latency_distribution", "offered_vs_achieved", "server_resources")


def pop3suite(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return run_pop3suite(*args, timeout=timeout)


@pytest.fixture(scope="module")
def load_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real 5 s load run shared by this module's tests."""
    base = tmp_path_factory.mktemp("loadreport")
    scenario = base / "reporttiny.toml"
    scenario.write_text(TINY)
    results = base / "run"
    done = pop3suite("load", str(scenario), "--report", str(results))
    assert (results / "steps.json").is_file(), done.stdout[-3000:] + done.stderr[-5000:]
    return results


def test_report_of_a_real_load_run(load_run: Path) -> None:
    done = pop3suite("report", str(load_run), timeout=60)
    assert done.returncode == 0, done.stderr
    html_path = load_run / "report.html"
    assert done.stdout.strip() == f"report: {html_path}"
    html = html_path.read_text()
    for name in DRAWN:
        assert_png_drawn(load_run / "plots" / f"{name}.png")
        assert f'src="{data_uri((load_run / "plots" / f"{name}.png").read_bytes())}"' in html  # embedded
    for link in html_links(html):
        assert (load_run / link).resolve().is_file(), link
    steps = json.loads((load_run / "steps.json").read_text())
    for step in ("SESSION", "AUTH", "TLS"):  # exact figures from steps.json in the table
        assert f"<td>{fmt(steps[step]['p95_ms'])}</td>" in html, step
    failed = sum(r["failures"] for n, r in steps.items() if not n.startswith(("SESSION", "~")))
    if failed:
        assert_png_drawn(load_run / "plots" / "errors.png")
    else:
        assert "No failed requests in this run" in html and not (load_run / "plots" / "errors.png").exists()
    ledger = json.loads((load_run / "ledger.json").read_text())
    assert f'<td class="text">delivered</td><td>{ledger["delivered"]}</td>' in html
    assert "SPEC 5 s" not in html  # SPEC rows go to their own table ...
    assert "% within limit" in html  # ... which is there
    assert '<td class="text">CONNECT</td><td class="text">5 s</td>' in html
    assert "single load run (no capacity.json)" in html  # capacity charts: notes, not empty plots
    assert not (load_run / "plots" / "load_heatmap.png").exists()


def test_capacity_report_links_a_real_cell_run(load_run: Path, tmp_path: Path) -> None:
    capacity = make_capacity_dir(tmp_path / "capacity")
    cell = json.loads((capacity / "capacity.json").read_text())["cells"][0]
    shutil.copytree(load_run, capacity / cell["dir"])
    out = tmp_path / "out"
    html = render_report([capacity], out).read_text()  # in-process: the CLI is tested above
    assert any(link.endswith(f"{cell['dir']}/locust.html") for link in html_links(html))
    for link in html_links(html):
        assert (out / link).resolve().is_file(), link
    for name in ("cpu_per_poll", "load_heatmap", "latency_vs_load"):
        assert_png_drawn(out / "plots" / f"{name}.png")
    # The only cell with a run directory is the busiest one with data: its
    # over-time charts come from the real run.
    assert f"the busiest cell, {cell['id']}" in html
    for name in ("latency_over_time", "offered_vs_achieved", "server_resources"):
        assert_png_drawn(out / "plots" / f"busiest_{name}.png")
