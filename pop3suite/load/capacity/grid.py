"""Capacity scenario files (``pop3suite/scenarios/capacity-*.toml``) -> a grid of cells.

A capacity scenario names axes (backend, TLS mode, mailbox size, poll
interval, client behaviour, users) and the fixed settings of every cell
(run time, message size mix, server idle timeout, SLO, the guidance budget).
The grid is the Cartesian product of the axes; each :class:`Cell` becomes one
ordinary load scenario (:func:`cell_scenario_toml`) run by
:mod:`pop3suite.load.capacity.sweep`.  Errors raise :class:`GridError` naming the file
and the key, like :class:`pop3suite.load.scenario.ScenarioError`.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, field_validator

from pop3suite.inputs import InputError, StrictModel, display_path, load_toml
from pop3suite.load.scenario import ScenarioError, SizeDistribution, Sizes, find_scenario, specmail2001_sizes

MB = 1_000_000


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
    """Inputs of the derived table (see pop3suite.load.capacity.guidance)."""

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
    era: Any = None  # pop3suite.load.capacity.era.EraProfile: the [era] table, validated by era.py

    def real_interval(self, cell: Cell) -> float:
        return cell.poll_interval / self.time_compression

    def messages(self, cell: Cell) -> int:
        """Messages per mailbox that make ``mailbox_mb`` with the size mix."""
        return max(1, round(cell.mailbox_mb * MB / self.message_sizes.mean))


# ---------------------------------------------------------------- the file's schema
# Pydantic models of the TOML file (pop3suite.inputs: unknown keys and wrong
# types rejected at any depth, one line naming the file and key).

T = TypeVar("T")


def _as_list(value: object) -> object:
    """An axis may be one value or a list of values."""
    return value if isinstance(value, list) else [value]


Axis = Annotated[list[T], BeforeValidator(_as_list), Field(min_length=1)]
Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Tls = Literal["none", "stls", "implicit"]
Backend = Literal["maildir", "mbox"]
Behaviour = Literal["keep", "delete"]


class SeriesAxes(StrictModel):
    """``[load_series]``: a second grid; an axis left out is the main grid's."""

    backend: Axis[Backend] | None = None
    tls: Axis[Tls] | None = None
    mailbox_mb: Axis[Positive] | None = None
    poll_interval: Axis[Positive] | None = None
    behaviour: Axis[Behaviour] | None = None
    users: Axis[PositiveInt] | None = None


class GridAxes(SeriesAxes):
    """``[grid]``: the axes of the sweep (backend defaults to maildir, users to 4)."""

    tls: Axis[Tls]
    mailbox_mb: Axis[Positive]
    poll_interval: Axis[Positive]
    behaviour: Axis[Behaviour]


class GridSlo(StrictModel):
    p95_ms: Positive = 5000.0
    error_rate: float = Field(0.01, ge=0, le=1)


_GUIDANCE = GuidanceSettings()


class GuidanceSpec(StrictModel):
    accounts: PositiveInt = _GUIDANCE.accounts
    cpu_budget_cores: Positive = _GUIDANCE.cpu_budget_cores
    download_per_poll_kb: float = Field(_GUIDANCE.download_per_poll_kb, ge=0)
    tiers_min: list[Positive] = Field(list(_GUIDANCE.tiers_min), min_length=2, max_length=2)
    sizes_mb: Axis[Positive] = list(_GUIDANCE.sizes_mb)
    intervals_min: Axis[Positive] = list(_GUIDANCE.intervals_min)
    connection_tls: Literal["stls", "implicit"] = "implicit"
    behaviour: Behaviour = "keep"
    backend: Literal["auto", "maildir", "mbox"] = "auto"

    @field_validator("tiers_min")
    @classmethod
    def _tiers(cls, tiers: list[float]) -> list[float]:
        if not tiers[0] < tiers[1]:
            raise ValueError(f"need [short, long] minutes with short < long, got {tiers}")
        return tiers


class GridSpec(StrictModel):
    name: str | None = None
    description: str = ""
    seed: int = 1
    cell_time: Positive = 30.0
    quick_cell_time: Positive = 8.0
    time_compression: Positive = 1.0
    spawn_rate: Positive = 50.0
    idle_timeout: Positive = 120.0
    client_timeout: Positive = 60.0
    message_sizes: Sizes = Field(default_factory=specmail2001_sizes)
    delete_per_poll: PositiveInt = 2
    refill: Literal["local", "smtp"] = "local"
    hold_out: str = "auto"
    grid: GridAxes
    load_series: SeriesAxes | None = None
    slo: GridSlo = GridSlo()
    guidance: GuidanceSpec = GuidanceSpec()
    era: dict[str, Any] | None = None  # the era profile's table; validated by pop3suite/load/capacity/era.py


