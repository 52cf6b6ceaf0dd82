"""The provider's mailbox/polling policy: per-account LOGIN-DELAY from
mailbox size and connection type, and the login log the report reads.

Theory of operation
-------------------
The provider asks each account on its oldest servers to stay within a
mailbox size and a polling rate that depend on the connection type
(provider-pop-service.md §3).  One row of that guidance is a :class:`Rule`;
a :class:`Policy` holds one rule per connection type:

* ``plain`` -- a login on the POP3 port without TLS (the provider's
  "plain POP3 (110)");
* ``tls`` -- a login inside TLS, implicit (the provider's "POP over SSL
  (995)") *or* after STLS.  STLS counts as SSL because what the guidance
  prices is the server's work (handshake plus bulk cipher per octet), and
  that is the same whether TLS started first or after ``STLS``.

A mailbox *larger than* ``above_mb`` must poll no more often than every
``poll_min_above`` minutes, otherwise every ``poll_min`` minutes; a mailbox
that is not *under* ``keep_under_mb`` is over the size policy.  A megabyte
is 2**20 octets (:data:`pop3suite.server.plans.MEGABYTE`).

The server turns the required interval into RFC 2449 LOGIN-DELAY seconds
(:meth:`Policy.login_delay`), enforced after valid credentials like the
global ``login_delay``.  :class:`LoginTracker` records every such login
(size, connection, outcome) in a bounded in-memory history and in an
append-only JSON-lines file (``server.policy_log``) which
``pop3suite policy`` reads from another process (:func:`read_log`).
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .plans import MEGABYTE

CONNECTIONS = ("tls", "plain")
RULE_KEYS = ("keep_under_mb", "above_mb", "poll_min_above", "poll_min")
#: Keys of the ``[policy]`` config table besides the per-connection tables.
POLICY_KEYS = ("base", "name", "time_compression", "backend", *CONNECTIONS)
log = logging.getLogger("pop3suite.server")

#: How many recent logins per account the server keeps in memory.
HISTORY_LENGTH = 32
#: How many recent intervals the report's "observed polling interval" uses.
RECENT_INTERVALS = 20


@dataclass(frozen=True)
class Rule:
    """One row of the provider's table, for one connection type."""

    keep_under_mb: float
    above_mb: float
    poll_min_above: float
    poll_min: float

    def poll_minutes(self, mailbox_bytes: int) -> float:
        """Minimum minutes between polls for a mailbox of this size."""
        return self.poll_min_above if mailbox_bytes > self.above_mb * MEGABYTE else self.poll_min

    def over_size(self, mailbox_bytes: int) -> bool:
        """The mailbox is not under ``keep_under_mb`` ("keep under 50 MB")."""
        return mailbox_bytes >= self.keep_under_mb * MEGABYTE


@dataclass(frozen=True)
class Verdict:
    """One account judged against the policy (see :meth:`Policy.over_policy`)."""

    account: str
    connection: str
    mailbox_bytes: int
    rule: Rule | None
    required_interval_s: float
    observed_interval_s: float | None
    over_size: bool
    too_frequent: bool
    asks: tuple[str, ...]

    @property
    def over_policy(self) -> bool:
        return self.over_size or self.too_frequent


