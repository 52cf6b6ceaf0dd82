"""Capacity scenario files (``scenarios/capacity-*.toml``) -> a grid of cells.

A capacity scenario names axes (backend, TLS mode, mailbox size, poll
interval, client behaviour, users) and the fixed settings of every cell
(run time, message size mix, server idle timeout, SLO, the guidance budget).
The grid is the Cartesian product of the axes; each :class:`Cell` becomes one
ordinary load scenario (:func:`cell_scenario_toml`) run by
:mod:`load.capacity.sweep`.  Errors raise :class:`GridError` naming the file
and the key, like :class:`load.scenario.ScenarioError`.
"""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from load.scenario import ScenarioError, SizeDistribution, find_scenario, parse_sizes

MB = 1_000_000

_TOP_KEYS = {
    "name", "description", "seed", "cell_time", "quick_cell_time", "time_compression", "spawn_rate",
    "idle_timeout", "client_timeout", "message_sizes", "delete_per_poll", "refill", "hold_out", "grid",
    "slo", "guidance", "load_series", "era",
}  # fmt: skip
_GRID_KEYS = {"backend", "tls", "mailbox_mb", "poll_interval", "behaviour", "users"}
_SLO_KEYS = {"p95_ms", "error_rate"}
_GUIDANCE_KEYS = {
    "accounts", "cpu_budget_cores", "download_per_poll_kb", "tiers_min", "sizes_mb", "intervals_min",
    "connection_tls", "behaviour", "backend",
}  # fmt: skip


class GridError(ScenarioError):
    """The capacity scenario is wrong; the message names the file and key."""


@dataclass(frozen=True)
class Cell:
    """One point of the grid: one load run against a fresh embedded server."""

    backend: str
    tls: str
    mailbox_mb: float
    poll_interval: float  # simulated seconds
    behaviour: str
    users: int

    @property
    def id(self) -> str:
        mb = f"{self.mailbox_mb:g}".replace(".", "p")
        return f"{self.backend}-{self.tls}-{mb}mb-{self.behaviour}-i{self.poll_interval:g}-u{self.users}"


@dataclass(frozen=True)
class GuidanceSettings:
    """Inputs of the derived table (see load.capacity.guidance)."""

    accounts: int = 1000
    cpu_budget_cores: float = 1.0
    download_per_poll_kb: float = 100.0  # new mail fetched per poll in steady state
    tiers_min: tuple[float, float] = (5.0, 15.0)  # the provider's two intervals (short, long)
    sizes_mb: tuple[float, ...] = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200)
    intervals_min: tuple[float, ...] = (1, 2, 5, 10, 15, 30, 60)
    connection_tls: str = "implicit"  # which measured TLS mode stands for "POP over SSL"
    behaviour: str = "keep"  # the client behaviour the guidance is for
    backend: str = "auto"  # the table's main backend; auto: mbox if measured (CentOS 5 spools), else maildir


@dataclass(frozen=True)
class Grid:
    name: str
    description: str
    path: Path
    seed: int
    cell_time: float
    quick_cell_time: float
    time_compression: float
    spawn_rate: float
    idle_timeout: float
    client_timeout: float
    message_sizes: SizeDistribution
    delete_per_poll: int
    refill: str  # delete cells: "local" (written into the store by the sweep) or "smtp" (Locust users)
    hold_out: str  # a cell id or "auto"
    cells: tuple[Cell, ...]
    slo_p95_ms: float
    slo_error_rate: float
    guidance: GuidanceSettings = field(default_factory=GuidanceSettings)
    era: Any = None  # load.capacity.era.EraProfile: the [era] table, validated by era.py

    def real_interval(self, cell: Cell) -> float:
        return cell.poll_interval / self.time_compression

    def messages(self, cell: Cell) -> int:
        """Messages per mailbox that make ``mailbox_mb`` with the size mix."""
        return max(1, round(cell.mailbox_mb * MB / self.message_sizes.mean))


def _list(raw: dict, key: str, where: str, kind: type, allowed: tuple | None = None) -> tuple:
    value = raw.get(key)
    if value is None:
        raise GridError(f"{where}.{key}: missing (a list of values)")
    values = value if isinstance(value, list) else [value]
    out = []
    for v in values:
        if kind is float and isinstance(v, int | float) and not isinstance(v, bool):
            v = float(v)
        if not isinstance(v, kind) or (kind is not str and v <= 0):
            raise GridError(f"{where}.{key}: expected positive {kind.__name__} values, got {v!r}")
        if allowed and v not in allowed:
            raise GridError(f"{where}.{key}: {v!r} is not one of {', '.join(allowed)}")
        out.append(v)
    if not out:
        raise GridError(f"{where}.{key}: empty list")
    return tuple(out)


def _number(raw: dict, key: str, where: str, default: float, minimum: float = 0.0) -> float:
    value = raw.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= minimum:
        raise GridError(f"{where}.{key}: expected a number > {minimum:g}, got {value!r}")
    return float(value)


