"""The embedded default target of ``pop3suite check`` and ``pop3suite clients``:
the reference server in a temporary lab, described as a :class:`Target`.

Started as its own process with ``pop3suite serve`` (the command users run),
with everything enabled: plain + STLS, implicit TLS, APOP for carol, a
second user, and a short idle timeout so the timeout cases run in seconds
(``--idle-timeout`` tells the cases what to expect).  Fixtures are seeded by
writing alice's Maildir, or with ``pop3suite deliver`` when the lab uses the
mbox backend (``pop3suite check --storage mbox``, which is
``pytest --pop3-storage mbox``).
"""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pop3suite.target.model import Credentials, Endpoint, Target

from . import ServerProcess, auto_ports, start_server

EMBEDDED_PASSWORD = "conformance pass"  # contains a space on purpose (RFC 1939 §7)


@dataclass
class EmbeddedServer:
    directory: Path
    process: ServerProcess
    target: Target

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_embedded(
    profile: str, fast: bool, idle_timeout: float | None = None, storage: str | None = None
) -> EmbeddedServer:
    """Start the reference server in a fresh lab and describe it as a target.

    ``storage`` is "maildir" (the default) or "mbox".
    """
    from pop3suite.server.lab import LabOptions, create_lab

    storage = storage or "maildir"

    directory = Path(tempfile.mkdtemp(prefix="pop3suite-check-"))
    directory.chmod(0o755)
    timeout = idle_timeout if idle_timeout is not None else (3.0 if fast else 120.0)
    lab = create_lab(
        directory / "lab",
        LabOptions(
            password=EMBEDDED_PASSWORD,
            ports=auto_ports(),
            idle_timeout=timeout,
            login_failure_delay=0.1,
            scrypt_n=2**12,
            fsync=False,
            storage=storage,
        ),
    )
    process = start_server(lab.config_path)
    target = Target(
        name="reference",
        pop3=Endpoint("127.0.0.1", process.endpoints["pop3"], "none"),
        pop3s=Endpoint("127.0.0.1", process.endpoints["pop3s"], "implicit"),
        smtp=Endpoint("127.0.0.1", process.endpoints["smtp"], "none")
        if "smtp" in process.endpoints
        else None,
        user=Credentials("alice", EMBEDDED_PASSWORD),
        apop_user=Credentials("carol", EMBEDDED_PASSWORD),
        second_user=Credentials("bob", EMBEDDED_PASSWORD),
        cafile=str(lab.ca_file),
        idle_timeout=timeout,
        profile=profile,
        seed=_seed_route(storage, lab.settings.mail_root, lab.config_path),
        allow_destructive=True,
        fast=fast,
        embedded=True,
        extra={"config": str(lab.config_path)},
    )
    return EmbeddedServer(directory, process, target)


def _seed_route(storage: str, mail_root: Path, config_path: Path) -> str:
    """Write alice's Maildir directly; an mbox only through its own delivery
    path (the write lock and quoting live in the server's code)."""
    if storage == "maildir":
        return f"maildir:{mail_root / 'alice'}"
    command = [sys.executable, "-m", "pop3suite", "deliver", "--config", str(config_path)]
    return "exec:" + shlex.join(command)