@dataclass(frozen=True)
class Policy:
    """Rules per connection type, plus a time compression for lab runs.

    Attributes:
        name: built-in name, guidance file or ``"custom"`` (for reports).
        rules: ``"tls"`` / ``"plain"`` -> :class:`Rule`; a missing type is
            not limited (a derived guidance may measure only one).
        time_compression: divides the enforced LOGIN-DELAY, like the load
            scenarios' ``time_compression`` (60 turns 5 min into 5 s).
            Reports always use the real minutes.
    """

    name: str
    rules: Mapping[str, Rule]
    time_compression: float = 1.0

    def rule(self, connection: str) -> Rule | None:
        if connection not in CONNECTIONS:
            raise ValueError(f"connection must be one of {CONNECTIONS}, got {connection!r}")
        return self.rules.get(connection)

    def required_interval(self, mailbox_bytes: int, connection: str) -> float:
        """Minimum real seconds between polls (0 when no rule applies)."""
        rule = self.rule(connection)
        return 0.0 if rule is None else rule.poll_minutes(mailbox_bytes) * 60

    def login_delay(self, account: str, mailbox_bytes: int, connection: str) -> int:
        """The LOGIN-DELAY seconds this login must respect, compressed.

        ``account`` is part of the contract so per-account exceptions can be
        added without changing callers; today every account is judged the
        same way, by its size and connection only.
        """
        del account
        return math.ceil(self.required_interval(mailbox_bytes, connection) / self.time_compression)

    def largest_delay(self) -> int:
        """The longest LOGIN-DELAY any account can get: what the
        AUTHORIZATION-state CAPA announces, with ``USER`` (RFC 2449 §6.5)."""
        minutes = [max(r.poll_min_above, r.poll_min) for r in self.rules.values()]
        return math.ceil(max(minutes, default=0) * 60 / self.time_compression)

    def over_policy(
        self,
        account: str,
        mailbox_bytes: int,
        connection: str,
        observed_interval_s: float | None = None,
    ) -> Verdict:
        """Judge one account: over the size limit, polling too often, and
        what to ask the customer (in the provider's words)."""
        rule = self.rule(connection)
        if rule is None:
            return Verdict(
                account, connection, mailbox_bytes, None, 0.0, observed_interval_s, False, False, ()
            )
        required = rule.poll_minutes(mailbox_bytes) * 60
        over_size = rule.over_size(mailbox_bytes)
        too_frequent = observed_interval_s is not None and observed_interval_s < required
        asks: list[str] = []
        if over_size:
            asks.append(f"reduce the mailbox below {_mb(rule.keep_under_mb)} MB")
        if too_frequent or (over_size and observed_interval_s is None):
            asks.append(f"poll no more often than every {_mb(rule.poll_minutes(mailbox_bytes))} min")
        if too_frequent and mailbox_bytes > rule.above_mb * MEGABYTE:
            asks.append(
                f"or keep the mailbox at {_mb(rule.above_mb)} MB or less "
                f"to poll every {_mb(rule.poll_min)} min"
            )
        return Verdict(
            account,
            connection,
            mailbox_bytes,
            rule,
            required,
            observed_interval_s,
            over_size,
            too_frequent,
            tuple(asks),
        )


def _mb(value: float) -> str:
    return f"{value:g}"


#: The provider's CentOS 5 table (provider-pop-service.md §3), and the
#: separate "with POP over SSL stay under 30 MB, delete after download"
#: paragraph as a second SSL variant.  The plain row is the same in both.
_PLAIN = Rule(keep_under_mb=90, above_mb=50, poll_min_above=15, poll_min=5)
BUILTIN_POLICIES: Mapping[str, Policy] = {
    "provider-50mb": Policy(
        "provider-50mb",
        {"tls": Rule(keep_under_mb=50, above_mb=20, poll_min_above=15, poll_min=5), "plain": _PLAIN},
    ),
    "provider-30mb": Policy(
        "provider-30mb",
        {"tls": Rule(keep_under_mb=30, above_mb=20, poll_min_above=15, poll_min=5), "plain": _PLAIN},
    ),
}


# ------------------------------------------------------------------ loading


