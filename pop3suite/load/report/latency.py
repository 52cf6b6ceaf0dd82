"""Latency charts of one load run: the exact per-step distributions (from
the HdrHistograms) and the percentiles over time (from Locust's history)."""

from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from .figures import Chart, gapped, grouped, missing, new_figure, plain_log_axis
from .inputs import RunData, Series

PERCENTILE_TICKS = (0.5, 0.9, 0.99, 0.999, 0.9999)
TIME_PERCENTILES = (("p50", "p50", ":"), ("p95", "p95", "-"), ("p99", "p99", "--"), ("p100", "max", "-."))


def _panels(count: int, height_each: float = 2.6, width: float = 9.0):
    figure = new_figure(width, max(2.8, height_each * count))
    axes = figure.subplots(count, 1, squeeze=False)[:, 0]
    return figure, list(axes)


def percentile_reach(percentiles: np.ndarray) -> float:
    """How far right a distribution reaches on the 1/(1-p) axis: the largest
    1/(1-p) over its percentiles below 1 (p = 1 is the max, at infinity).
    ``max(1/(1-p))``, not ``1/(1-p).max()``: the latter is 1/(1 - min p),
    which stopped the axis at p50."""
    below = percentiles[percentiles < 1.0]
    return float((1.0 / (1.0 - below)).max()) if below.size else 1.0


def tail_ticks(reached: float) -> list[float]:
    """Percentile ticks from p50 to at least p99.9, further when the data
    reach further (p99.99 for a run with tens of thousands of requests)."""
    last = next((p for p in PERCENTILE_TICKS if 1 / (1 - p) >= reached), PERCENTILE_TICKS[-1])
    last = max(last, 0.999)
    return [p for p in PERCENTILE_TICKS if p <= last]


def distribution_chart(run: RunData, name: str = "latency_distribution") -> Chart:
    """Latency by percentile per step (HdrHistogram's classic plot): the
    x axis is 1/(1-p) on a log scale, so the tail gets the room.  The axis
    runs to p99.9 at least (further when the data do); each line ends at
    the step's maximum, drawn as a dot at the right edge (p = 100 %)."""
    title = "Latency by percentile per protocol step (whole run, exact)"
    groups = grouped([n for n, d in run.distributions.items() if d.count > 0])
    if not groups:
        return missing(name, title, "No latency histograms in this run (histograms/*.hgrm absent or empty).")
    figure, axes = _panels(len(groups))
    reached = max(percentile_reach(d.percentiles) for d in run.distributions.values() if d.count > 0)
    ticks = tail_ticks(reached)
    edge = 1 / (1 - ticks[-1])
    for ax, (group, members) in zip(axes, groups, strict=True):
        for i, member in enumerate(members):
            dist = run.distributions[member]
            keep = dist.percentiles < 1.0
            x = np.append(1.0 / (1.0 - dist.percentiles[keep]), edge)
            peak = float(dist.values_ms.max())
            y = np.append(dist.values_ms[keep], peak)
            color = f"C{i % 10}"
            ax.plot(x, y, label=f"{member} (n={dist.count})", drawstyle="steps-post", color=color)
            ax.plot([edge], [peak], marker="o", linestyle="none", color=color, label="_max")
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_axis(ax.yaxis)
        ax.set_xticks([1 / (1 - p) for p in ticks], [f"{p * 100:g}%" for p in ticks])
        ax.set_xlim(1.0, edge * 1.15)  # room for the max dots
        ax.xaxis.set_minor_locator(NullLocator())  # the percentile ticks are the scale; minor ones cost time
        ax.set_ylabel("latency (ms)")
        ax.set_title(group, fontsize=10, loc="left")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("percentile (dot at the right edge: the maximum)")
    return Chart(
        name,
        title,
        "Each line is one step; read across to a percentile (50 %, 99 %, 99.9 % ...) and up to the latency "
        "at most that share of successful requests stayed under. A line that bends up sharply at the right "
        "is a tail: a few requests were much slower than the typical one. The dot at the right edge is the "
        "slowest request; with fewer requests than a percentile needs (1,000 for 99.9 %), the line goes "
        "flat to that dot.",
        figure,
    )


def _plot_series(ax, series: Series, label: str, color=None) -> bool:
    """The four percentile lines of one series; seconds without requests in
    Locust's window (no rate, max 0) and gaps in the history are left blank
    rather than bridged by a straight line."""
    idle = (np.nan_to_num(series.rps) == 0) & (np.nan_to_num(series.p100) == 0)
    drawn = False
    for key, tag, style in TIME_PERCENTILES:
        values = np.where(idle, np.nan, getattr(series, key))
        if np.all(np.isnan(values)):
            continue
        t, v = gapped(series.t, values)
        ax.plot(t, v, linestyle=style, color=color, label=f"{label} {tag}")
        drawn = True
    return drawn


def _legend(ax, steps: list[tuple[str, str]]) -> None:
    """One legend entry per step (colour) plus one per percentile (style),
    instead of steps x percentiles entries."""
    handles = [Line2D([], [], color=color, label=step) for step, color in steps]
    handles += [
        Line2D([], [], color="grey", linestyle=style, label=tag) for _k, tag, style in TIME_PERCENTILES
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def over_time_chart(run: RunData, name: str = "latency_over_time") -> Chart:
    """p50/p95/p99/max over time, one panel per step group when Locust wrote
    per-name history (``--csv-full-history``), else the aggregate."""
    title = "Latency percentiles over time"
    history = run.history
    if not history:
        return missing(name, title, "No Locust history (locust_stats_history.csv absent or empty).")
    per_step = grouped([n for n in history if n != "Aggregated"])
    how = (
        "Locust's per-second snapshot of its recent response times (rounded to ~2 digits): line style = "
        "percentile (dotted p50, solid p95, dashed p99, dash-dot max). A rising p95/p99 while the load "
        "is flat means the server is falling behind."
    )
    if per_step:
        how += (
            " When several client cells issue a step, the rates add up and each percentile is the worst "
            "cell's (Locust keeps them per cell)."
        )
        figure, axes = _panels(len(per_step))
        for ax, (group, members) in zip(axes, per_step, strict=True):
            steps = [(member, f"C{i % 10}") for i, member in enumerate(members)]
            for member, color in steps:
                _plot_series(ax, history[member], member, color)
            ax.set_title(group, fontsize=10, loc="left")
            ax.set_ylabel("ms")
            ax.grid(True, alpha=0.3)
            _legend(ax, steps)
        axes[-1].set_xlabel("seconds since start")
        return Chart(name, title, how, figure)
    aggregated = history.get("Aggregated")
    if aggregated is None or all(np.all(np.isnan(getattr(aggregated, k))) for k, *_ in TIME_PERCENTILES):
        return missing(name, title, "Locust's history has no latency samples.")
    figure, axes = _panels(1)
    _plot_series(axes[0], aggregated, "all requests", "C0")
    axes[0].set_ylabel("ms")
    axes[0].set_xlabel("seconds since start")
    axes[0].grid(True, alpha=0.3)
    _legend(axes[0], [("all requests", "C0")])
    return Chart(
        name,
        title + " (all steps together)",
        how + " Locust wrote only the aggregate history for this run (per-step history needs Locust's "
        "--csv-full-history); the exact per-step figures are in the distribution chart and the table.",
        figure,
    )
