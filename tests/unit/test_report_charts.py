"""The load-run charts of the report, on a small run directory written here
in the producers' formats (Locust's CSVs, monitor.csv, steps.json,
HdrHistogram .hgrm text): each chart must plot exactly the input's numbers,
and a chart without data must be a note, not an empty figure."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from matplotlib.image import imread

from pop3suite.load.report import render_report
from pop3suite.load.report.errors import errors_chart
from pop3suite.load.report.figures import gapped, group_of, grouped
from pop3suite.load.report.inputs import hgrm_name, read_run
from pop3suite.load.report.knee import find_knee, knee_chart, ramp_points
from pop3suite.load.report.latency import distribution_chart, over_time_chart, percentile_reach, tail_ticks
from pop3suite.load.report.render import RAW_FILES
from pop3suite.load.report.resources import resources_chart
from pop3suite.load.report.throughput import load_chart

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HISTORY_HEADER = (
    "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,"
    "Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,"
    "Total Min Response Time,Total Max Response Time,Total Average Content Size"
)


def assert_png_drawn(path: Path) -> None:
    """A valid, non-empty PNG with more than one colour (something drawn)."""
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert float(pixels[..., :3].std()) > 0.01, f"{path} looks blank"


def html_links(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"#:]+)"', html)


def _history_row(
    t: int, users: int, name: str, rps: float, fps: float, p50, p95, p99, p100, kind: str = "POP3:a"
) -> list[str]:
    kind = "" if name == "Aggregated" else kind
    pct = [p50, p50, p50, p50, p95, p95, p99, p99, p100, p100, p100]
    return [
        str(t),
        str(users),
        kind,
        name,
        str(rps),
        str(fps),
        *map(str, pct),
        "10",
        "0",
        "1",
        "1.0",
        "0",
        "9",
        "0",
    ]


def write_run(root: Path, *, full_history: bool = True, failures: bool = True, ramp: bool = False) -> Path:
    """A load-run directory with known numbers in every file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "run.json").write_text(json.dumps({"host": "127.0.0.1", "pop3_port": 1110, "password": "s3cret"}))
    steps = {
        "CONNECT": {
            "requests": 50,
            "ok": 50,
            "failures": 0,
            "failure_types": {},
            "octets": 0,
            "spec_within": 50,
            "mean_ms": 1.25,
            "p50_ms": 1.031,
            "p90_ms": 2.0,
            "p95_ms": 2.447,
            "p99_ms": 4.9,
            "p99.9_ms": 6.5,
            "max_ms": 6.515,
        },
        "RETR[1MB]": {
            "requests": 12,
            "ok": 9,
            "failures": 3 if failures else 0,
            "failure_types": {"Pop3Timeout": 2, "Pop3ConnectionError": 1} if failures else {},
            "octets": 9_000_000,
            "spec_within": 9,
            "mean_ms": 30.0,
            "p50_ms": 28.5,
            "p90_ms": 40.0,
            "p95_ms": 44.123,
            "p99_ms": 50.0,
            "p99.9_ms": 51.0,
            "max_ms": 51.0,
        },
        "SESSION": {
            "requests": 50,
            "ok": 47,
            "failures": 3 if failures else 0,
            "failure_types": {"Pop3Timeout": 3} if failures else {},
            "octets": 9_000_000,
            "spec_within": 47,
            "mean_ms": 40.0,
            "p50_ms": 35.0,
            "p90_ms": 60.0,
            "p95_ms": 77.7,
            "p99_ms": 90.0,
            "p99.9_ms": 95.0,
            "max_ms": 95.0,
        },
    }
    (root / "steps.json").write_text(json.dumps(steps))
    (root / "cells.json").write_text(json.dumps({"plaindel": {"SESSION": steps["SESSION"]}}))
    checks = [
        {"check": "error_rate", "passed": not failures, "actual": 0.0484 if failures else 0.0, "limit": 0.01},
        {"check": "CONNECT: SPEC 5 s", "passed": True, "actual": 1.0, "limit": 0.95},
        {"check": "RETR[1MB]: SPEC 5 s + bytes/3000", "passed": False, "actual": 0.75, "limit": 0.95},
    ]
    verdicts = {"passed": not failures, "checks": checks, "scenario": "unit", "run_time": 10.0, "workers": 1}
    (root / "verdicts.json").write_text(json.dumps(verdicts))
    (root / "ledger.json").write_text(
        json.dumps({"delivered": 40, "removed": 31, "left": 9, "lost": 0, "duplicated": 0, "corrupted": 0})
    )
    with open(root / "monitor.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t", "cpu_percent", "rss_bytes", "connections", "threads", "fds"])
        for i in range(6):
            writer.writerow([i + 1.0, 10.0 * i, (20 + i) * 1024 * 1024, i % 3, 3, 9])
    (root / "monitor.json").write_text(
        json.dumps(
            {
                "samples": 6,
                "cpu_percent_mean": 25.0,
                "cpu_percent_max": 50.0,
                "rss_bytes_max": 25 * 1024 * 1024,
                "connections_max": 2,
            }
        )
    )
    rows = []
    for t in range(8):
        users = (t + 1) * 2 if ramp else 4
        p95 = 10.0 + (2 ** max(0, t - 4)) * 20 if ramp else 10.0 + t
        rows.append(
            _history_row(
                1000 + t,
                users,
                "Aggregated",
                10.0 + t,
                0.5 if failures and t == 5 else 0.0,
                5.0,
                p95,
                p95 + 5,
                p95 + 10,
            )
        )
        if full_history:
            rows.append(
                _history_row(1000 + t, users, "SESSION", 1.0 + t / 10, 0.0, 30, 70 + t, 80 + t, 90 + t)
            )
            # a second cell issues SESSION too: rates add up, percentiles take the worst cell
            rows.append(_history_row(1000 + t, users, "SESSION", 0.5, 0.0, 20, 60, 61, 62, kind="POP3:b"))
            rows.append(_history_row(1000 + t, users, "CONNECT", 1.0, 0.0, 1, 2, 4, 6))
    with open(root / "locust_stats_history.csv", "w", newline="") as handle:
        handle.write(HISTORY_HEADER + "\n")
        csv.writer(handle).writerows(rows)
    (root / "histograms").mkdir(exist_ok=True)
    for name, values in (("CONNECT", [1000, 1100, 1200, 5000]), ("RETR[1MB]", [20000, 30000, 51000])):
        histogram = HdrHistogram(1, 3_600_000_000, 3)
        for value in values:
            histogram.record_value(value)
        with open(root / "histograms" / f"{hgrm_name(name)}.hgrm", "wb") as handle:
            histogram.output_percentile_distribution(handle, 1000)
    return root


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")


