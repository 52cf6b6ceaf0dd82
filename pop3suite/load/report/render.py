"""``render_report``: one self-contained HTML page (charts embedded as
``data:`` URIs; the same PNGs are also written to ``plots/``) for load runs
and capacity runs.  Each input directory gets a section: what ran, the server's
load and the verdicts first, then the charts (each with a "how to read
this" line, or a one-line note when its data are absent), then the tables.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

# No matplotlib.use(): every figure is drawn on its own Agg canvas (figures.new_figure), so the
# report needs no display and leaves the importer's backend and pyplot state alone.
from . import (
    capacity_plots,
    capacity_tables,
    errors,
    knee,
    latency,
    resources,
    server_latency,
    tables,
    throughput,
)
from .figures import Chart, missing, save_png
from .html import esc, note, page
from .inputs import CapacityData, RunData, kind_of, read_capacity, read_run

RAW_FILES = (
    "locust.html",
    "steps.json",
    "cells.json",
    "verdicts.json",
    "ledger.json",
    "monitor.csv",
    "locust_stats_history.csv",
    "locust_failures.csv",
    "histograms/encoded.json",
)
CAPACITY_FILES = ("capacity.json", "model.json", "guidance.json")
CAPACITY_ONLY_NOTE = "Capacity chart; this is a single load run (no capacity.json): see `pop3suite capacity`."


class _Page:
    """Collects sections and writes each chart's PNG as it is added."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.plots = out / "plots"
        self.parts: list[str] = []
        self.charts: list[Chart] = []
        self.written: set[str] = set()

    def prune(self) -> None:
        """Remove charts an earlier rendering left in ``plots/`` that this one
        did not draw (data now absent), so no stale PNG sits beside the page.
        Only our own chart names are touched."""
        if not self.plots.is_dir():
            return
        names = {c.name for c in self.charts}
        for png in self.plots.glob("*.png"):
            stem = re.sub(r"^\d+_", "", png.stem)
            if png.name not in self.written and stem in names:
                png.unlink()

    def add(self, text: str) -> None:
        self.parts.append(text)

    def chart(self, chart: Chart, prefix: str) -> None:
        self.charts.append(chart)
        self.add(f"<h3>{esc(chart.title)}</h3>")
        if chart.figure is None:
            self.add(note(chart.note or "No data for this chart."))
            return
        path = save_png(chart.figure, self.plots / f"{prefix}{chart.name}.png")
        self.written.add(path.name)
        chart.figure.clear()  # free the figure's memory now; it is not reused
        self.add(f'<p class="how">How to read this: {esc(chart.how_to_read)}</p>')
        self.add(f'<p><img src="{data_uri(path.read_bytes())}" alt="{esc(chart.title)}"></p>')