def _cells(axes: SeriesAxes, defaults: SeriesAxes | None = None) -> tuple[Cell, ...]:
    """The product of one table's axes; an axis missing here comes from
    ``defaults`` (the main grid) when given."""

    def axis(name: str, fallback: tuple) -> tuple:
        value = getattr(axes, name)
        if value is None and defaults is not None:
            value = getattr(defaults, name)
        return tuple(value) if value is not None else fallback

    backends = axis("backend", ("maildir",))
    tls, sizes = axis("tls", ()), axis("mailbox_mb", ())
    intervals, behaviours = axis("poll_interval", ()), axis("behaviour", ())
    users = axis("users", (4,))
    return tuple(
        Cell(b, t, float(s), float(i), h, u)
        for b, t, s, h, i, u in itertools.product(backends, tls, sizes, behaviours, intervals, users)
    )


def load_era(raw: object, where: str) -> Any:
    """``[era]`` is validated by pop3suite.load.capacity.era (its own strict schema)."""
    from .era import load_era as load

    return load(raw, where)


def load_grid(source: str | Path) -> Grid:
    """Read a capacity scenario by path or name (``capacity-quick``).

    Raises:
        GridError: no such file, bad TOML, or a bad key or value (one line
            naming the file and the key).
    """
    try:
        path = find_scenario(source)
        spec = load_toml(path, GridSpec)
    except (ScenarioError, InputError) as error:
        raise GridError(str(error)) from None
    where = display_path(path)
    cells = _cells(spec.grid)
    if spec.load_series is not None:
        # A second, smaller grid merged into the first: typically one shape at
        # rising user counts, so even a quick run has a latency-vs-load curve
        # (and a knee to look for).  Axes it leaves out are the main grid's.
        known = {c.id for c in cells}
        cells += tuple(c for c in _cells(spec.load_series, spec.grid) if c.id not in known)
    if spec.hold_out != "auto" and spec.hold_out not in {c.id for c in cells}:
        raise GridError(f'{where}: hold_out: {spec.hold_out!r} is not a cell of the grid (or use "auto")')
    if len(cells) < 2:
        raise GridError(f"{where}: grid: at least 2 cells are needed (one is held out of the fit)")
    g = spec.guidance
    grid = Grid(
        name=spec.name or path.stem,
        description=spec.description,
        path=path,
        seed=spec.seed,
        cell_time=float(spec.cell_time),
        quick_cell_time=float(spec.quick_cell_time),
        time_compression=float(spec.time_compression),
        spawn_rate=float(spec.spawn_rate),
        idle_timeout=float(spec.idle_timeout),
        client_timeout=float(spec.client_timeout),
        message_sizes=spec.message_sizes,
        delete_per_poll=spec.delete_per_poll,
        refill=spec.refill,
        hold_out=spec.hold_out,
        cells=cells,
        slo_p95_ms=float(spec.slo.p95_ms),
        slo_error_rate=float(spec.slo.error_rate),
        guidance=GuidanceSettings(
            accounts=g.accounts,
            cpu_budget_cores=float(g.cpu_budget_cores),
            download_per_poll_kb=float(g.download_per_poll_kb),
            tiers_min=(float(g.tiers_min[0]), float(g.tiers_min[1])),
            sizes_mb=tuple(sorted(float(x) for x in g.sizes_mb)),
            intervals_min=tuple(sorted(float(x) for x in g.intervals_min)),
            connection_tls=g.connection_tls,
            behaviour=g.behaviour,
            backend=g.backend,
        ),
        era=load_era(spec.era, where),
    )
    for cell in cells:
        if grid.real_interval(cell) > grid.cell_time:
            raise GridError(
                f"{where}: cell_time: {grid.cell_time:g} s is shorter than one real poll interval "
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
    """The load scenario of one cell, as a pop3suite/scenarios/*.toml text.

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
    target gets per-size accounts and SMTP refill (pop3suite/load/capacity/external.py).
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
