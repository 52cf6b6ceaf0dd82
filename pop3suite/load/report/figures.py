"""Shared plumbing of the report's charts: a figure without pyplot, a chart
record (drawn, or left out with a note) and the step grouping.

Charts use ``matplotlib.figure.Figure`` directly (Agg canvas), never
``pyplot``: no global figure registry to leak between charts, no display
needed, safe to call from tests and the demo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

DPI = 100

# Step groups: one panel each, in protocol order.
STEP_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("connection", ("CONNECT", "TLS", "AUTH")),
    ("mailbox commands", ("STAT", "UIDL", "LIST", "TOP", "DELE", "QUIT")),
    ("retrieval (RETR by size class)", ("RETR",)),
    ("whole session", ("SESSION", "SESSION(CO)")),
    ("SMTP delivery", ("DELIVER", "SMTP")),
)


@dataclass
class Chart:
    """One chart of the report: ``figure`` is None when its data are absent,
    and ``note`` then says why (the report prints the note instead)."""

    name: str
    title: str
    how_to_read: str
    figure: Figure | None = None
    note: str | None = None
    details: dict = field(default_factory=dict)  # numbers the chart found (knees ...), for the text

    @property
    def drawn(self) -> bool:
        return self.figure is not None


def missing(name: str, title: str, note: str) -> Chart:
    """A chart left out because its data are absent."""
    return Chart(name=name, title=title, how_to_read="", figure=None, note=note)


def new_figure(width: float = 9.0, height: float = 4.0) -> Figure:
    """A figure bound to an Agg canvas, not registered with pyplot."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def gapped(t: np.ndarray, values: np.ndarray, factor: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """``(t, values)`` with a NaN inserted where the time step is more than
    ``factor`` x the median step, so a line breaks at a gap in the samples
    (Locust skips seconds under load and writes a last row at shutdown)."""
    t, values = np.asarray(t, float), np.asarray(values, float)
    if t.size < 3:
        return t, values
    steps = np.diff(t)
    cut = np.flatnonzero(steps > factor * max(np.median(steps), 1e-9)) + 1
    return np.insert(t, cut, np.nan), np.insert(values, cut, np.nan)


def plain_log_axis(axis) -> None:
    """Label a log axis 0.2, 0.5, 1, 2, 5, 10 ... instead of 5x10^-1, and skip
    minor ticks (they are most of the rendering time of a log axis)."""
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    axis.set_minor_locator(NullLocator())


def save_png(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI)
    return path


def _position(name: str) -> tuple[str, int] | None:
    for group, prefixes in STEP_GROUPS:
        for index, prefix in enumerate(prefixes):
            if name == prefix or (name.startswith(prefix) and not name[len(prefix) :][:1].isalnum()):
                return group, index
    return None


def group_of(name: str) -> str | None:
    """The step group a request name belongs to (``RETR[1MB]`` -> retrieval);
    None for internal names such as ``~late_start``."""
    position = _position(name)
    return position[0] if position else None


def grouped(names: list[str]) -> list[tuple[str, list[str]]]:
    """``names`` split into the non-empty step groups, each in protocol order
    (CONNECT, TLS, AUTH ...), groups in protocol order."""
    out = []
    for group, _prefixes in STEP_GROUPS:
        members = [n for n in names if group_of(n) == group]
        members.sort(key=lambda n: (_position(n)[1], _size_rank(n), n))  # type: ignore[index]
        if members:
            out.append((group, members))
    return out


_SIZE_ORDER = ("[<=10KB]", "[100KB]", "[1MB]", "[>1MB]")


def _size_rank(name: str) -> int:
    for rank, suffix in enumerate(_SIZE_ORDER):
        if name.endswith(suffix):
            return rank
    return -1
