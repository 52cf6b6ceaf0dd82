"""Capacity-run charts: server CPU per poll vs mailbox size (TLS vs plain,
mbox vs Maildir), and the server-load heatmap over mailbox size x poll
interval with the derived and the provider's guidance boundaries."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from matplotlib.patches import Rectangle

from .figures import Chart, missing, new_figure, plain_log_axis
from .inputs import CapacityData

MB = 1_000_000
TLS_LABEL = {"none": "plain", "stls": "TLS (STLS)", "implicit": "TLS (implicit, 995)"}
TLS_COLOR = {"none": "C0", "stls": "C3", "implicit": "C1"}
BACKEND_STYLE = {"maildir": ("o", "-"), "mbox": ("s", "--")}


def _size_mb(params: dict) -> float | None:
    """The cell's mailbox size in MB: the grid's nominal size when given (so
    cells of one size line up), else the bytes actually scanned."""
    if params.get("mailbox_mb") is not None:
        return float(params["mailbox_mb"])
    size = params.get("mailbox_bytes")
    return size / MB if size is not None else None


def cpu_series(
    data: CapacityData,
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per (backend, tls): sizes (MB) and mean CPU per poll (ms) at each
    size, plus every cell's raw (size, cpu) for the scatter."""
    raw: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for cell in data.cells:
        params, measured = cell.get("params") or {}, cell.get("measured") or {}
        size, cpu = _size_mb(params), measured.get("cpu_per_poll_s")
        if size is None or cpu is None:
            continue
        raw[(str(params.get("backend", "?")), str(params.get("tls", "?")))].append((size, cpu * 1000))
    out = {}
    for key, pairs in raw.items():
        xs = np.array([p[0] for p in pairs])
        ys = np.array([p[1] for p in pairs])
        sizes = np.unique(xs)
        means = np.array([ys[xs == s].mean() for s in sizes])
        out[key] = (sizes, means, xs, ys)
    return out


def cpu_per_poll_chart(data: CapacityData, name: str = "cpu_per_poll") -> Chart:
    title = "Server CPU per poll vs mailbox size"
    series = cpu_series(data)
    if not series:
        return missing(name, title, "No capacity cells with mailbox_bytes and cpu_per_poll_s.")
    figure = new_figure(8.0, 4.8)
    ax = figure.subplots()
    for (backend, tls), (sizes, means, xs, ys) in sorted(series.items()):
        marker, style = BACKEND_STYLE.get(backend, ("^", "-."))
        color = TLS_COLOR.get(tls, "C7")
        ax.scatter(xs, ys, color=color, marker=marker, alpha=0.35, s=18)
        ax.plot(
            sizes,
            means,
            color=color,
            marker=marker,
            linestyle=style,
            label=f"{backend}, {TLS_LABEL.get(tls, tls)}",
        )
    all_sizes = np.concatenate([s[0] for s in series.values()])
    positive = all_sizes[all_sizes > 0]
    if positive.size and positive.max() / positive.min() > 20:
        ax.set_xscale("log")
        plain_log_axis(ax.xaxis)
    ax.set_xlabel("mailbox size (MB)")
    ax.set_ylabel("server CPU per poll (ms)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return Chart(
        name,
        title,
        "CPU seconds the server spent per poll (monitor CPU / polls), in ms, against the mailbox size. "
        "Colour = connection (plain vs TLS), marker and line = store (Maildir solid circles, "
        "mbox dashed squares); "
        "faint points are single cells, the line joins their mean per size. A steeper line is a store or "
        "connection whose cost grows faster with mailbox size.",
        figure,
    )


def _index_coords(values: list[float], axis: list[float]) -> np.ndarray:
    """Map data values onto the heatmap's cell-index axis (linear between
    the axis's own values, clamped to the outer cell edges)."""
    return np.interp(values, axis, np.arange(len(axis)), left=-0.5, right=len(axis) - 0.5)


def provider_boundaries(rows: list[dict], connection: str, sizes: list[float]) -> list[tuple[str, list]]:
    """The provider's table as step lines (size MB -> minimum interval min)
    for one connection, one per named policy (the SSL page has two)."""
    out = []
    for row in rows:
        if row.get("connection") != connection or row.get("above_mb") is None:
            continue
        above, keep_under = float(row["above_mb"]), float(row.get("keep_under_mb") or max(sizes))
        low, high = float(row.get("poll_min") or 0), float(row.get("poll_min_above") or 0)
        points = [(min(sizes), low), (above, low), (above, high), (keep_under, high)]
        out.append((str(row.get("policy") or "provider"), points))
    return out


def _panels(guidance: dict) -> list[tuple[str, str, np.ndarray, list]]:
    """(backend, connection, grid, derived boundary) per heatmap panel: every
    backend of ``heatmap_by_backend`` when present, else ``heatmap``."""
    by_backend = guidance.get("heatmap_by_backend") or {}
    boundaries = guidance.get("boundary_by_backend") or {}
    if not by_backend:
        backend = str(guidance.get("backend") or "")
        by_backend = {backend: (guidance.get("heatmap") or {}).get("load_cores") or {}}
        boundaries = {backend: guidance.get("boundary") or {}}
    return [
        (backend, connection, np.array(grid, float), (boundaries.get(backend) or {}).get(connection) or [])
        for backend in sorted(by_backend)
        for connection, grid in sorted(by_backend[backend].items(), reverse=True)
        if grid
    ]


