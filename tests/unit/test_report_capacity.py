"""The capacity half of the load report, against a synthetic capacity
directory built here from the documented contract (capacity.json,
model.json, guidance.json).  The numbers come from a small cost model with
known coefficients, so every chart and table can be checked against them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pop3suite.load.report import ReportInputError, render_report
from pop3suite.load.report.capacity_plots import cpu_per_poll_chart, heatmap_chart
from pop3suite.load.report.capacity_tables import cells_table, guidance_table, model_table
from pop3suite.load.report.errors import capacity_errors_chart
from pop3suite.load.report.inputs import read_capacity
from pop3suite.load.report.knee import capacity_points, knee_chart
from pop3suite.load.report.render import data_uri

from .test_report_charts import assert_png_drawn, html_links

MB = 1_000_000
SIZES_MB = (1, 10, 20, 50, 90)
BASE_S, PER_MB_S = {"maildir": 0.002, "mbox": 0.003}, {"maildir": 0.0001, "mbox": 0.0008}
TLS_S = {"none": 0.0, "implicit": 0.004}
ACCOUNTS, BUDGET = 1000, 1.0


def cpu_per_poll(backend: str, tls: str, size_mb: float) -> float:
    return BASE_S[backend] + PER_MB_S[backend] * size_mb + TLS_S[tls]


def make_cell(backend: str, tls: str, size_mb: int, offered: float = 2.0) -> dict:
    util = min(0.95, offered * cpu_per_poll(backend, tls, size_mb) * 10)
    p95 = 20.0 + 4.0 / (1.0 - util)  # queueing: flat, then a knee
    saturated = util >= 0.9
    timeouts = 3 if saturated else 0
    return {
        "id": f"{backend}-{tls}-{size_mb}mb-{offered:g}ps",
        "dir": f"cells/{backend}-{tls}-{size_mb}mb-{offered:g}ps",
        "params": {
            "backend": backend,
            "tls": tls,
            "mailbox_bytes": size_mb * MB,
            "messages": size_mb * 10,
            "poll_interval_s": 300,
            "real_poll_interval_s": 3.0,
            "behaviour": "keep",
            "users": 10,
        },
        "measured": {
            "polls": 100,
            "polls_per_s": offered * 0.98,
            "offered_polls_per_s": offered,
            "server_cpu_s": 100 * cpu_per_poll(backend, tls, size_mb),
            "cpu_per_poll_s": cpu_per_poll(backend, tls, size_mb),
            "cpu_util": util,
            "bytes_scanned_per_poll": size_mb * MB,
            "bytes_sent_per_poll": 5000,
            "p50_ms": p95 / 2,
            "p95_ms": p95,
            "p99_ms": p95 * 1.3,
            "max_ms": p95 * 2,
            "errors": timeouts + (1 if saturated else 0),
            "timeouts": timeouts,
            "idle_timeouts": 0,
            "error_types": {"Pop3Timeout": timeouts, "Pop3InUse": 1} if saturated else {},
        },
        "saturated": saturated,
        "saturation_reasons": ["p95 over the SLO"] if saturated else [],
        "held_out": (backend, tls, size_mb, offered) == ("mbox", "none", 20, 2.0),
    }


def heatmap(intervals: list[float], backend: str = "mbox") -> tuple[dict, dict]:
    loads, boundary = {}, {}
    for connection, tls in (("tls", "implicit"), ("plain", "none")):
        grid = [[ACCOUNTS * cpu_per_poll(backend, tls, s) / (i * 60) for i in intervals] for s in SIZES_MB]
        loads[connection] = grid
        boundary[connection] = [
            [s, next((i for i, v in zip(intervals, row, strict=True) if v <= BUDGET), intervals[-1])]
            for s, row in zip(SIZES_MB, grid, strict=True)
        ]
    return loads, boundary


def make_capacity_dir(
    root: Path, model: bool = True, guidance: bool = True, by_backend: bool = False
) -> Path:
    """A capacity directory per the contract in docs/report.md; with
    ``by_backend`` also the per-store heatmaps ``pop3suite capacity`` adds."""
    root.mkdir(parents=True, exist_ok=True)
    cells = [
        make_cell(backend, tls, size)
        for backend in ("maildir", "mbox")
        for tls in ("none", "implicit")
        for size in SIZES_MB
    ]
    # a knee sweep: one shape at rising offered load
    cells += [make_cell("mbox", "implicit", 20, offered) for offered in (2.5, 3.0, 3.5, 4.0)]
    capacity = {
        "kind": "capacity",
        "scenario": {
            "name": "synthetic",
            "file": "scenarios/synthetic.toml",
            "description": "test data",
        },
        "started": "2026-11-28T11:00:00Z",
        "finished": "2026-11-28T11:20:00Z",
        "machine": {"cpus": 2, "loadavg_before": [0.5, 0.4, 0.3], "loadavg_after": [1.75, 1.2, 0.9]},
        "target": {"kind": "embedded", "url": "pop3://127.0.0.1:1110"},
        "cells": cells,
    }
    (root / "capacity.json").write_text(json.dumps(capacity))
    if model:
        (root / "model.json").write_text(
            json.dumps(
                {
                    "formula": "cpu_per_poll = a + b*MB + c*tls",
                    "terms": ["a", "b", "c"],
                    "units": {"a": "s", "b": "s/MB", "c": "s"},
                    "coefficients": {"a": 0.0021, "b": 0.000437, "c": 0.00398},
                    "r2": 0.9731,
                    "rmse_s": 0.000123,
                    "n_cells": 19,
                    "residuals": {c["id"]: 0.00001 * i for i, c in enumerate(cells)},
                    "held_out": {
                        "cell": "mbox-none-20mb-2ps",
                        "predicted_cpu_per_poll_s": 0.0193,
                        "measured_cpu_per_poll_s": 0.019,
                        "error_pct": 1.58,
                    },
                }
            )
        )
    if guidance:
        intervals = [1.0, 5.0, 15.0, 30.0]
        loads, boundary = heatmap(intervals)
        (root / "guidance.json").write_text(
            json.dumps(
                {
                    "accounts": ACCOUNTS,
                    "cpu_budget_cores": BUDGET,
                    "latency_slo_ms": 2000,
                    "rows": [
                        {
                            "connection": "tls",
                            "backend": "mbox",
                            "keep_under_mb": 40,
                            "above_mb": 15,
                            "poll_min_above": 30,
                            "poll_min": 5,
                        },
                        {
                            "connection": "plain",
                            "backend": "mbox",
                            "keep_under_mb": 90,
                            "above_mb": 50,
                            "poll_min_above": 15,
                            "poll_min": 5,
                        },
                    ],
                    "provider": [
                        {
                            "connection": "tls",
                            "backend": "mbox",
                            "keep_under_mb": 50,
                            "above_mb": 20,
                            "poll_min_above": 15,
                            "poll_min": 5,
                            "policy": "ssl-50",
                        },
                        {
                            "connection": "plain",
                            "backend": "mbox",
                            "keep_under_mb": 90,
                            "above_mb": 50,
                            "poll_min_above": 15,
                            "poll_min": 5,
                            "policy": "plain",
                        },
                    ],
                    "comparison": [
                        {
                            "connection": "tls",
                            "field": "keep_under_mb",
                            "derived": 40,
                            "provider": 50,
                            "verdict": "differ",
                            "note": "TLS costs more here",
                        },
                        {
                            "connection": "plain",
                            "field": "keep_under_mb",
                            "derived": 90,
                            "provider": 90,
                            "verdict": "agree",
                            "note": "",
                        },
                    ],
                    "heatmap": {"sizes_mb": list(SIZES_MB), "intervals_min": intervals, "load_cores": loads},
                    "boundary": boundary,
                    **(
                        {
                            "heatmap_by_backend": {b: heatmap(intervals, b)[0] for b in ("maildir", "mbox")},
                            "boundary_by_backend": {b: heatmap(intervals, b)[1] for b in ("maildir", "mbox")},
                        }
                        if by_backend
                        else {}
                    ),
                }
            )
        )
    return root


@pytest.fixture
def capacity_dir(tmp_path: Path) -> Path:
    return make_capacity_dir(tmp_path / "cap")


def test_cpu_per_poll_chart_plots_the_mean_per_size(capacity_dir: Path) -> None:
    chart = cpu_per_poll_chart(read_capacity(capacity_dir))
    assert chart.drawn
    lines = {line.get_label(): line for line in chart.figure.axes[0].get_lines()}
    assert set(lines) == {
        "maildir, plain",
        "maildir, TLS (implicit, 995)",
        "mbox, plain",
        "mbox, TLS (implicit, 995)",
    }
    line = lines["mbox, TLS (implicit, 995)"]
    assert list(line.get_xdata()) == list(SIZES_MB)
    expected = [cpu_per_poll("mbox", "implicit", s) * 1000 for s in SIZES_MB]
    assert np.allclose(line.get_ydata(), expected)


def test_heatmap_shows_the_guidance_grid_and_both_boundaries(capacity_dir: Path) -> None:
    data = read_capacity(capacity_dir)
    chart = heatmap_chart(data)
    assert chart.drawn
    axes = [ax for ax in chart.figure.axes if ax.get_images()]
    assert [ax.get_title() for ax in axes] == ["tls: load in cores", "plain: load in cores"]
    image = axes[0].get_images()[0].get_array()
    assert np.allclose(image, data.guidance["heatmap"]["load_cores"]["tls"])
    labels = {line.get_label() for line in axes[0].get_lines()}
    assert labels == {"derived boundary", "ssl-50"}  # the provider's line is named by its policy
    derived = next(line for line in axes[1].get_lines() if line.get_label() == "derived boundary")
    # y is in cell-index coordinates: one point per size, in order
    assert list(derived.get_ydata()) == list(range(len(SIZES_MB)))


def test_heatmap_one_panel_per_store_and_connection(tmp_path: Path) -> None:
    data = read_capacity(make_capacity_dir(tmp_path / "cap", by_backend=True))
    chart = heatmap_chart(data)
    axes = [ax for ax in chart.figure.axes if ax.get_images()]
    titles = [ax.get_title() for ax in axes]
    assert titles == [f"{b}, {c}: load in cores" for b in ("maildir", "mbox") for c in ("tls", "plain")]
    maildir_plain = axes[1].get_images()[0].get_array()
    assert np.allclose(maildir_plain, data.guidance["heatmap_by_backend"]["maildir"]["plain"])


def test_knee_is_found_on_the_queueing_curve(capacity_dir: Path) -> None:
    chart = knee_chart(capacity_points(read_capacity(capacity_dir)), "offered polls/s")
    assert chart.drawn
    knees = {series: x for series, x, _y in chart.details["knees"]}
    # only the swept shape has a curve; p95 = 20 + 4/(1 - util) bends at 3.5 polls/s
    assert knees == {"mbox/implicit/20 MB/keep": 3.5}
    sweep = next(
        line for line in chart.figure.axes[0].get_lines() if line.get_label() == "mbox/implicit/20 MB/keep"
    )
    assert list(sweep.get_xdata()) == [2.0, 2.5, 3.0, 3.5, 4.0]


def test_capacity_errors_chart_counts_types_and_timeouts(capacity_dir: Path) -> None:
    data = read_capacity(capacity_dir)
    chart = capacity_errors_chart(data)
    assert chart.drawn
    saturated = [c for c in data.cells if c["saturated"]]
    total = sum(patch.get_width() for patch in chart.figure.axes[0].patches)
    assert total == sum(c["measured"]["errors"] for c in saturated)


def test_model_and_guidance_tables_carry_the_input_numbers(capacity_dir: Path) -> None:
    data = read_capacity(capacity_dir)
    model = model_table(data.model)
    for text in (
        "cpu_per_poll = a + b*MB + c*tls",
        "0.000437",
        "s/MB",
        "0.9731",
        "1.58",
        "mbox-none-20mb-2ps",
        "19.3",
    ):
        assert text in model, text
    guidance = guidance_table(data.guidance)
    assert "ssl-50" in guidance and "TLS costs more here" in guidance
    assert '<td class="text fail">differ</td>' in guidance
    assert '<td class="text pass">agree</td>' in guidance


def test_render_capacity_report(capacity_dir: Path, tmp_path: Path) -> None:
    """Rendered elsewhere than the capacity directory: plots beside the page,
    the cell with a Locust report linked relatively, every link resolves."""
    cell = read_capacity(capacity_dir).cells[0]
    (capacity_dir / cell["dir"]).mkdir(parents=True)
    (capacity_dir / cell["dir"] / "locust.html").write_text("<html></html>")
    out = tmp_path / "elsewhere"
    html = render_report([capacity_dir], out).read_text()
    for name in ("cpu_per_poll", "load_heatmap", "latency_vs_load", "capacity_errors"):
        assert_png_drawn(out / "plots" / f"{name}.png")
        assert f'src="{data_uri((out / "plots" / f"{name}.png").read_bytes())}"' in html  # embedded
    links = html_links(html)
    assert any(link.endswith(f"{cell['dir']}/locust.html") for link in links)
    for link in links:
        assert (out / link).resolve().is_file(), link
    assert "1.75, 1.20, 0.90" in html  # the machine's load average after
    assert html.count("saturated</td>") == sum(c["saturated"] for c in read_capacity(capacity_dir).cells)


def test_missing_model_and_guidance_give_notes_not_charts(tmp_path: Path) -> None:
    directory = make_capacity_dir(tmp_path / "cap", model=False, guidance=False)
    out = tmp_path / "out"
    html = render_report([directory], out).read_text()
    assert "No cost model (model.json absent" in html
    assert "No guidance heatmap (guidance.json absent" in html
    assert not (out / "plots" / "load_heatmap.png").exists()
    assert (out / "plots" / "cpu_per_poll.png").is_file()


def test_not_a_capacity_document(tmp_path: Path) -> None:
    (tmp_path / "capacity.json").write_text(json.dumps({"kind": "something-else"}))
    with pytest.raises(ReportInputError, match=str(tmp_path)):
        render_report([tmp_path], tmp_path / "out")


def test_a_cell_without_a_cpu_reading_says_why(tmp_path: Path) -> None:
    directory = make_capacity_dir(tmp_path / "cap", model=False, guidance=False)
    document = json.loads((directory / "capacity.json").read_text())
    first = document["cells"][0]
    first["measured"].update(
        server_cpu_s=None, cpu_per_poll_s=None, cpu_util=None, cpu_error="PID 7 used no CPU"
    )
    (directory / "capacity.json").write_text(json.dumps(document))
    html = cells_table(read_capacity(directory), tmp_path)
    assert f"CPU not measured in {first['id']}: PID 7 used no CPU" in html
    assert html.count("CPU not measured") == 1