def _number(where: str, key: str, value: Any, minimum: float = 0.0, strict: bool = False) -> float:
    """A number >= minimum (> minimum when strict), or ConfigError naming ``where`` and ``key``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: key '{key}': expected a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        relation = "more than" if strict else "at least"
        raise ConfigError(f"{where}: key '{key}': must be {relation} {minimum:g}, got {value!r}")
    return float(value)


def make_rule(where: str, prefix: str, values: Mapping[str, Any], base: Rule | None = None) -> Rule:
    """Validate one rule (all four keys, or overrides of ``base``).

    Raises:
        ConfigError: naming ``where`` (the file) and ``prefix.key``.
    """
    unknown = sorted(set(values) - set(RULE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key '{prefix}.{unknown[0]}' (known: {', '.join(RULE_KEYS)})")
    merged: dict[str, Any] = {} if base is None else dict(vars(base))
    merged.update(values)
    for key in RULE_KEYS:
        if key not in merged:
            raise ConfigError(f"{where}: key '{prefix}.{key}' is missing")
    numbers = {
        "keep_under_mb": _number(where, f"{prefix}.keep_under_mb", merged["keep_under_mb"], strict=True),
        "above_mb": _number(where, f"{prefix}.above_mb", merged["above_mb"]),
        "poll_min_above": _number(where, f"{prefix}.poll_min_above", merged["poll_min_above"]),
        "poll_min": _number(where, f"{prefix}.poll_min", merged["poll_min"]),
    }
    if numbers["above_mb"] >= numbers["keep_under_mb"]:
        raise ConfigError(
            f"{where}: key '{prefix}.above_mb': must be below keep_under_mb "
            f"({numbers['keep_under_mb']:g}), got {numbers['above_mb']:g}"
        )
    if numbers["poll_min_above"] < numbers["poll_min"]:
        raise ConfigError(
            f"{where}: key '{prefix}.poll_min_above': a larger mailbox cannot poll more often "
            f"(poll_min_above {numbers['poll_min_above']:g} < poll_min {numbers['poll_min']:g})"
        )
    return Rule(**numbers)


def load_guidance(path: str | Path, backend: str | None = None) -> Policy:
    """A policy from a derived ``guidance.json`` (``pop3suite capacity``).

    The file holds ``{"rows": [{"connection", "backend", "keep_under_mb",
    "above_mb", "poll_min_above", "poll_min"}, ...]}`` (other keys are kept
    for the reader and ignored here).  ``backend`` picks the rows of one
    storage backend; it may be left out when the file covers only one.

    Raises:
        ConfigError: unreadable file, bad JSON or a bad row, naming the
            file and the key (``rows[2].poll_min``).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such guidance file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid JSON: {error}") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{path}: key 'rows': expected a non-empty list of guidance rows")
    by_backend: dict[str, dict[str, Rule]] = {}
    for index, row in enumerate(rows):
        prefix = f"rows[{index}]"
        if not isinstance(row, dict):
            raise ConfigError(f"{path}: key '{prefix}': expected an object, got {row!r}")
        connection = row.get("connection")
        if connection not in CONNECTIONS:
            raise ConfigError(
                f"{path}: key '{prefix}.connection': expected {' or '.join(CONNECTIONS)}, got {connection!r}"
            )
        row_backend = row.get("backend")
        if not isinstance(row_backend, str) or not row_backend:
            raise ConfigError(f"{path}: key '{prefix}.backend': expected a backend name, got {row_backend!r}")
        rule = make_rule(str(path), prefix, {k: row[k] for k in RULE_KEYS if k in row})
        table = by_backend.setdefault(row_backend, {})
        if connection in table:
            raise ConfigError(f"{path}: key '{prefix}': a second row for {connection} on {row_backend}")
        table[connection] = rule
    if backend is None:
        if len(by_backend) > 1:
            raise ConfigError(
                f"{path}: key 'rows': rows for several backends ({', '.join(sorted(by_backend))}); "
                "choose one with policy.backend"
            )
        backend = next(iter(by_backend))
    if backend not in by_backend:
        raise ConfigError(
            f"{path}: key 'rows': no row for backend {backend!r} (found: {', '.join(sorted(by_backend))})"
        )
    return Policy(f"{path.name} ({backend})", by_backend[backend])


def resolve(spec: str, where: str, key: str, base_dir: Path, backend: str | None = None) -> Policy:
    """A built-in policy name or a guidance.json path (relative to ``base_dir``)."""
    if spec in BUILTIN_POLICIES:
        return BUILTIN_POLICIES[spec]
    candidate = base_dir / spec
    if spec.endswith(".json") or candidate.is_file():
        try:
            return load_guidance(candidate, backend)
        except ConfigError as error:  # name the key that pointed there too
            raise ConfigError(f"{error} (given as '{key}' in {where})") from None
    raise ConfigError(
        f"{where}: key '{key}': unknown policy {spec!r} "
        f"(built-in: {', '.join(BUILTIN_POLICIES)}; or a path to a guidance.json)"
    )


