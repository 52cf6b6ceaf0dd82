"""Scenario files (``scenarios/*.toml``) -> typed settings.

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
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

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


def parse_sizes(value: object, where: str) -> SizeDistribution:
    """``"specmail2001"``, a number of octets, or ``[[octets, weight], ...]``."""
    if value == "specmail2001":
        return SizeDistribution(
            tuple(k * KB for k, _ in SPECMAIL2001_SIZES), tuple(p for _, p in SPECMAIL2001_SIZES)
        )
    if isinstance(value, int) and value > 0:
        return SizeDistribution((value,), (1.0,))
    if isinstance(value, list) and value and all(isinstance(p, list) and len(p) == 2 for p in value):
        sizes = tuple(int(p[0]) for p in value)
        weights = tuple(float(p[1]) for p in value)
        if min(sizes) > 0 and min(weights) >= 0 and sum(weights) > 0:
            return SizeDistribution(sizes, weights)
    raise ScenarioError(
        f"{where}: expected 'specmail2001', octets, or [[octets, weight], ...]; got {value!r}"
    )


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


_CLIENT_KEYS = {
    "name", "users", "tls", "auth", "behaviour", "poll_interval", "max_retr_per_poll",
    "initial_sync", "prefill_count", "prefill_sizes", "timeout",
}  # fmt: skip


def _client(raw: dict, where: str) -> ClientClass:
    unknown = set(raw) - _CLIENT_KEYS
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        client = ClientClass(
            name=str(raw["name"]),
            users=int(raw["users"]),
            tls=raw.get("tls", "none"),
            auth=raw.get("auth", "user"),
            behaviour=raw.get("behaviour", "delete"),
            poll_interval=float(raw.get("poll_interval", 300)),
            max_retr_per_poll=int(raw.get("max_retr_per_poll", 0)),
            initial_sync=bool(raw.get("initial_sync", False)),
            prefill_count=raw.get("prefill_count"),
            prefill_sizes=parse_sizes(raw["prefill_sizes"], f"{where}.prefill_sizes")
            if "prefill_sizes" in raw
            else None,
            timeout=float(raw.get("timeout", 60)),
        )
    except KeyError as error:
        raise ScenarioError(f"{where}: missing key {error}") from None
    if client.tls not in ("none", "stls", "implicit"):
        raise ScenarioError(f"{where}.tls: none, stls or implicit, not {client.tls!r}")
    if client.auth not in ("user", "apop", "sasl"):
        raise ScenarioError(f"{where}.auth: user, apop or sasl, not {client.auth!r}")
    if client.behaviour not in ("delete", "keep"):
        raise ScenarioError(f"{where}.behaviour: delete or keep, not {client.behaviour!r}")
    if not client.name.isalnum() or client.users < 1 or client.poll_interval <= 0:
        raise ScenarioError(f"{where}: name must be alphanumeric, users >= 1, poll_interval > 0")
    return client


def load_scenario(source: str | Path) -> Scenario:
    """Read a scenario by path or by name (``smoke`` -> scenarios/smoke.toml).

    Raises:
        ScenarioError: no such scenario, or a bad key or value in it.
    """
    path = find_scenario(source)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: {error}") from None
    where = path.name
    clients = tuple(_client(c, f"{where}: clients[{i}]") for i, c in enumerate(raw.get("clients", [])))
    if not clients:
        raise ScenarioError(f"{where}: no [[clients]]")
    if len({c.name for c in clients}) != len(clients):
        raise ScenarioError(f"{where}: client names must be unique")
    prefill = raw.get("prefill", {})
    delivery = raw.get("delivery", {})
    slo = raw.get("slo", {})
    return Scenario(
        name=str(raw.get("name", path.stem)),
        description=str(raw.get("description", "")),
        path=path,
        run_time=float(raw.get("run_time", 60)),
        time_compression=float(raw.get("time_compression", 1.0)),
        seed=int(raw.get("seed", 1)),
        prefill_count=prefill.get("count", 0),
        prefill_sizes=parse_sizes(prefill.get("sizes", 2000), f"{where}: prefill.sizes"),
        clients=clients,
        delivery=Delivery(
            rate=float(delivery.get("rate", 0)),
            users=int(delivery.get("users", 1 if delivery.get("rate", 0) else 0)),
            sizes=parse_sizes(delivery.get("sizes", 2000), f"{where}: delivery.sizes"),
            to=tuple(delivery.get("to", ())),
        ),
        slo=Slo(
            error_rate=float(slo.get("error_rate", 0.01)),
            spec_qos=bool(slo.get("spec_qos", False)),
            spec_share=float(slo.get("spec_share", 0.95)),
            steps={str(k): {str(m): float(v) for m, v in t.items()} for k, t in slo.get("steps", {}).items()},
            min_sessions=int(slo.get("min_sessions", 1)),
        ),
        spawn_rate=float(raw.get("spawn_rate", 50)),
        idle_timeout=float(raw.get("idle_timeout", 600)),
        stop_timeout=float(raw.get("stop_timeout", 10)),
        storage=_storage(raw.get("storage", "maildir"), where),
    )


def _storage(value: object, where: str) -> str:
    if value not in ("maildir", "mbox"):
        raise ScenarioError(f"{where}: storage: maildir or mbox, not {value!r}")
    return str(value)


def scenario_dir() -> Path:
    """The shipped scenarios (``scenarios/`` next to the ``load`` package)."""
    return Path(__file__).resolve().parent.parent / "scenarios"


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
