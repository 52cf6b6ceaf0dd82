"""A ready-to-run lab directory: config, mailboxes and a test PKI.

``pop3suite init DIR`` calls :func:`create_lab`; ``demo``, the tests and the
benchmarks use it too, so every lab looks the same.
"""

from __future__ import annotations

import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import config, passwords, tls
from .storage import open_store

DEMO_ACCOUNTS = (("alice", False), ("bob", False), ("carol", True))

#: Each demo account's hosting plan and server generation (the quota table
#: in pop3suite/server/plans.py): carol is on CentOS 5, where APOP exists.
DEMO_PLANS = {
    "alice": ("personal-shared", "almalinux9"),
    "bob": ("business-shared", "almalinux9"),
    "carol": ("personal-shared", "centos5"),
}

DEFAULT_PORTS = {
    "pop3_port": 11110,
    "pop3s_port": 11995,
    "smtp_port": 11025,
    "submission_port": 11587,
    "smtps_port": 11465,
}


@dataclass
class LabOptions:
    """What ``init`` writes.  ``password`` None means a random one."""

    password: str | None = None
    ports: dict[str, int | str] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    listen: str = "127.0.0.1"
    idle_timeout: float = 120
    login_failure_delay: float = 2.0
    scrypt_n: int = passwords.DEFAULT_N
    fsync: bool = True
    #: mailbox format of every account: "maildir" or "mbox" (docs/storage.md).
    storage: str = "maildir"


@dataclass(frozen=True)
class Lab:
    directory: Path
    config_path: Path
    password: str
    password_generated: bool
    settings: config.Settings

    @property
    def ca_file(self) -> Path:
        return self.directory / "tls" / "ca.pem"


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def create_lab(directory: str | Path, options: LabOptions | None = None) -> Lab:
    """Write ``DIR/pop3suite.toml``, ``DIR/mail/<account>/`` and ``DIR/tls/``.

    Raises:
        FileExistsError: ``DIR/pop3suite.toml`` exists already (never
            overwrite someone's lab).
    """
    options = options or LabOptions()
    directory = Path(directory).resolve()
    config_path = directory / "pop3suite.toml"
    if config_path.exists():
        raise FileExistsError(f"{config_path} exists already; remove it or choose another directory")
    directory.mkdir(parents=True, exist_ok=True)
    generated = options.password is None
    password = options.password if options.password is not None else secrets.token_urlsafe(12)
    tls.issue(directory / "tls")
    lines = [
        "# pop3suite lab, written by 'pop3suite init'.  Paths are relative to this file.",
        "",
        "[server]",
        f"listen = {_toml_string(options.listen)}",
    ]
    for key in DEFAULT_PORTS:
        value = options.ports.get(key, 0)
        lines.append(f"{key} = {_toml_string(value) if isinstance(value, str) else value}")
    lines += [
        "# The provider closes idle sessions after 120 s; RFC 1939 §3 asks for",
        "# at least 600 s.  Both numbers are kept on purpose (see README).",
        f"idle_timeout = {options.idle_timeout}",
        "# Seconds before a failed login is answered (Dovecot uses 2).",
        f"login_failure_delay = {options.login_failure_delay}",
        "max_bad_commands = 20",
        "cleartext_login = true",
        'mail_root = "mail"',
        'domains = ["example.test"]',
        f"fsync = {'true' if options.fsync else 'false'}",
        "# Mailbox format: maildir (a file per message) or mbox (one file per account,",
        "# scanned at every login and rewritten by DELE+QUIT, like old spool servers).",
        f"storage = {_toml_string(options.storage)}",
        "# POP-before-SMTP: a POP3 login on these listeners lets the client's",
        "# address relay through smtp_port for relay_window seconds (provider: 20 min).",
        "relay_window = 1200",
        'relay_open_listeners = ["pop3"]',
        "# Over-quota mail: 552 5.2.2 (false) or 452 4.2.2 (true).",
        "quota_tempfail = false",
        "# Relayed mail is written here; nothing leaves the machine.",
        'spool_dir = "spool"',
        "",
        "[tls]",
        'cert = "tls/server.pem"',
        'key = "tls/server.key"',
        "",
    ]
    for name, apop in DEMO_ACCOUNTS:
        # APOP needs the shared secret in the clear (one reason it is weak);
        # every other account keeps only a scrypt hash.
        stored = f"{{PLAIN}}{password}" if apop else passwords.hash_password(password, n=options.scrypt_n)
        lines += [f"[accounts.{name}]", f"password = {_toml_string(stored)}"]
        if apop:
            lines.append("apop = true")
        plan, os_generation = DEMO_PLANS.get(name, ("personal-shared", "almalinux9"))
        lines += [f"plan = {_toml_string(plan)}", f"os_generation = {_toml_string(os_generation)}"]
        lines.append("")
    text = "\n".join(lines)
    # Validate before writing, so a refused lab leaves no config behind.
    config.parse(tomllib.loads(text), config_path)
    config_path.write_text(text, encoding="utf-8")
    config_path.chmod(0o600)
    settings = config.load(config_path)
    store = open_store(settings)
    for name in settings.accounts:
        store.ensure_mailbox(name)
    return Lab(directory, config_path, password, generated, settings)


def add_accounts(lab: Lab, accounts: Mapping[str, bool], password: str, scrypt_n: int, note: str) -> None:
    """Append an ``[accounts.NAME]`` table per account to the lab's config,
    all with ``password``: APOP accounts (``True``) keep it in the clear, as
    APOP needs, the others one scrypt hash (cost ``scrypt_n``).  ``note`` is
    written as a comment above them (who added them and why).

    For the load suite's many simulated mailboxes: ``lab.settings`` is not
    reloaded, the server reads the file when it starts.
    """
    hashed = passwords.hash_password(password, n=scrypt_n)
    lines = ["", f"# {note}"]
    for name, apop in accounts.items():
        stored = f"{{PLAIN}}{password}" if apop else hashed
        lines += [f"[accounts.{name}]", f"password = {_toml_string(stored)}"]
        if apop:
            lines.append("apop = true")
        lines.append("")
    with open(lab.config_path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
