"""Reading what a load run or a capacity run left on disk.

A load run directory (``pop3suite load --report DIR``) has ``run.json`` and,
when the run finished, ``steps.json``, ``verdicts.json``, ``ledger.json``,
``cells.json``, ``monitor.csv``, ``histograms/*.hgrm`` and Locust's CSVs.
A capacity directory has ``capacity.json`` (+ ``model.json``,
``guidance.json``) and one load run directory per cell.  Every file but the
marker is optional here: the report says what is missing rather than fail,
because a crashed or interrupted run is exactly when someone reads it.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class ReportInputError(ValueError):
    """A directory that is neither a load run nor a capacity run, or a
    marker file that cannot be read.  The message names the path."""


def _json(path: Path) -> dict | list | None:
    """A JSON file's content, None when absent; a clear error when corrupt."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportInputError(f"{path}: not readable JSON ({error})") from error


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan  # Locust writes "N/A" before the first request


@dataclass
class Series:
    """One request name's rows of ``locust_stats_history.csv``."""

    t: np.ndarray  # seconds since the first row
    users: np.ndarray
    rps: np.ndarray
    fps: np.ndarray
    p50: np.ndarray
    p95: np.ndarray
    p99: np.ndarray
    p100: np.ndarray
    total_requests: np.ndarray
    total_failures: np.ndarray


HISTORY_COLUMNS = {
    "users": "User Count",
    "rps": "Requests/s",
    "fps": "Failures/s",
    "p50": "50%",
    "p95": "95%",
    "p99": "99%",
    "p100": "100%",
    "total_requests": "Total Request Count",
    "total_failures": "Total Failure Count",
}


SUMMED = ("rps", "fps", "total_requests", "total_failures")