def _annotate(ax, grid: np.ndarray, budget: float | None, vmax: float) -> None:
    """Each cell's load as text (dark on light cells, light on dark); cells
    over the CPU budget get a bold number and a red frame."""
    for (i, j), value in np.ndenumerate(grid):
        over = budget is not None and value > budget
        ink = "black" if value > 0.6 * vmax else "white"
        weight = "bold" if over else "normal"
        ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=7, color=ink, fontweight=weight)
        if over:
            ax.add_patch(
                Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, edgecolor="red", linewidth=1.2)
            )


def _boundaries(ax, guidance: dict, connection: str, derived: list, sizes: list, intervals: list) -> None:
    era = "era" in guidance  # an era run: the derived boundary is the era's (capacity/era_guidance.py)
    if derived:
        b_sizes = _index_coords([float(p[0]) for p in derived], sizes)
        b_intervals = _index_coords([float(p[1]) for p in derived], intervals)
        label = "era boundary (derived)" if era else "derived boundary"
        ax.plot(b_intervals, b_sizes, color="white", marker="o", linewidth=2.5, label=label)
    compared = guidance.get("boundaries_compared") or {}
    for key, color, marker, label in (
        ("modern", "cyan", "s", "modern boundary"),
        ("era_daemon", "magenta", "^", "era daemon stack boundary"),
    ):
        line = (compared.get(key) or {}).get(connection) or []
        if line:
            ax.plot(
                _index_coords([float(p[1]) for p in line], intervals),
                _index_coords([float(p[0]) for p in line], sizes),
                color=color,
                marker=marker,
                linestyle="--",
                linewidth=2,
                label=label,
            )
    styles = iter(("--", ":", "-."))
    for policy, points in provider_boundaries(guidance.get("provider") or [], connection, sizes):
        ax.plot(
            _index_coords([p[1] for p in points], intervals),
            _index_coords([p[0] for p in points], sizes),
            color="orange",
            linestyle=next(styles, "--"),
            linewidth=2,
            label=policy,
        )
    if ax.get_lines():
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, facecolor="0.75")


def heatmap_chart(data: CapacityData, name: str = "load_heatmap") -> Chart:
    title = "Server load over mailbox size x poll interval, with the guidance boundary"
    guidance = data.guidance or {}
    heatmap = guidance.get("heatmap") or {}
    sizes, intervals = heatmap.get("sizes_mb") or [], heatmap.get("intervals_min") or []
    panels = _panels(guidance)
    if not (sizes and intervals and panels):
        return missing(name, title, "No guidance heatmap (guidance.json absent or without 'heatmap').")
    for backend, connection, grid, _derived in panels:
        if grid.shape != (len(sizes), len(intervals)):
            return missing(
                name,
                title,
                f"guidance.json heatmap {backend} {connection} is {grid.shape}, "
                f"not sizes x intervals = {(len(sizes), len(intervals))}.",
            )
    budget = guidance.get("cpu_budget_cores")
    vmax = max(float(np.nanmax(grid)) for _b, _c, grid, _d in panels)
    columns = len({c for _b, c, _g, _d in panels})
    rows = -(-len(panels) // columns)
    figure = new_figure(5.0 * columns + 1.0, 4.4 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    image = None
    for ax, (backend, connection, grid, derived) in zip(axes, panels, strict=False):
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=vmax)
        _annotate(ax, grid, budget, vmax)
        ax.set_xticks(range(len(intervals)), [f"{v:g}" for v in intervals])
        ax.set_yticks(range(len(sizes)), [f"{v:g}" for v in sizes])
        ax.set_xlabel("poll interval (minutes)")
        ax.set_ylabel("mailbox size (MB)")
        ax.set_title(f"{backend + ', ' if backend else ''}{connection}: load in cores", fontsize=10)
        _boundaries(ax, guidance, connection, derived, sizes, intervals)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    figure.colorbar(image, ax=list(axes), label="server load (cores) for all accounts")
    how = (
        "Each cell is the modelled server load (CPU cores) if every account had that mailbox size and polled "
        "at that interval (one panel per store and connection). The white line is the derived boundary: the "
        "shortest safe poll interval per size (left of it is over budget); the orange lines are the "
        "provider's published table, one per named policy. Cells framed in red exceed the CPU budget."
    )
    if "era" in guidance:
        how += (
            " Era run: the white line is the era profile's boundary (its model scaled to the era CPU), "
            "the cyan line the modern reference server's (the terms the scenario cites), the magenta "
            "line the measured popa3d + stunnel stack's (benchmarks/bench_era_daemon.py)."
        )
    if budget is not None:
        how += f" Budget: {budget:g} cores for {guidance.get('accounts', '?')} accounts."
    return Chart(name, title, how, figure)
