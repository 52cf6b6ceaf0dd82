"""Scenario files (``pop3suite/scenarios/*.toml``) -> typed settings.

A scenario is data: accounts, mailbox pre-fill, the client mix, the delivery
rate, run time, a time compression factor and SLO thresholds.  Times in the
file are *simulated* seconds (a 300 s poll interval is "every 5 minutes");
``time_compression`` divides intervals and multiplies rates so that a short
run on one machine still offers the same load per real second.
See docs/load.md for every key.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PlainValidator, model_validator

from pop3suite.inputs import InputError, StrictModel, load_toml

#: SPECmail2001 §4.2.1.1 message size distribution: (KB, percent).
SPECMAIL2001_SIZES: tuple[tuple[int, float], ...] = (
    (1, 10.20),
    (2, 30.71),
    (3, 20.59),
    (4, 10.78),
    (5, 5.88),
    (6, 3.74),
    (10, 7.44),
    (100, 9.79),
    (1000, 0.69),
    (2675, 0.18),
)

#: SPECmail2001 §4.3.1 steady-state messages per mailbox: percent for 0..29.
SPECMAIL2001_MAILBOX_COUNTS: tuple[float, ...] = (
    26.50, 16.11, 12.25, 9.61, 7.56, 5.95, 4.68, 3.69, 2.90, 2.29,
    1.80, 1.42, 1.12, 0.88, 0.69, 0.54, 0.43, 0.34, 0.27, 0.21,
    0.16, 0.13, 0.10, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02, 0.02,
)  # fmt: skip

KB = 1000

#: RETR size classes (SPEC's size table buckets), by upper bound in octets.
SIZE_CLASSES: tuple[tuple[int, str], ...] = (
    (10 * 1024 + 1024, "<=10KB"),
    (110 * 1024, "100KB"),
    (1100 * 1024, "1MB"),
    (1 << 62, ">1MB"),
)


def size_class(octets: int) -> str:
    """The RETR bucket name for a message of ``octets``."""
    for bound, name in SIZE_CLASSES:
        if octets <= bound:
            return name
    return SIZE_CLASSES[-1][1]


class ScenarioError(ValueError):
    """The scenario file is wrong; the message says where."""


@dataclass(frozen=True)
class SizeDistribution:
    """Message sizes in octets with weights."""

    sizes: tuple[int, ...]
    weights: tuple[float, ...]

    def sample(self, rng: random.Random) -> int:
        return rng.choices(self.sizes, self.weights)[0]

    @property
    def mean(self) -> float:
        return sum(s * w for s, w in zip(self.sizes, self.weights, strict=True)) / sum(self.weights)


SPECMAIL2001 = "specmail2001"


def specmail2001_sizes() -> SizeDistribution:
    return SizeDistribution(
        tuple(k * KB for k, _ in SPECMAIL2001_SIZES), tuple(p for _, p in SPECMAIL2001_SIZES)
    )


def parse_sizes(value: object) -> SizeDistribution:
    """``"specmail2001"``, a number of octets, or ``[[octets, weight], ...]``.

    Raises:
        ValueError: anything else (the schema turns it into one line naming the key).
    """
    if value == SPECMAIL2001:
        return specmail2001_sizes()
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return SizeDistribution((value,), (1.0,))
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(p, list)
            and len(p) == 2
            and all(isinstance(x, int | float) and not isinstance(x, bool) for x in p)
            for p in value
        )
    ):
        sizes = tuple(int(p[0]) for p in value)
        weights = tuple(float(p[1]) for p in value)
        if (
            all(float(p[0]).is_integer() for p in value)
            and min(sizes) > 0
            and min(weights) >= 0
            and sum(weights) > 0
        ):
            return SizeDistribution(sizes, weights)
    raise ValueError(
        'expected "specmail2001", octets, or [[octets, weight], ...] with positive sizes; '
        f"got {_toml_value(value)}"
    )


def _toml_value(value: object) -> str:
    import json

    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class ClientClass:
    """One cell of the client mix: ``users`` Locust users, one account each."""

    name: str
    users: int
    tls: str = "none"  # none | stls | implicit
    auth: str = "user"  # user | apop | sasl
    behaviour: str = "delete"  # delete | keep
    poll_interval: float = 300.0  # simulated seconds
    max_retr_per_poll: int = 0  # 0 = all
    initial_sync: bool = False  # keep: first poll only learns UIDs
    prefill_count: int | str | None = None  # None = scenario default; "specmail2001" = SPEC's table
    prefill_sizes: SizeDistribution | None = None
    timeout: float = 60.0

    def account(self, index: int) -> str:
        return f"{self.name}{index:04d}"


@dataclass(frozen=True)
class Delivery:
    rate: float = 0.0  # messages per simulated second, all delivery users together
    users: int = 0
    sizes: SizeDistribution = field(default_factory=lambda: SizeDistribution((2000,), (1.0,)))
    to: tuple[str, ...] = ()  # client class names; empty = all


@dataclass(frozen=True)
class Slo:
    error_rate: float = 0.01
    spec_qos: bool = False  # SPECmail2001 §6: 95 % under 5 s; RETR 5 s + bytes/3000
    spec_share: float = 0.95
    steps: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> {"p95_ms": .., ...}
    min_sessions: int = 1


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: Path
    run_time: float
    time_compression: float
    seed: int
    prefill_count: int | str
    prefill_sizes: SizeDistribution
    clients: tuple[ClientClass, ...]
    delivery: Delivery
    slo: Slo
    spawn_rate: float = 50.0
    idle_timeout: float = 600.0
    stop_timeout: float = 10.0  # a stopping user may finish its poll this long
    storage: str = "maildir"  # embedded server's mail store: maildir | mbox

    @property
    def pop_users(self) -> int:
        return sum(c.users for c in self.clients)

    @property
    def total_users(self) -> int:
        return self.pop_users + (self.delivery.users if self.delivery.rate > 0 else 0)

    def real_interval(self, client: ClientClass) -> float:
        return client.poll_interval / self.time_compression

    def real_delivery_rate(self) -> float:
        return self.delivery.rate * self.time_compression

    def accounts(self, stride: int = 1) -> dict[str, ClientClass]:
        """Every account the run uses -> its client class.  With ``stride``
        workers each class gets a multiple of ``stride`` accounts (see
        users.account_index)."""
        out: dict[str, ClientClass] = {}
        for client in self.clients:
            for i in range(math.ceil(client.users / stride) * stride):
                out[client.account(i)] = client
        return out

    def with_users(self, total: int) -> Scenario:
        """The same mix scaled to about ``total`` POP3 users (each class >= 1)."""
        scale = total / max(1, self.pop_users)
        clients = tuple(_replace(c, users=max(1, round(c.users * scale))) for c in self.clients)
        return _replace(self, clients=clients)

    def with_run_time(self, seconds: float) -> Scenario:
        return _replace(self, run_time=seconds)


def _replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


# ---------------------------------------------------------------- the file's schema
# Pydantic models of the TOML file (pop3suite.inputs: unknown keys and wrong
# types rejected at any depth, one line naming the file and key); the
# dataclasses above are what the rest of the load code uses.

Sizes = Annotated[SizeDistribution, PlainValidator(parse_sizes)]
Positive = Annotated[float, Field(gt=0)]


def _prefill_count(value: object) -> int | str:
    if value == SPECMAIL2001 or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value  # type: ignore[return-value]
    raise ValueError(f'expected a count >= 0 or "specmail2001", got {_toml_value(value)}')


PrefillCount = Annotated[int | str, PlainValidator(_prefill_count)]


def _cell_name(name: str) -> str:
    if not (name.isascii() and name.isalnum()):
        raise ValueError(f"expected letters and digits only (accounts: NAME0000), got {_toml_value(name)}")
    return name


class ClientSpec(StrictModel):
    name: Annotated[str, AfterValidator(_cell_name)]
    users: int = Field(ge=1)
    tls: Literal["none", "stls", "implicit"] = "none"
    auth: Literal["user", "apop", "sasl"] = "user"
    behaviour: Literal["delete", "keep"] = "delete"
    poll_interval: Positive = 300.0
    max_retr_per_poll: int = Field(0, ge=0)
    initial_sync: bool = False
    prefill_count: PrefillCount | None = None
    prefill_sizes: Sizes | None = None
    timeout: Positive = 60.0


class PrefillSpec(StrictModel):
    count: PrefillCount = 0
    sizes: Sizes = SizeDistribution((2000,), (1.0,))


class DeliverySpec(StrictModel):
    rate: float = Field(0.0, ge=0)
    users: int | None = Field(None, ge=0)  # default: 1 when rate > 0, else 0
    sizes: Sizes = SizeDistribution((2000,), (1.0,))
    to: list[str] = []


class StepLimits(StrictModel):
    """Limits of one request name (or ``NAME*`` family) in ``[slo.steps]``."""

    p50_ms: Positive | None = None
    p90_ms: Positive | None = None
    p95_ms: Positive | None = None
    p99_ms: Positive | None = None
    p99_9_ms: Positive | None = Field(None, alias="p99.9_ms")
    min_ms: Positive | None = None
    mean_ms: Positive | None = None
    max_ms: Positive | None = None
    error_rate: float | None = Field(None, ge=0, le=1)


class SloSpec(StrictModel):
    error_rate: float = Field(0.01, ge=0, le=1)
    spec_qos: bool = False
    spec_share: float = Field(0.95, gt=0, le=1)
    steps: dict[str, StepLimits] = {}
    min_sessions: int = Field(1, ge=0)


class ScenarioSpec(StrictModel):
    name: str | None = None
    description: str = ""
    run_time: Positive = 60.0
    time_compression: Positive = 1.0
    seed: int = 1
    spawn_rate: Positive = 50.0
    idle_timeout: Positive = 600.0
    stop_timeout: float = Field(10.0, ge=0)
    storage: Literal["maildir", "mbox"] = "maildir"
    prefill: PrefillSpec = PrefillSpec()
    clients: list[ClientSpec] = Field(min_length=1)
    delivery: DeliverySpec = DeliverySpec()
    slo: SloSpec = SloSpec()

    @model_validator(mode="after")
    def _names(self) -> ScenarioSpec:
        names = [c.name for c in self.clients]
        if len(set(names)) != len(names):
            raise ValueError(f"clients: names must be unique, got {names}")
        for name in self.delivery.to:
            if name not in names:
                raise ValueError(f"delivery.to: no [[clients]] named {name!r} (have {', '.join(names)})")
        return self


def load_scenario(source: str | Path) -> Scenario:
    """Read a scenario by path or by name (``smoke`` -> pop3suite/scenarios/smoke.toml).

    Raises:
        ScenarioError: no such scenario, or a bad key or value in it (one
            line naming the file and the key).
    """
    path = find_scenario(source)
    try:
        spec = load_toml(path, ScenarioSpec)
    except InputError as error:
        raise ScenarioError(str(error)) from None
    delivery = spec.delivery
    return Scenario(
        name=spec.name or path.stem,
        description=spec.description,
        path=path,
        run_time=float(spec.run_time),
        time_compression=float(spec.time_compression),
        seed=spec.seed,
        prefill_count=spec.prefill.count,
        prefill_sizes=spec.prefill.sizes,
        clients=tuple(ClientClass(**{k: v for k, v in c}) for c in spec.clients),
        delivery=Delivery(
            rate=float(delivery.rate),
            users=delivery.users if delivery.users is not None else (1 if delivery.rate else 0),
            sizes=delivery.sizes,
            to=tuple(delivery.to),
        ),
        slo=Slo(
            error_rate=float(spec.slo.error_rate),
            spec_qos=spec.slo.spec_qos,
            spec_share=float(spec.slo.spec_share),
            steps={
                name: {
                    metric: float(v)
                    for metric, v in limits.model_dump(by_alias=True, exclude_none=True).items()
                }
                for name, limits in spec.slo.steps.items()
            },
            min_sessions=spec.slo.min_sessions,
        ),
        spawn_rate=float(spec.spawn_rate),
        idle_timeout=float(spec.idle_timeout),
        stop_timeout=float(spec.stop_timeout),
        storage=spec.storage,
    )


def scenario_dir() -> Path:
    """The shipped scenarios: package data of ``pop3suite`` (``pop3suite/scenarios/*.toml``),
    found through importlib.resources so an installed wheel has them too."""
    return Path(str(resources.files("pop3suite") / "scenarios"))


def find_scenario(source: str | Path) -> Path:
    path = Path(source)
    if path.is_file():
        return path.resolve()
    candidate = scenario_dir() / f"{source}.toml"
    if candidate.is_file():
        return candidate
    shipped = sorted(p.stem for p in scenario_dir().glob("*.toml"))
    raise ScenarioError(f"no scenario {str(source)!r} (a file, or one of: {', '.join(shipped)})")


def prefill_plan(scenario: Scenario, client: ClientClass, rng: random.Random) -> list[int]:
    """Sizes of the messages to pre-fill one account of ``client`` with."""
    count = client.prefill_count if client.prefill_count is not None else scenario.prefill_count
    if count == "specmail2001":
        count = rng.choices(range(len(SPECMAIL2001_MAILBOX_COUNTS)), SPECMAIL2001_MAILBOX_COUNTS)[0]
    sizes = client.prefill_sizes or scenario.prefill_sizes
    return [sizes.sample(rng) for _ in range(int(count))]
