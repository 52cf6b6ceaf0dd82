"""The lab configuration: one TOML file -> typed, validated settings.

Every problem is reported as one line naming the file, the key and what is
wrong (``ConfigError``), and unknown keys are errors too, so a typo such as
``pop3port`` is caught instead of silently ignored.  Relative paths are taken
relative to the config file, so a lab directory can be moved as a whole.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pop3suite.proto.limits import PROVIDER_IDLE_TIMEOUT_SECONDS

from . import passwords, plans
from .errors import ConfigError
from .policy import from_config as policy_from_config
from .storage.base import SAFE_USERNAME

if TYPE_CHECKING:
    from .policy import Policy
    from .prefork import EraSettings

#: A port setting of "auto": the OS picks a free port when the listener
#: binds (``serve`` prints it).  No race between choosing and binding.
AUTO_PORT = -1


def bind_port(port: int) -> int:
    """The port number to pass to bind() for a configured (non-zero) port."""
    return 0 if port == AUTO_PORT else port


#: Mailbox formats ``server.storage`` / ``accounts.NAME.storage`` may name
#: (pop3suite.server.storage.open_store builds them; docs/storage.md).
STORAGE_BACKENDS = ("maildir", "mbox")


@dataclass(frozen=True)
class AccountSettings:
    """One mail account.

    Attributes:
        name: login name (also the mailbox directory name).
        password: a hash string (see :mod:`pop3suite.server.passwords`).
        apop: APOP switched on for this account (off by default, like the
            provider).  Needs a ``{PLAIN}`` password: APOP needs the secret.
        plan: hosting plan (a key of :data:`pop3suite.server.plans.PLANS`),
            which with ``os_generation`` gives the default quota.
        os_generation: the server generation column of the quota table.
        quota_mb: per-account quota override in MB, or ``"unlimited"``.
    """

    name: str
    password: str = field(repr=False)
    apop: bool = False
    plan: str | None = None
    os_generation: str = plans.DEFAULT_OS_GENERATION
    quota_mb: float | str | None = None
    #: mailbox format of this account (a STORAGE_BACKENDS entry); None
    #: means the server's ``storage``.
    storage: str | None = None

    @property
    def quota_bytes(self) -> int | None:
        """The mailbox quota in octets, None for no limit.

        ``quota_mb`` (a number, or ``"unlimited"``) overrides the plan's
        entry in :mod:`pop3suite.server.plans`; an account with neither a
        plan nor an override has no quota.
        """
        if self.quota_mb == "unlimited":
            return None
        if self.quota_mb is not None:
            return int(float(self.quota_mb) * plans.MEGABYTE)
        if self.plan is None:
            return None
        return plans.quota_bytes(self.plan, self.os_generation)


@dataclass(frozen=True)
class Settings:
    """Everything ``pop3suite serve`` needs, validated."""

    path: Path
    listen: str = "127.0.0.1"
    pop3_port: int = 11110
    pop3s_port: int = 0
    smtp_port: int = 0
    submission_port: int = 0
    smtps_port: int = 0
    idle_timeout: float = PROVIDER_IDLE_TIMEOUT_SECONDS
    login_failure_delay: float = 2.0
    max_bad_commands: int = 20
    #: Absolute pre-login deadline in seconds (Dovecot: 3 minutes).  Bytes
    #: trickled without a login do not extend it (slowloris, probe D1).
    login_timeout: float = 180.0
    #: Simultaneous POP3 connections from one client address (0 = no limit);
    #: more are refused with ``-ERR [SYS/TEMP]`` and closed (probe D3).
    max_connections_per_ip: int = 100
    cleartext_login: bool = True
    login_delay: int = 0
    expire: str | None = None
    mail_root: Path = Path("mail")
    domains: tuple[str, ...] = ("example.test",)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    fsync: bool = True
    #: default mailbox format ("maildir" or "mbox"; docs/storage.md).
    storage: str = "maildir"
    #: Event loop of ``pop3suite serve``: "asyncio", "uvloop" (falls back to
    #: asyncio with a warning when uvloop is not installed) or "auto"
    #: (uvloop if installed, silently).  docs/performance.md has the numbers.
    event_loop: str = "asyncio"
    accounts: dict[str, AccountSettings] = field(default_factory=dict)
    # SMTP side (pop3suite.server.smtp): POP-before-SMTP window in seconds
    # (0 = no POP-before-SMTP), the POP3 listeners whose logins open it,
    # 452 instead of 552 for over-quota mail, and the relay sink.
    relay_window: float = 1200
    relay_open_listeners: tuple[str, ...] = ("pop3",)
    quota_tempfail: bool = False
    spool_dir: Path = Path("spool")
    # Mailbox/polling policy (pop3suite.server.policy, docs/policy.md):
    # None = off.  The login log is written when either is set.
    policy: Policy | None = None
    policy_log: Path | None = None
    #: The login log is renamed to ``<name>.1`` (replacing an older one) when
    #: it grows past this many MB; 0 = never (docs/policy.md).
    policy_log_max_mb: float = 64.0
    #: ``[era]``: the 2007-2010 deployment (pop3suite.server.prefork); None = off.
    era: EraSettings | None = None
    # Operations (docs/operations.md): [log] level and format of the
    # server's records, [metrics] port and address of the Prometheus
    # endpoint (0 = no endpoint; loopback unless set otherwise).
    log_level: str = "info"
    log_format: str = "text"
    metrics_port: int = 0
    metrics_listen: str = "127.0.0.1"


_SERVER_KEYS: dict[str, type | tuple[type, ...]] = {
    "listen": str,
    "pop3_port": (int, str),
    "pop3s_port": (int, str),
    "smtp_port": (int, str),
    "submission_port": (int, str),
    "smtps_port": (int, str),
    "idle_timeout": (int, float),
    "login_failure_delay": (int, float),
    "max_bad_commands": int,
    "login_timeout": (int, float),
    "max_connections_per_ip": int,
    "cleartext_login": bool,
    "login_delay": int,
    "expire": (str, int),
    "mail_root": str,
    "domains": list,
    "fsync": bool,
    "storage": str,
    "event_loop": str,
    "relay_window": (int, float),
    "relay_open_listeners": list,
    "quota_tempfail": bool,
    "spool_dir": str,
    "policy": str,
    "policy_log": str,
    "policy_log_max_mb": (int, float),
}
#: Number keys of [server] that must not be negative.
_NOT_NEGATIVE = ("idle_timeout", "login_failure_delay", "relay_window", "policy_log_max_mb")
_TLS_KEYS = {"cert": str, "key": str}
_LOG_KEYS = {"level": str, "format": str}
_METRICS_KEYS = {"port": (int, str), "listen": str}
_ACCOUNT_KEYS = {
    "password": str,
    "apop": bool,
    "plan": str,
    "os_generation": str,
    "quota_mb": (int, float, str),
    "storage": str,
}
#: Values of server.event_loop (pop3suite.server.server.loop_factory).
EVENT_LOOPS = ("asyncio", "uvloop", "auto")
#: POP3 listener names a relay_open_listeners entry may name.
RELAY_LISTENERS = ("pop3", "pop3s")
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list"}


def _type_name(expected: type | tuple[type, ...]) -> str:
    if isinstance(expected, tuple):
        if float in expected:
            return "a number or a string" if str in expected else "a number"
        return " or ".join(_TYPE_NAMES[t] for t in expected)
    return _TYPE_NAMES.get(expected, expected.__name__)


def _check_table(path: Path, prefix: str, table: Any, keys: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: '{prefix}' must be a table")
    for key, value in table.items():
        if key not in keys:
            raise ConfigError(f"{path}: unknown key '{prefix}.{key}' (known: {', '.join(sorted(keys))})")
        expected = keys[key]
        # bool is an int subclass: a port of `true` is a mistake, not 1.
        wrong_bool = isinstance(value, bool) and expected is not bool
        if wrong_bool or not isinstance(value, expected):
            raise ConfigError(f"{path}: key '{prefix}.{key}': expected {_type_name(expected)}, got {value!r}")
    return table


def _port(path: Path, key: str, value: int | str) -> int:
    if value == "auto":
        return AUTO_PORT
    if isinstance(value, str) or not 0 <= value <= 65535:
        raise ConfigError(
            f"{path}: key 'server.{key}': expected a port 0-65535 (0 = off) or \"auto\", got {value!r}"
        )
    return value


def load(path: str | Path) -> Settings:
    """Read and validate a config file.

    Raises:
        ConfigError: the file is missing, not TOML, or has a bad key.
    """
    path = Path(path).resolve()
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (create one with 'pop3suite init DIR')") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    return parse(data, path)


def parse(data: dict[str, Any], path: Path) -> Settings:
    """Validate an already-parsed TOML document (see :func:`load`)."""
    _check_table(
        path,
        "",
        data,
        {
            "server": dict,
            "tls": dict,
            "accounts": dict,
            "policy": dict,
            "log": dict,
            "metrics": dict,
            "era": dict,
        },
    )
    server = _check_table(path, "server", data.get("server", {}), _SERVER_KEYS)
    tls = _check_table(path, "tls", data.get("tls", {}), _TLS_KEYS)
    base = path.parent
    kwargs: dict[str, Any] = {"path": path}
    for key, value in server.items():
        if key.endswith("_port"):
            value = _port(path, key, value)
        elif key in _NOT_NEGATIVE and value < 0:
            raise ConfigError(f"{path}: key 'server.{key}': must not be negative, got {value}")
        elif key == "login_delay" and value < 0:
            raise ConfigError(f"{path}: key 'server.login_delay': must not be negative, got {value}")
        elif key == "expire":
            if (isinstance(value, int) and value < 0) or (isinstance(value, str) and value != "NEVER"):
                raise ConfigError(f"{path}: key 'server.expire': expected days (0 or more) or \"NEVER\"")
            value = str(value)
        elif key == "login_timeout" and value <= 0:
            raise ConfigError(f"{path}: key 'server.login_timeout': must be more than 0 seconds, got {value}")
        elif key == "max_connections_per_ip" and value < 0:
            raise ConfigError(
                f"{path}: key 'server.max_connections_per_ip': must be 0 (no limit) or more, got {value}"
            )
        elif key == "max_bad_commands" and value < 1:
            raise ConfigError(f"{path}: key 'server.max_bad_commands': must be at least 1, got {value}")
        elif key == "storage":
            _check_storage(path, "server.storage", value)
        elif key == "event_loop" and value not in EVENT_LOOPS:
            raise ConfigError(
                f"{path}: key 'server.event_loop': expected one of {', '.join(EVENT_LOOPS)}, got {value!r}"
            )
        elif key in ("mail_root", "spool_dir", "policy_log"):
            value = base / value
        elif key == "relay_open_listeners":
            if not all(isinstance(v, str) and v in RELAY_LISTENERS for v in value):
                raise ConfigError(
                    f"{path}: key 'server.relay_open_listeners': expected a list of "
                    f"{' / '.join(RELAY_LISTENERS)}, got {value!r}"
                )
            value = tuple(value)
        elif key == "domains":
            if not value or not all(isinstance(d, str) and d for d in value):
                raise ConfigError(f"{path}: key 'server.domains': expected a non-empty list of domain names")
            value = tuple(d.lower() for d in value)
        kwargs[key] = value
    kwargs.update(_operations(path, data))
    kwargs.setdefault("mail_root", base / "mail")
    kwargs.setdefault("spool_dir", base / "spool")
    kwargs["policy"] = policy_from_config(
        server.get("policy"), data.get("policy"), path, server.get("storage")
    )
    if kwargs["policy"] is not None:
        kwargs.setdefault("policy_log", base / "policy-log.jsonl")
    if "era" in data:
        from .prefork import parse_era

        kwargs["era"] = parse_era(data["era"], path)
    if tls:
        if set(tls) != {"cert", "key"}:
            raise ConfigError(f"{path}: table 'tls' needs both 'cert' and 'key'")
        kwargs["tls_cert"] = base / tls["cert"]
        kwargs["tls_key"] = base / tls["key"]
    accounts = {}
    for name, table in data.get("accounts", {}).items():
        if not SAFE_USERNAME.fullmatch(name) or ".." in name:
            raise ConfigError(f"{path}: account name {name!r}: use letters, digits and . _ + - only")
        entry = _check_table(path, f"accounts.{name}", table, _ACCOUNT_KEYS)
        if "password" not in entry:
            raise ConfigError(f"{path}: key 'accounts.{name}.password' is missing")
        try:
            passwords.check_format(entry["password"])
        except passwords.BadHash as error:
            raise ConfigError(f"{path}: key 'accounts.{name}.password': {error}") from None
        if entry.get("apop") and passwords.plain_secret(entry["password"]) is None:
            raise ConfigError(
                f"{path}: key 'accounts.{name}.apop': APOP needs the secret in the clear; "
                "give the password as '{PLAIN}secret'"
            )
        if "storage" in entry:
            _check_storage(path, f"accounts.{name}.storage", entry["storage"])
        accounts[name] = AccountSettings(
            name,
            entry["password"],
            entry.get("apop", False),
            **_quota_fields(path, name, entry),
            storage=entry.get("storage"),
        )
    kwargs["accounts"] = accounts
    settings = Settings(**kwargs)
    if settings.pop3_port == 0 and settings.pop3s_port == 0:
        raise ConfigError(f"{path}: key 'server.pop3_port': both pop3_port and pop3s_port are 0 (off)")
    if settings.pop3s_port and settings.tls_cert is None:
        raise ConfigError(
            f"{path}: key 'server.pop3s_port': implicit TLS needs a [tls] table with cert and key"
        )
    for key, what in (("submission_port", "STARTTLS"), ("smtps_port", "implicit TLS")):
        if getattr(settings, key) and settings.tls_cert is None:
            raise ConfigError(f"{path}: key 'server.{key}': {what} needs a [tls] table with cert and key")
    return settings


def _operations(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The [log] and [metrics] tables as Settings fields."""
    from .eventlog import LOG_FORMATS, LOG_LEVELS

    log = _check_table(path, "log", data.get("log", {}), _LOG_KEYS)
    metrics = _check_table(path, "metrics", data.get("metrics", {}), _METRICS_KEYS)
    fields: dict[str, Any] = {}
    for key, known in (("level", LOG_LEVELS), ("format", LOG_FORMATS)):
        if key in log:
            if log[key] not in known:
                raise ConfigError(
                    f"{path}: key 'log.{key}': expected one of {', '.join(known)}, got {log[key]!r}"
                )
            fields[f"log_{key}"] = log[key]
    if "port" in metrics:
        port = metrics["port"]
        if port == "auto":
            port = AUTO_PORT
        elif isinstance(port, str) or not 0 <= port <= 65535:
            raise ConfigError(
                f"{path}: key 'metrics.port': expected a port 0-65535 (0 = off) or \"auto\", got {port!r}"
            )
        fields["metrics_port"] = port
    if "listen" in metrics:
        fields["metrics_listen"] = metrics["listen"]
    return fields