def read_history(path: Path) -> dict[str, Series]:
    """Locust's per-second history: ``{"Aggregated": Series, name: Series}``
    (names other than Aggregated appear only with ``--csv-full-history``).

    Locust keys its stats by (type, name) and the POP3 users make the type
    ``POP3:<cell>``, so one step name has a row per cell each second.  They
    are merged per second: rates and counts add up; a percentile cannot be
    merged exactly, so the worst cell's value is kept (an upper bound)."""
    if not path.is_file():
        return {}
    rows: dict[str, dict[float, list[dict[str, str]]]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            name = row.get("Name") or "Aggregated"
            rows.setdefault(name, {}).setdefault(_number(row.get("Timestamp", "")), []).append(row)
    if not rows:
        return {}
    start = min(t for by_time in rows.values() for t in by_time)
    out = {}
    for name, by_time in rows.items():
        times = sorted(by_time)
        columns = {}
        for key, col in HISTORY_COLUMNS.items():
            merged = []
            for t in times:
                values = np.array([_number(r.get(col, "")) for r in by_time[t]])
                if np.isnan(values).all():
                    merged.append(math.nan)
                elif key in SUMMED:
                    merged.append(float(np.nansum(values)))
                else:
                    merged.append(float(np.nanmax(values)))
            columns[key] = np.array(merged)
        out[name] = Series(t=np.array(times) - start, **columns)
    return out


@dataclass
class Distribution:
    """A step's latency distribution from its ``.hgrm`` file (exact
    HdrHistogram, successes only): value (ms) at each percentile (0..1)."""

    percentiles: np.ndarray
    values_ms: np.ndarray
    count: int


def read_hgrm(path: Path) -> Distribution | None:
    """Parse HdrHistogram's text percentile distribution (values in ms)."""
    percentiles, values, count = [], [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) < 3 or line.lstrip().startswith("#") or parts[0] == "Value":
            continue
        try:
            values.append(float(parts[0]))
            percentiles.append(float(parts[1]))
            count = int(float(parts[2]))
        except ValueError:
            continue
    if not values:
        return None
    return Distribution(np.array(percentiles), np.array(values), count)


def hgrm_name(name: str) -> str:
    """The file stem locustfile.py gives a request name's histogram."""
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def read_monitor(path: Path) -> dict[str, np.ndarray] | None:
    """``monitor.csv`` as columns (t, cpu_percent, rss_bytes, ...)."""
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return None
    return {key: np.array([_number(r[key]) for r in rows]) for key in rows[0]}


def read_failures(path: Path) -> list[dict[str, str]]:
    """``locust_failures.csv`` rows (Method, Name, Error, Occurrences ...)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@dataclass
class RunData:
    """Everything a load run directory holds (absent files are empty/None)."""

    path: Path
    run: dict
    steps: dict = field(default_factory=dict)
    cells: dict = field(default_factory=dict)
    verdicts: dict | None = None
    ledger: dict | None = None
    monitor_summary: dict | None = None
    monitor: dict[str, np.ndarray] | None = None
    history: dict[str, Series] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    distributions: dict[str, Distribution] = field(default_factory=dict)

    @property
    def label(self) -> str:
        scenario = (self.verdicts or {}).get("scenario") or self.run.get("scenario")
        if isinstance(scenario, dict):
            scenario = scenario.get("name")
        return f"{scenario} ({self.path.name})" if scenario else self.path.name


def read_run(path: Path) -> RunData:
    """A load run directory; ``run.json`` must exist."""
    run = _json(path / "run.json")
    if not isinstance(run, dict):
        raise ReportInputError(f"{path}: not a load run directory (no run.json)")
    data = RunData(path=path, run=run)
    data.steps = _json(path / "steps.json") or {}
    data.cells = _json(path / "cells.json") or {}
    data.verdicts = _json(path / "verdicts.json")  # type: ignore[assignment]
    data.ledger = _json(path / "ledger.json")  # type: ignore[assignment]
    data.monitor_summary = _json(path / "monitor.json")  # type: ignore[assignment]
    data.monitor = read_monitor(path / "monitor.csv")
    data.history = read_history(path / "locust_stats_history.csv")
    data.failures = read_failures(path / "locust_failures.csv")
    for name in data.steps:
        hgrm = path / "histograms" / f"{hgrm_name(name)}.hgrm"
        if hgrm.is_file() and (dist := read_hgrm(hgrm)) is not None:
            data.distributions[name] = dist
    return data


@dataclass
class CapacityData:
    """A capacity directory: the cells, and the model and guidance if fitted."""

    path: Path
    capacity: dict
    model: dict | None = None
    guidance: dict | None = None

    @property
    def cells(self) -> list[dict]:
        return list(self.capacity.get("cells") or [])

    @property
    def label(self) -> str:
        name = (self.capacity.get("scenario") or {}).get("name")
        return f"{name} ({self.path.name})" if name else self.path.name


def read_capacity(path: Path) -> CapacityData:
    """A capacity directory; ``capacity.json`` must exist and be a capacity
    document (``"kind": "capacity"``)."""
    capacity = _json(path / "capacity.json")
    if not isinstance(capacity, dict) or capacity.get("kind", "capacity") != "capacity":
        raise ReportInputError(f"{path}: capacity.json is not a capacity document")
    if not isinstance(capacity.get("cells", []), list):
        raise ReportInputError(f"{path}: capacity.json: 'cells' is not a list")
    return CapacityData(
        path=path,
        capacity=capacity,
        model=_json(path / "model.json"),  # type: ignore[arg-type]
        guidance=_json(path / "guidance.json"),  # type: ignore[arg-type]
    )


def kind_of(path: Path) -> str:
    """``"capacity"`` or ``"load"``; a clear error naming ``path`` otherwise."""
    if not path.is_dir():
        raise ReportInputError(f"{path}: no such directory")
    if (path / "capacity.json").is_file():
        return "capacity"
    if (path / "run.json").is_file():
        return "load"
    raise ReportInputError(f"{path}: neither a load run (no run.json) nor a capacity run (no capacity.json)")