def _unknown(raw: dict, allowed: set[str], where: str) -> None:
    unknown = set(raw) - allowed
    if unknown:
        raise GridError(f"{where}: unknown keys {sorted(unknown)}")


def _guidance(raw: dict, where: str) -> GuidanceSettings:
    _unknown(raw, _GUIDANCE_KEYS, where)
    d = GuidanceSettings()
    tiers = raw.get("tiers_min", list(d.tiers_min))
    if not (isinstance(tiers, list) and len(tiers) == 2 and all(isinstance(t, int | float) for t in tiers)):
        raise GridError(f"{where}.tiers_min: expected [short, long] minutes, got {tiers!r}")
    if not 0 < tiers[0] < tiers[1]:
        raise GridError(f"{where}.tiers_min: need 0 < short < long, got {tiers!r}")
    tls = raw.get("connection_tls", d.connection_tls)
    if tls not in ("stls", "implicit"):
        raise GridError(f"{where}.connection_tls: stls or implicit, not {tls!r}")
    behaviour = raw.get("behaviour", d.behaviour)
    if behaviour not in ("keep", "delete"):
        raise GridError(f"{where}.behaviour: keep or delete, not {behaviour!r}")
    backend = raw.get("backend", d.backend)
    if backend not in ("auto", "maildir", "mbox"):
        raise GridError(f"{where}.backend: auto, maildir or mbox, not {backend!r}")
    return GuidanceSettings(
        backend=str(backend),
        accounts=int(_number(raw, "accounts", where, d.accounts)),
        cpu_budget_cores=_number(raw, "cpu_budget_cores", where, d.cpu_budget_cores),
        download_per_poll_kb=float(raw.get("download_per_poll_kb", d.download_per_poll_kb)),
        tiers_min=(float(tiers[0]), float(tiers[1])),
        sizes_mb=tuple(sorted(_list(raw, "sizes_mb", where, float))) if "sizes_mb" in raw else d.sizes_mb,
        intervals_min=tuple(sorted(_list(raw, "intervals_min", where, float)))
        if "intervals_min" in raw
        else d.intervals_min,
        connection_tls=str(tls),
        behaviour=str(behaviour),
    )


def _refill(value: object, where: str) -> str:
    if value not in ("local", "smtp"):
        raise GridError(f"{where}: refill: local or smtp, not {value!r}")
    return str(value)


def _sizes(value: object, where: str) -> SizeDistribution:
    try:
        return parse_sizes(value, where)
    except ScenarioError as error:
        raise GridError(str(error)) from None


def _cells(axes: dict, where: str, defaults: dict | None) -> tuple[Cell, ...]:
    """The product of one table's axes; an axis missing here comes from
    ``defaults`` (the main grid) when given."""
    merged = {**(defaults or {}), **axes}
    backends = ("maildir",)
    if "backend" in merged:
        backends = _list(merged, "backend", where, str, ("maildir", "mbox"))
    tls = _list(merged, "tls", where, str, ("none", "stls", "implicit"))
    sizes = _list(merged, "mailbox_mb", where, float)
    intervals = _list(merged, "poll_interval", where, float)
    behaviours = _list(merged, "behaviour", where, str, ("keep", "delete"))
    users = _list(merged, "users", where, int) if "users" in merged else (4,)
    return tuple(
        Cell(b, t, s, i, h, u)
        for b, t, s, h, i, u in itertools.product(backends, tls, sizes, behaviours, intervals, users)
    )


def load_era(raw: object, where: str) -> Any:
    """``[era]`` is validated by load.capacity.era (its own strict schema)."""
    from .era import load_era as load

    return load(raw, where)