def test_step_groups_follow_protocol_order() -> None:
    names = ["SESSION(CO)", "AUTH", "RETR[1MB]", "CONNECT", "RETR[<=10KB]", "QUIT", "SESSION", "TLS", "~late"]
    assert grouped(names) == [
        ("connection", ["CONNECT", "TLS", "AUTH"]),
        ("mailbox commands", ["QUIT"]),
        ("retrieval (RETR by size class)", ["RETR[<=10KB]", "RETR[1MB]"]),
        ("whole session", ["SESSION", "SESSION(CO)"]),
    ]
    assert group_of("~late_start") is None
    assert group_of("TLSX") is None


def test_distribution_chart_plots_the_histogram(run_dir: Path) -> None:
    chart = distribution_chart(read_run(run_dir))
    assert chart.drawn
    titles = [ax.get_title(loc="left") for ax in chart.figure.axes]
    assert titles == ["connection", "retrieval (RETR by size class)"]
    line = chart.figure.axes[1].get_lines()[0]
    assert line.get_label() == "RETR[1MB] (n=3)"
    assert line.get_ydata()[0] == pytest.approx(20.0, rel=1e-3)  # the smallest recorded value, in ms
    assert max(line.get_ydata()) <= 51.1


def test_distribution_chart_shows_the_tail(tmp_path: Path) -> None:
    """The percentile axis runs to p99.9 at least (it stopped at p50 when the
    limit was 1/(1 - min p)), further when the data reach further, and every
    line ends at the step's maximum."""
    assert percentile_reach(np.array([0.0, 0.5, 0.9, 0.99, 0.999, 1.0])) == pytest.approx(1000.0)
    assert tail_ticks(2.0)[-1] == 0.999 and tail_ticks(20_000.0)[-1] == 0.9999
    run = write_run(tmp_path / "run")
    rng = np.random.default_rng(1)
    histogram = HdrHistogram(1, 3_600_000_000, 3)
    for value in rng.lognormal(8.0, 0.6, 50_000):  # microseconds: a long tail, 50,000 requests
        histogram.record_value(int(value))
    with open(run / "histograms" / f"{hgrm_name('SESSION')}.hgrm", "wb") as handle:
        histogram.output_percentile_distribution(handle, 1000)
    chart = distribution_chart(read_run(run))
    labels = [t.get_text() for t in chart.figure.axes[0].get_xticklabels()]
    assert labels == ["50%", "90%", "99%", "99.9%", "99.99%"]  # 50,000 requests reach p99.99
    for ax in chart.figure.axes:
        assert ax.get_xlim()[1] >= 1 / (1 - 0.9999)
    session = next(
        ln for ax in chart.figure.axes for ln in ax.get_lines() if ln.get_label().startswith("SESSION")
    )
    x, y = np.asarray(session.get_xdata()), np.asarray(session.get_ydata())
    assert x[-1] == pytest.approx(10_000) and y[-1] == pytest.approx(
        histogram.get_max_value() / 1000, rel=1e-3
    )
    at = np.searchsorted(x, 1000, side="right") - 1  # the rows around p99.9 bracket its exact value
    assert y[at] <= histogram.get_value_at_percentile(99.9) / 1000 <= y[at + 1] * 1.001
    small = distribution_chart(read_run(write_run(tmp_path / "small")))  # 3 and 4 requests
    small_labels = [t.get_text() for t in small.figure.axes[0].get_xticklabels()]
    assert small_labels[-1] == "99.9%" and small.figure.axes[0].get_xlim()[1] >= 1000


