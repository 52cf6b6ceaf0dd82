"""Error and timeout breakdown: by failure type (which step, which
exception: ``Pop3Timeout``, ``Pop3InUse`` ...) and over time."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
from matplotlib.ticker import MaxNLocator

from ..verdicts import SESSION_NAMES
from .figures import Chart, missing, new_figure
from .inputs import CapacityData, RunData


def failure_counts(run: RunData) -> dict[str, Counter[str]]:
    """Exception type -> step -> count, from the exact counters (steps.json);
    SESSION repeats the failing step's failure, so it is left out."""
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for step, row in run.steps.items():
        if step in SESSION_NAMES or step.startswith("~"):
            continue
        for error, count in (row.get("failure_types") or {}).items():
            out[error][step] += int(count)
    return dict(out)


def errors_chart(run: RunData, name: str = "errors") -> Chart:
    title = "Errors and timeouts: by type and over time"
    counts = failure_counts(run)
    requests = sum(
        r.get("requests", 0) for s, r in run.steps.items() if s not in SESSION_NAMES and s[:1] != "~"
    )
    if not counts:
        if not run.steps:
            return missing(name, title, "No per-step results (steps.json absent): failures unknown.")
        return missing(
            name, title, f"No failed requests in this run ({requests} requests): nothing to break down."
        )
    figure = new_figure(9.0, 5.5)
    by_type, over_time = figure.subplots(2, 1)
    types = sorted(counts, key=lambda e: -sum(counts[e].values()))
    steps = sorted({s for c in counts.values() for s in c})
    left = np.zeros(len(types))
    for index, step in enumerate(steps):
        widths = np.array([counts[e].get(step, 0) for e in types], float)
        by_type.barh(types, widths, left=left, color=f"C{index % 10}", label=step)
        left += widths
    by_type.invert_yaxis()
    by_type.set_xlabel("failed requests")
    by_type.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_type.legend(fontsize=7, ncol=3, loc="lower right")
    by_type.set_title(
        f"by failure type and step ({int(left.sum())} of {requests} requests failed)", fontsize=10, loc="left"
    )
    series = {n: s for n, s in run.history.items() if n != "Aggregated" and np.nansum(s.fps) > 0}
    if not series and "Aggregated" in run.history:
        series = {"all steps": run.history["Aggregated"]}
    for label, s in series.items():
        over_time.plot(s.t, s.fps, label=label)
    over_time.set_xlabel("seconds since start")
    over_time.set_ylabel("failures/s")
    over_time.grid(True, alpha=0.3)
    if series:
        over_time.legend(fontsize=7)
    else:
        over_time.text(
            0.5,
            0.5,
            "no Locust history: timing of failures unknown",
            ha="center",
            transform=over_time.transAxes,
        )
    return Chart(
        name,
        title,
        "Top: every failed request by exception type (Pop3Timeout = no answer in time, Pop3InUse = "
        "mailbox locked, Pop3ConnectionError = refused/reset ...), split by the step that failed. Bottom: "
        "failures per second over the run; a burst at one moment points at a stall, a steady rate at a "
        "systematic problem.",
        figure,
    )


def capacity_errors_chart(data: CapacityData, name: str = "capacity_errors") -> Chart:
    title = "Errors and timeouts per capacity cell"
    cells = [c for c in data.cells if _cell_errors(c)]
    if not cells:
        return missing(name, title, f"No errors or timeouts in any of the {len(data.cells)} cells.")
    rows = {str(c.get("id")): _cell_errors(c) for c in cells}
    types = sorted({t for r in rows.values() for t in r})
    figure = new_figure(9.0, max(3.0, 0.35 * len(cells) + 1.5))
    ax = figure.subplots()
    left = np.zeros(len(rows))
    for index, error in enumerate(types):
        widths = np.array([r.get(error, 0) for r in rows.values()], float)
        ax.barh(list(rows), widths, left=left, color=f"C{index % 10}", label=error)
        left += widths
    ax.invert_yaxis()
    ax.set_xlabel("count")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    return Chart(
        name,
        title,
        "Cells (one mailbox size x poll interval x connection x store each) that had errors or timeouts, by "
        "type. Timeouts at the large-mailbox end are the provider's 'retrievals start to time out'.",
        figure,
    )


def _cell_errors(cell: dict) -> dict[str, int]:
    """A cell's errors by type; timeouts the types do not already name
    (no ``...Timeout`` type) get their own ``timeouts`` entry."""
    measured = cell.get("measured") or {}
    out = {str(k): int(v) for k, v in (measured.get("error_types") or {}).items() if v}
    untyped = int(measured.get("errors") or 0) - sum(out.values())
    typed_timeouts = sum(v for k, v in out.items() if "timeout" in k.lower())
    extra = int(measured.get("timeouts") or 0) - typed_timeouts
    if untyped > 0:
        out["other errors"] = untyped
    if extra > 0:
        out["timeouts"] = extra
    return out