def from_config(server_value: Any, table: Any, config_path: Path, storage: Any = None) -> Policy | None:
    """The policy a config file asks for: ``server.policy`` or a ``[policy]`` table.

    Args:
        server_value: ``server.policy`` (a built-in name, a guidance.json
            path, ``"off"``) or None when absent.
        table: the ``[policy]`` table or None.
        config_path: the config file (for messages and relative paths).
        storage: ``server.storage`` if it names a backend (picks guidance rows).

    Raises:
        ConfigError: naming the config file (or guidance file) and the key.
    """
    where = str(config_path)
    base_dir = config_path.parent
    if server_value is not None and table is not None:
        raise ConfigError(
            f"{where}: key 'server.policy': give either server.policy or a [policy] table, not both"
        )
    default_backend = storage if isinstance(storage, str) and storage else None
    if table is None:
        if server_value is None or server_value == "off":
            return None
        if not isinstance(server_value, str) or not server_value:
            raise ConfigError(
                f"{where}: key 'server.policy': expected a policy name or a file, got {server_value!r}"
            )
        return resolve(server_value, where, "server.policy", base_dir, default_backend)
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: 'policy' must be a table")
    unknown = sorted(set(table) - set(POLICY_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key 'policy.{unknown[0]}' (known: {', '.join(POLICY_KEYS)})")
    for key in ("base", "name", "backend"):
        if key in table and (not isinstance(table[key], str) or not table[key]):
            raise ConfigError(f"{where}: key 'policy.{key}': expected a non-empty string, got {table[key]!r}")
    backend = table.get("backend", default_backend)
    base = resolve(table["base"], where, "policy.base", base_dir, backend) if "base" in table else None
    rules = dict(base.rules) if base else {}
    for connection in CONNECTIONS:
        if connection in table:
            values = table[connection]
            if not isinstance(values, dict):
                raise ConfigError(f"{where}: key 'policy.{connection}': expected a table")
            rules[connection] = make_rule(where, f"policy.{connection}", values, rules.get(connection))
    if not rules:
        raise ConfigError(
            f"{where}: key 'policy': give base = NAME or at least one of [policy.tls], [policy.plain]"
        )
    compression = _number(where, "policy.time_compression", table.get("time_compression", 1.0), strict=True)
    unchanged = base is not None and dict(base.rules) == rules
    derived = "custom" if base is None else (base.name if unchanged else f"{base.name}, modified")
    name = table.get("name") or derived
    return Policy(name, rules, compression)


# ------------------------------------------------------------ observations


@dataclass(frozen=True)
class LoginRecord:
    """One login with valid credentials, accepted or refused for LOGIN-DELAY.

    ``mailbox_bytes`` is None when the global ``login_delay`` refused the
    login before the maildrop was opened.
    """

    time: float  # wall clock, seconds since the epoch
    account: str
    connection: str
    outcome: str  # "ok" or "login-delay"
    mailbox_bytes: int | None = None
    messages: int | None = None
    listener: str = ""
    required_delay_s: int = 0
    policy: str | None = None

    def to_json(self) -> str:
        return json.dumps(vars(self), separators=(",", ":"), sort_keys=True)


@dataclass
class LoginTracker:
    """Per-account login history and the JSON-lines log, for one server.

    Attributes:
        policy: the policy to enforce, or None to only observe.
        log_path: the append-only log (None: memory only).
        max_bytes: past this size the log becomes ``<name>.1``, replacing
            the previous one, so a long-running server's log stays bounded
            while the readers still see the latest logins of both files.
        wall_clock: the log's clock (tests inject one).
    """

    policy: Policy | None
    log_path: Path | None = None
    #: Rotate the log to ``<name>.1`` past this size (0: never).
    max_bytes: int = 64 << 20
    wall_clock: Callable[[], float] = time.time
    history: dict[str, collections.deque[LoginRecord]] = field(default_factory=dict)

    def announced(self, global_delay: int) -> tuple[int | None, bool]:
        """(seconds, per user) for the AUTHORIZATION-state LOGIN-DELAY.

        With a policy the value differs per user, so RFC 2449 §6.5 wants
        ``USER`` after it, and the pre-login value is the largest any user
        can get (rfc-checklist.md rfc2449/6.5/1), so a client that reads
        only this value is never refused.
        """
        if self.policy is None:
            return global_delay or None, False
        return max(global_delay, self.policy.largest_delay()) or None, True

    def login_delay(self, account: str, mailbox_bytes: int, connection: str) -> int:
        """LOGIN-DELAY seconds from the policy (0 when only observing)."""
        return 0 if self.policy is None else self.policy.login_delay(account, mailbox_bytes, connection)

    def record(
        self,
        account: str,
        connection: str,
        refused: bool,
        required_delay_s: int,
        mailbox_bytes: int | None = None,
        messages: int | None = None,
        listener: str = "",
    ) -> LoginRecord:
        """Remember one login (history and log file)."""
        entry = LoginRecord(
            time=self.wall_clock(),
            account=account,
            connection=connection,
            outcome="login-delay" if refused else "ok",
            mailbox_bytes=mailbox_bytes,
            messages=messages,
            listener=listener,
            required_delay_s=required_delay_s,
            policy=None if self.policy is None else self.policy.name,
        )
        self.history.setdefault(account, collections.deque(maxlen=HISTORY_LENGTH)).append(entry)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            # One write() in O_APPEND mode per record: a reader in another
            # process never sees half a line, and the file can be rotated.
            try:
                with open(self.log_path, "a", encoding="utf-8") as handle:
                    handle.write(entry.to_json() + "\n")
                    size = handle.tell()
                if self.max_bytes and size >= self.max_bytes:
                    os.replace(self.log_path, rotated(self.log_path))
            except OSError as error:  # a full disk must not stop logins
                log.warning("cannot append to policy log %s: %s", self.log_path, error)
        return entry

    def recent_logins(self, tail_bytes: int = 1 << 20) -> dict[str, float]:
        """Seconds since each account's last accepted login, from the log's
        tail, for logins still inside the policy's longest delay: a restarted
        server keeps enforcing LOGIN-DELAY (GNU Mailutils keeps a DBM file
        for the same reason)."""
        if self.policy is None or self.log_path is None:
            return {}
        now = self.wall_clock()
        horizon = self.policy.largest_delay()
        ages = {}
        for account, entries in read_log(self.log_path, tail_bytes)[0].items():
            accepted = [e.time for e in entries if e.outcome == "ok"]
            if accepted and 0 <= now - max(accepted) < horizon:
                ages[account] = now - max(accepted)
        return ages

    def observed_interval(self, account: str) -> float | None:
        """Median seconds between this account's recent logins (None: < 2)."""
        return observed_interval(self.history.get(account, ()))


def observed_interval(records: Iterable[LoginRecord]) -> float | None:
    """Median of the last :data:`RECENT_INTERVALS` gaps between polls.

    Every login with valid credentials is a poll, refused or not: a client
    refused for LOGIN-DELAY still costs the server a connection and a
    password check, and it is polling too often either way.
    """
    times = sorted(r.time for r in records)[-(RECENT_INTERVALS + 1) :]
    if len(times) < 2:
        return None
    return statistics.median(b - a for a, b in itertools.pairwise(times))


def rotated(path: Path) -> Path:
    """Where the log goes when it is rotated (``<name>.1``)."""
    return path.with_name(path.name + ".1")


def read_log(path: Path, tail_bytes: int | None = None) -> tuple[dict[str, list[LoginRecord]], int]:
    """The log's records per account, oldest first, and the number of bad
    lines skipped (a line cut short by a crash, say).  The rotated file
    (``<name>.1``) is read before the current one; missing files are empty.

    ``tail_bytes`` reads only the last that many bytes of the two files
    together (the partial first line is dropped, not counted as bad).
    """
    records: dict[str, list[LoginRecord]] = {}
    bad = 0
    budget = tail_bytes
    chunks: list[tuple[Path, int]] = []  # (file, bytes from its end; -1 = all)
    for candidate in (path, rotated(path)):
        if budget is not None and budget <= 0:
            break
        try:
            size = candidate.stat().st_size
        except FileNotFoundError:
            continue
        if budget is None:
            chunks.append((candidate, -1))
        else:
            chunks.append((candidate, -1 if size <= budget else budget))
            budget -= size
    known = set(LoginRecord.__dataclass_fields__)
    for candidate, from_end in reversed(chunks):
        try:
            handle = open(candidate, "rb")  # noqa: SIM115
        except FileNotFoundError:  # rotated away between stat and open
            continue
        with handle:
            if from_end >= 0:
                handle.seek(-from_end, 2)
                handle.readline()
            for line in handle:
                try:
                    data = json.loads(line)
                    entry = LoginRecord(**{k: v for k, v in data.items() if k in known})
                except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError):
                    bad += 1
                    continue
                records.setdefault(entry.account, []).append(entry)
    return records, bad