def test_over_time_chart_one_panel_per_step_group(run_dir: Path) -> None:
    chart = over_time_chart(read_run(run_dir))
    assert chart.drawn and len(chart.figure.axes) == 2
    session_p95 = next(line for line in chart.figure.axes[1].get_lines() if line.get_label() == "SESSION p95")
    assert list(session_p95.get_ydata()) == [70 + t for t in range(8)]
    assert list(session_p95.get_xdata()) == list(range(8))


def test_over_time_chart_falls_back_to_the_aggregate(tmp_path: Path) -> None:
    chart = over_time_chart(read_run(write_run(tmp_path / "r", full_history=False)))
    assert chart.drawn and "all steps together" in chart.title
    assert "--csv-full-history" in chart.how_to_read
    p99 = next(line for line in chart.figure.axes[0].get_lines() if line.get_label() == "all requests p99")
    assert list(p99.get_ydata()) == [15.0 + t for t in range(8)]


def test_load_chart_draws_users_sessions_and_requests(run_dir: Path) -> None:
    chart = load_chart(read_run(run_dir))
    assert chart.drawn
    labels = {line.get_label(): line for ax in chart.figure.axes for line in ax.get_lines()}
    assert list(labels["completed sessions/s"].get_ydata()) == pytest.approx([1.5 + t / 10 for t in range(8)])
    assert list(labels["requests/s (all steps)"].get_ydata()) == [10.0 + t for t in range(8)]
    assert labels["achieved sessions/s (run mean)"].get_ydata()[0] == pytest.approx(5.0)  # 50 sessions / 10 s
    assert "planned polls/s" not in " ".join(labels)  # scenario "unit" does not exist: no guess


def test_errors_chart_counts_exceptions_per_step(run_dir: Path) -> None:
    chart = errors_chart(read_run(run_dir))
    assert chart.drawn
    by_type = chart.figure.axes[0]
    widths = {}
    for patch, label in zip(
        by_type.patches, [t.get_text() for t in by_type.get_yticklabels()] * 5, strict=False
    ):
        widths[label] = widths.get(label, 0) + patch.get_width()
    assert widths == {"Pop3Timeout": 2, "Pop3ConnectionError": 1}  # SESSION's repeat is not counted
    assert "3 of 62 requests failed" in by_type.get_title(loc="left")


def test_no_failures_is_a_note(tmp_path: Path) -> None:
    chart = errors_chart(read_run(write_run(tmp_path / "r", failures=False)))
    assert not chart.drawn and "No failed requests in this run (62 requests)" in chart.note


def test_resources_chart_plots_monitor_samples(run_dir: Path) -> None:
    chart = resources_chart(read_run(run_dir))
    assert chart.drawn
    cpu, rss, conns = (ax.get_lines()[0] for ax in chart.figure.axes)
    assert list(cpu.get_ydata()) == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    assert list(rss.get_ydata()) == [20.0, 21.0, 22.0, 23.0, 24.0, 25.0]  # MiB
    assert list(conns.get_xdata()) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_find_knee() -> None:
    x = np.arange(8.0)
    assert find_knee(x, np.array([10, 10, 11, 11, 12, 30, 80, 200.0])) in (4, 5)
    assert find_knee(x, np.full(8, 10.0)) is None  # flat: no knee
    assert find_knee(x, 10 + 2 * x) is None  # linear: never bends
    assert find_knee(x[:2], np.array([1.0, 100.0])) is None  # too few points


