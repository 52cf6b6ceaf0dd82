"""Latency vs offered load with the knee marked.

The knee is found with the Kneedle rule (Satopää et al., 2011): normalise
both axes to [0, 1] and take the point furthest below the chord from the
first to the last point, i.e. where latency stops being flat and starts to
climb.  A curve that never rises (last latency < ``RISE`` x the first) has
no knee in the measured range, and the chart says so instead of inventing
one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .figures import Chart, missing, new_figure
from .inputs import CapacityData, RunData

RISE = 1.5  # latency must grow by half before a knee is named
MIN_GAP = 0.1  # normalised distance below the chord that counts as a bend


@dataclass
class Point:
    load: float
    latency_ms: float
    series: str
    saturated: bool = False


def find_knee(x: np.ndarray, y: np.ndarray) -> int | None:
    """Index (into the x-sorted arrays) of the knee of a rising convex
    curve, or None when there is none (fewer than 3 points, flat, linear)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size < 3 or np.ptp(x) <= 0 or y[-1] < RISE * max(y[0], 1e-9):
        return None
    xn = (x - x.min()) / np.ptp(x)
    yn = (y - y.min()) / max(np.ptp(y), 1e-12)
    gap = xn - yn  # how far below the diagonal of the normalised box
    index = int(np.argmax(gap))
    return index if gap[index] >= MIN_GAP else None


def capacity_points(data: CapacityData) -> list[Point]:
    """One point per cell, x = offered polls/s, y = p95; one series per cell
    shape (store, connection, size, behaviour)."""
    points = []
    for cell in data.cells:
        measured, params = cell.get("measured") or {}, cell.get("params") or {}
        load = measured.get("offered_polls_per_s")
        latency = measured.get("p95_ms")
        if load is None or latency is None:
            continue
        series = _shape(params)
        points.append(Point(float(load), float(latency), series, bool(cell.get("saturated"))))
    return points


def _shape(params: dict) -> str:
    """A cell's shape: everything but the load (users, poll interval), so one
    series holds the cells that differ only in offered load."""
    size = params.get("mailbox_mb")
    if size is None and params.get("mailbox_bytes") is not None:
        size = params["mailbox_bytes"] / 1e6
    parts = [params.get("backend", "?"), params.get("tls", "?"), f"{size:g} MB" if size is not None else None]
    return "/".join(str(p) for p in [*parts, params.get("behaviour")] if p is not None)


def run_points(runs: list[RunData]) -> list[Point]:
    """One point per run (several runs = several load points), x = the peak
    number of simulated clients, y = SESSION p95 (exact)."""
    points = []
    for run in runs:
        aggregated = run.history.get("Aggregated")
        p95 = (run.steps.get("SESSION") or {}).get("p95_ms")
        if aggregated is None or p95 is None or not np.isfinite(aggregated.users).any():
            continue
        points.append(Point(float(np.nanmax(aggregated.users)), float(p95), "runs"))
    return points


def ramp_points(run: RunData) -> list[Point]:
    """A single run's ramp: Locust's aggregate p95 at each distinct user
    count (needs at least 3 of them; a constant-load run has no ramp)."""
    aggregated = run.history.get("Aggregated")
    if aggregated is None:
        return []
    by_users: dict[float, list[float]] = {}
    for users, p95 in zip(aggregated.users, aggregated.p95, strict=True):
        if np.isfinite(users) and np.isfinite(p95) and users > 0:
            by_users.setdefault(float(users), []).append(float(p95))
    if len(by_users) < 3:
        return []
    return [Point(u, float(np.median(v)), "ramp") for u, v in sorted(by_users.items())]


ONE_POINT_RUN = (
    "Only one load point: a single run at constant load has no latency-vs-load curve "
    "(run a ramp, several runs, or a capacity run)."
)
ONE_POINT_CAPACITY = (
    "Only one load point: every cell of this grid offered the same polls per second, so there is no "
    "latency-vs-load curve (a grid with several users or poll intervals per shape gives one)."
)


def knee_chart(
    points: list[Point], xlabel: str, name: str = "latency_vs_load", one_point_note: str = ONE_POINT_RUN
) -> Chart:
    title = "Latency vs offered load (knee marked)"
    if len({p.load for p in points}) < 2:
        return missing(name, title, one_point_note)
    figure = new_figure(8.0, 4.5)
    ax = figure.subplots()
    knees = []
    for index, series in enumerate(sorted({p.series for p in points})):
        members = sorted((p for p in points if p.series == series), key=lambda p: p.load)
        x = np.array([p.load for p in members])
        y = np.array([p.latency_ms for p in members])
        color = f"C{index % 10}"
        ax.plot(x, y, marker="o", color=color, label=series)
        saturated = [p for p in members if p.saturated]
        if saturated:
            ax.scatter(
                [p.load for p in saturated],
                [p.latency_ms for p in saturated],
                marker="x",
                s=80,
                color="red",
                zorder=3,
                label=f"{series} saturated",
            )
        knee = find_knee(x, y)
        if knee is not None:
            knees.append((series, x[knee], y[knee]))
            ax.axvline(x[knee], color=color, linestyle=":", alpha=0.7)
            ax.annotate(
                f"knee {x[knee]:.3g}",
                (x[knee], y[knee]),
                textcoords="offset points",
                xytext=(5, 8),
                fontsize=8,
                color=color,
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("p95 latency (ms)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    how = (
        "Each line is one series of load points, sorted by offered load; the dotted vertical line marks the "
        "knee, where p95 latency stops being flat and starts to climb. Plan to stay left of it. "
    )
    how += (
        "Knees: " + "; ".join(f"{s} at {x:.3g} ({y:.3g} ms)" for s, x, y in knees) + "."
        if knees
        else "No knee in the measured range: p95 did not bend up (flat, linear, or up by less than half)."
    )
    return Chart(name, title, how, figure, details={"knees": knees})