def load_grid(source: str | Path) -> Grid:
    """Read a capacity scenario by path or name (``capacity-quick``).

    Raises:
        GridError: no such file, bad TOML, or a bad key or value (named).
    """
    try:
        path = find_scenario(source)
    except ScenarioError as error:
        raise GridError(str(error)) from None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise GridError(f"{path}: {error}") from None
    where = path.name
    _unknown(raw, _TOP_KEYS, where)
    axes = raw.get("grid")
    if not isinstance(axes, dict):
        raise GridError(f"{where}: no [grid] table (the axes of the sweep)")
    gw = f"{where}: grid"
    _unknown(axes, _GRID_KEYS, gw)
    cells = _cells(axes, gw, None)
    series = raw.get("load_series")
    if series is not None:
        # A second, smaller grid merged into the first: typically one shape at
        # rising user counts, so even a quick run has a latency-vs-load curve
        # (and a knee to look for).  Axes it leaves out are the main grid's.
        if not isinstance(series, dict):
            raise GridError(f"{where}: load_series must be a table like [grid]")
        _unknown(series, _GRID_KEYS, f"{where}: load_series")
        known = {c.id for c in cells}
        cells += tuple(c for c in _cells(series, f"{where}: load_series", axes) if c.id not in known)
    slo = raw.get("slo", {})
    _unknown(slo, _SLO_KEYS, f"{where}: slo")
    hold_out = str(raw.get("hold_out", "auto"))
    if hold_out != "auto" and hold_out not in {c.id for c in cells}:
        raise GridError(f'{where}: hold_out: {hold_out!r} is not a cell of the grid (or use "auto")')
    if len(cells) < 2:
        raise GridError(f"{where}: grid: at least 2 cells are needed (one is held out of the fit)")
    grid = Grid(
        name=str(raw.get("name", path.stem)),
        description=str(raw.get("description", "")),
        path=path,
        seed=int(raw.get("seed", 1)),
        cell_time=_number(raw, "cell_time", where, 30.0),
        quick_cell_time=_number(raw, "quick_cell_time", where, 8.0),
        time_compression=_number(raw, "time_compression", where, 1.0),
        spawn_rate=_number(raw, "spawn_rate", where, 50.0),
        idle_timeout=_number(raw, "idle_timeout", where, 120.0),
        client_timeout=_number(raw, "client_timeout", where, 60.0),
        message_sizes=_sizes(raw.get("message_sizes", "specmail2001"), f"{where}: message_sizes"),
        delete_per_poll=int(_number(raw, "delete_per_poll", where, 2)),
        refill=_refill(raw.get("refill", "local"), where),
        hold_out=hold_out,
        cells=cells,
        slo_p95_ms=_number(slo, "p95_ms", f"{where}: slo", 5000.0),
        slo_error_rate=float(slo.get("error_rate", 0.01)),
        guidance=_guidance(raw.get("guidance", {}), f"{where}: guidance"),
        era=load_era(raw.get("era"), where),
    )
    for cell in cells:
        if grid.real_interval(cell) > grid.cell_time:
            raise GridError(
                f"{where}: cell_time {grid.cell_time:g} s is shorter than one real poll interval "
                f"({cell.poll_interval:g} / time_compression {grid.time_compression:g}); cells would see "
                "no full poll cycle"
            )
    return grid


def _toml(value: object) -> str:
    """TOML for the scalar/list values used here (JSON spells them the same)."""
    return json.dumps(value)


def cell_scenario_toml(
    grid: Grid, cell: Cell, run_time: float, client: str = "cap", refill: str | None = None
) -> str:
    """The load scenario of one cell, as a scenarios/*.toml text.

    Keep cells: the client has seen the mailbox already (``initial_sync``),
    so every poll is STAT + UIDL over the full mailbox and nothing to fetch:
    the mailbox stays at its size.  Delete cells: each poll fetches and
    deletes the ``delete_per_poll`` oldest messages, and the mailboxes are
    refilled at the same rate (users x delete_per_poll per poll interval), so
    the size stays steady while DELE/QUIT work is exercised.  With
    ``refill = "local"`` the sweep writes the new mail into the store itself
    (like a local delivery agent: no server CPU); with ``"smtp"`` Locust
    delivery users send it through the server's SMTP listener, whose CPU
    then counts in the cell.  ``client`` names the client class (accounts
    ``<client><nnnn>``) and ``refill`` overrides the grid's: an external
    target gets per-size accounts and SMTP refill (load/capacity/external.py).
    """
    refill = refill or grid.refill
    sizes = [[s, w] for s, w in zip(grid.message_sizes.sizes, grid.message_sizes.weights, strict=True)]
    lines = [
        f"# generated by pop3suite capacity from {grid.path.name}: cell {cell.id}",
        f"name = {_toml(grid.name + '-' + cell.id)}",
        f"description = {_toml('capacity cell ' + cell.id)}",
        f"run_time = {run_time:g}",
        f"time_compression = {grid.time_compression:g}",
        f"seed = {grid.seed}",
        f"spawn_rate = {grid.spawn_rate:g}",
        f"idle_timeout = {grid.idle_timeout:g}",
        f"storage = {_toml(cell.backend)}",
        "",
        "[prefill]",
        f"count = {grid.messages(cell)}",
        f"sizes = {_toml(sizes)}",
        "",
        "[[clients]]",
        f"name = {_toml(client)}",
        f"users = {cell.users}",
        f"tls = {_toml(cell.tls)}",
        'auth = "user"',
        f"behaviour = {_toml(cell.behaviour)}",
        f"poll_interval = {cell.poll_interval:g}",
        f"timeout = {grid.client_timeout:g}",
    ]
    if cell.behaviour == "keep":
        lines.append("initial_sync = true")
    elif refill == "local":
        lines.append(f"max_retr_per_poll = {grid.delete_per_poll}")
    else:
        rate = cell.users * grid.delete_per_poll / cell.poll_interval  # messages per simulated second
        lines += [f"max_retr_per_poll = {grid.delete_per_poll}", "", "[delivery]", f"rate = {rate:.6g}"]
        lines += [f"users = {max(1, min(4, math.ceil(cell.users / 4)))}", f"sizes = {_toml(sizes)}"]
        lines.append(f"to = {_toml([client])}")
    lines += ["", "[slo]", f"error_rate = {grid.slo_error_rate:g}", "min_sessions = 1", ""]
    lines += ["[slo.steps]", f'"SESSION" = {{ p95_ms = {grid.slo_p95_ms:g} }}', ""]
    return "\n".join(lines)