def test_knee_on_a_ramp_and_none_at_constant_load(tmp_path: Path) -> None:
    chart = knee_chart(ramp_points(read_run(write_run(tmp_path / "ramp", ramp=True))), "users")
    assert chart.drawn and chart.details["knees"]
    assert chart.details["knees"][0][1] in (8.0, 10.0, 12.0)
    flat = knee_chart(ramp_points(read_run(write_run(tmp_path / "flat"))), "users")
    assert not flat.drawn and "Only one load point" in flat.note


LOAD_PLOTS = (
    "latency_over_time",
    "latency_distribution",
    "offered_vs_achieved",
    "errors",
    "server_resources",
)


def test_render_load_reports(run_dir: Path, tmp_path: Path) -> None:
    """Two runs in one report (one rendering, to keep the test fast): each
    gets its own prefixed plots, the ramp run its knee, both a comparison."""
    ramp = write_run(tmp_path / "ramp", ramp=True)
    out = tmp_path / "out"
    html = render_report([run_dir, ramp], out).read_text()
    expected = {f"1_{n}.png" for n in LOAD_PLOTS} | {f"2_{n}.png" for n in LOAD_PLOTS}
    expected |= {"2_latency_vs_load.png", "runs_latency_vs_load.png"}  # 4 users vs 16 users
    assert {p.name for p in (out / "plots").iterdir()} == expected
    for name in expected:
        assert_png_drawn(out / "plots" / name)
    for link in html_links(html):
        assert (out / link).resolve().is_file(), link
    assert "s3cret" not in html  # the accounts' password is never printed
    for number in ("44.123", "2.447", "6.515", "77.7"):  # per-step table from steps.json
        assert f"<td>{number}</td>" in html, number
    assert "<td>75</td><td>95</td>" in html  # SPEC: % within vs required for RETR[1MB]
    assert '<td class="text">messages retrieved (RETR)</td><td>9</td><td>0.9</td>' in html  # 9 ok in 10 s
    assert "Only one load point" in html and "single load run (no capacity.json)" in html
    assert "Across the load runs" in html


def test_the_report_is_one_self_contained_file(run_dir: Path, tmp_path: Path) -> None:
    """report.html alone (as CI attaches it) shows every chart: images are
    data: URIs holding the same PNGs as plots/, no stylesheet or script is
    fetched; the only relative links are to the raw result files."""
    out = tmp_path / "out"
    html = render_report([run_dir], out).read_text()
    images = re.findall(r'<img src="([^"]*)"', html)
    assert len(images) == len(LOAD_PLOTS)
    for src in images:
        assert src.startswith("data:image/png;base64,"), src[:60]
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == PNG_MAGIC
    assert {base64.b64decode(s.split(",", 1)[1]) for s in images} == {
        p.read_bytes() for p in (out / "plots").iterdir()
    }
    assert "<link" not in html and "<script" not in html and "url(" not in html
    alone = tmp_path / "attached" / "report.html"
    alone.parent.mkdir()
    shutil.copy(out / "report.html", alone)
    for link in re.findall(r'(?:src|href)="([^"#]+)"', alone.read_text()):
        assert link.startswith("data:") or link.endswith(RAW_FILES), link  # raw results are extras


def test_gaps_in_the_history_break_the_line(tmp_path: Path) -> None:
    """Locust writes a last row at shutdown, long after the run: the line
    must stop at the gap, and an idle second (no rate, max 0) is blank."""
    run = write_run(tmp_path / "r", full_history=False)
    with open(run / "locust_stats_history.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(_history_row(1030, 4, "Aggregated", 0.0, 0.0, 0, 0, 0, 0))
    chart = over_time_chart(read_run(run))
    p95 = next(line for line in chart.figure.axes[0].get_lines() if line.get_label() == "all requests p95")
    x, y = np.asarray(p95.get_xdata(), float), np.asarray(p95.get_ydata(), float)
    assert list(x[:8]) == list(range(8)) and np.isnan(x[8]) and x[9] == 30
    assert list(y[:8]) == [10.0 + t for t in range(8)] and np.isnan(y[8]) and np.isnan(y[9])
    assert list(gapped(np.arange(5.0), np.ones(5))[0]) == [0, 1, 2, 3, 4]  # no gap, nothing inserted