def data_uri(png: bytes) -> str:
    """The PNG inside the page: report.html is one self-contained file that
    CI can attach (the PNGs in ``plots/`` stay for other tools)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _relative(path: Path, out: Path) -> str:
    return Path(os.path.relpath(path.resolve(), out.resolve())).as_posix()


def _files(run_dir: Path, out: Path, names: tuple[str, ...] = RAW_FILES) -> str:
    """Links to the raw result files that exist (relative to the page)."""
    links = [
        f'<a href="{esc(_relative(run_dir / name, out))}">{esc(name)}</a>'
        for name in names
        if (run_dir / name).is_file()
    ]
    return f"<p>Raw results: {' · '.join(links)}</p>" if links else ""


def _load_section(doc: _Page, run: RunData, prefix: str) -> None:
    doc.add(f"<h2>Load run: {esc(run.label)}</h2>")
    doc.add(f"<p>Directory: <code>{esc(run.path)}</code></p>" + _files(run.path, doc.out))
    doc.add("<h3>Parameters</h3>" + tables.parameters_table(run))
    doc.add("<h3>Server and machine load</h3>" + tables.machine_table(run))
    doc.add("<h3>SLO verdicts</h3>" + tables.verdict_table(run.verdicts))
    doc.add("<h3>Throughput (run means)</h3>" + tables.throughput_table(run))
    doc.add("<h3>SPECmail2001 QoS compliance</h3>" + tables.spec_table(run.verdicts, run.steps))
    doc.add("<h3>Ledger: lost and duplicated mail</h3>" + tables.ledger_table(run.ledger))
    doc.add("<h3>Server-side vs client-side latency (ms)</h3>" + server_latency.server_latency_table(run))
    doc.chart(latency.over_time_chart(run), prefix)
    doc.chart(latency.distribution_chart(run), prefix)
    doc.chart(throughput.load_chart(run), prefix)
    doc.chart(knee.knee_chart(knee.ramp_points(run), "simulated clients (Locust users)"), prefix)
    doc.chart(errors.errors_chart(run), prefix)
    doc.chart(resources.resources_chart(run), prefix)
    doc.chart(missing("cpu_per_poll", "Server CPU per poll vs mailbox size", CAPACITY_ONLY_NOTE), prefix)
    doc.chart(
        missing("load_heatmap", "Server load over mailbox size x poll interval", CAPACITY_ONLY_NOTE), prefix
    )
    doc.add(
        "<h3>Per-step latency (exact HdrHistograms, successes only, ms)</h3>" + tables.step_table(run.steps)
    )
    doc.add("<h3>Per client cell: whole sessions</h3>" + tables.cells_table(run.cells))


def _capacity_section(doc: _Page, data: CapacityData, prefix: str) -> None:
    doc.add(f"<h2>Capacity run: {esc(data.label)}</h2>")
    doc.add(f"<p>Directory: <code>{esc(data.path)}</code></p>" + _files(data.path, doc.out, CAPACITY_FILES))
    doc.add("<h3>Parameters and machine load</h3>" + capacity_tables.header_table(data))
    doc.add("<h3>Derived guidance vs the provider's</h3>" + capacity_tables.guidance_table(data.guidance))
    doc.chart(capacity_plots.cpu_per_poll_chart(data), prefix)
    doc.chart(capacity_plots.heatmap_chart(data), prefix)
    points = knee.capacity_points(data)
    doc.chart(
        knee.knee_chart(points, "offered polls per second", one_point_note=knee.ONE_POINT_CAPACITY), prefix
    )
    doc.chart(errors.capacity_errors_chart(data), prefix)
    _busiest_cell(doc, data, prefix)
    doc.add("<h3>Cost model fit</h3>" + capacity_tables.model_table(data.model))
    doc.add("<h3>Cells</h3>" + capacity_tables.cells_table(data, doc.out))


def _busiest_cell(doc: _Page, data: CapacityData, prefix: str) -> None:
    """The over-time charts of the cell with the highest offered load (the
    one nearest saturation), so a capacity report also shows per-step
    latency, offered vs achieved load, errors and server resources over
    time; every cell's own charts are one ``pop3suite report`` away."""
    cells = [c for c in data.cells if (data.path / str(c.get("dir", ""))).joinpath("run.json").is_file()]
    if not cells:
        doc.add(note("No cell directory with a run.json: no over-time charts."))
        return
    busiest = max(
        cells,
        key=lambda c: (
            (c.get("measured") or {}).get("offered_polls_per_s") or 0,
            (c.get("measured") or {}).get("cpu_util") or 0,
        ),
    )
    run = read_run(data.path / busiest["dir"])
    doc.add(f"<h3>Over time: the busiest cell, {esc(busiest.get('id', ''))}</h3>")
    for chart in (
        latency.over_time_chart(run),
        throughput.load_chart(run),
        errors.errors_chart(run),
        resources.resources_chart(run),
    ):
        doc.chart(chart, f"{prefix}busiest_")


def render_report(runs: list[Path], out: Path) -> Path:
    """Render load-run and/or capacity directories into ``out/report.html``
    (self-contained: charts embedded) and the charts also as PNGs in
    ``out/plots/``; returns the HTML path.  Raises
    ``ReportInputError`` (naming the directory) for a directory that is
    neither kind."""
    if not runs:
        raise ValueError("render_report: no run directories given")
    inputs = [(Path(r), kind_of(Path(r))) for r in runs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = _Page(out)
    loads: list[RunData] = []
    labels = []
    for index, (path, kind) in enumerate(inputs):
        prefix = "" if len(inputs) == 1 else f"{index + 1}_"
        if kind == "capacity":
            data = read_capacity(path)
            labels.append(data.label)
            _capacity_section(doc, data, prefix)
        else:
            run = read_run(path)
            labels.append(run.label)
            loads.append(run)
            _load_section(doc, run, prefix)
    if len(loads) > 1:
        doc.add("<h2>Across the load runs</h2>")
        points = knee.run_points(loads)
        doc.chart(
            knee.knee_chart(points, "simulated clients (peak Locust users)", "runs_latency_vs_load"), ""
        )
    doc.prune()
    title = "pop3suite load report: " + ", ".join(labels)
    html_path = out / "report.html"
    html_path.write_text(page(title, "\n".join(doc.parts)), encoding="utf-8")
    return html_path