def _check_storage(path: Path, key: str, value: str) -> None:
    if value not in STORAGE_BACKENDS:
        raise ConfigError(
            f"{path}: key '{key}': unknown storage {value!r} (known: {', '.join(STORAGE_BACKENDS)})"
        )


def _quota_fields(path: Path, name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Validate an account's plan, os_generation and quota_mb."""
    fields: dict[str, Any] = {}
    prefix = f"accounts.{name}"
    if "plan" in entry:
        if entry["plan"] not in plans.PLANS:
            raise ConfigError(
                f"{path}: key '{prefix}.plan': unknown plan {entry['plan']!r} "
                f"(known: {', '.join(plans.PLANS)})"
            )
        fields["plan"] = entry["plan"]
    if "os_generation" in entry:
        try:
            fields["os_generation"] = plans.normalize_os_generation(entry["os_generation"])
        except KeyError:
            raise ConfigError(
                f"{path}: key '{prefix}.os_generation': unknown OS generation {entry['os_generation']!r} "
                f"(known: {', '.join(plans.OS_GENERATIONS)}, centos6)"
            ) from None
    if "quota_mb" in entry:
        quota = entry["quota_mb"]
        wrong = isinstance(quota, str) and quota != "unlimited"
        if wrong or (not isinstance(quota, str) and quota <= 0):
            raise ConfigError(
                f"{path}: key '{prefix}.quota_mb': expected MB (more than 0) or \"unlimited\", got {quota!r}"
            )
        fields["quota_mb"] = quota
    return fields
