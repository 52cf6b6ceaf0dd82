"""The embedded default target: the reference server in a temporary lab.

Started as its own process with ``pop3suite serve`` (the command users run),
with everything enabled: plain + STLS, implicit TLS, APOP for carol, a
second user, and a short idle timeout so the timeout cases run in seconds
(``--idle-timeout`` tells the cases what to expect).  Fixtures are seeded by
writing alice's Maildir.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pop3suite.demo import ServerProcess, start_server

from .target import Credentials, Endpoint, Target

EMBEDDED_PASSWORD = "conformance pass"  # contains a space on purpose (RFC 1939 §7)


@dataclass
class EmbeddedServer:
    directory: Path
    process: ServerProcess
    target: Target

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_embedded(profile: str, fast: bool, idle_timeout: float | None = None) -> EmbeddedServer:
    """Start the reference server in a fresh lab and describe it as a target."""
    from reference_server.lab import LabOptions, create_lab

    directory = Path(tempfile.mkdtemp(prefix="pop3suite-check-"))
    directory.chmod(0o755)
    timeout = idle_timeout if idle_timeout is not None else (3.0 if fast else 120.0)
    ports = {"pop3_port": "auto", "pop3s_port": "auto", "smtp_port": "auto"}
    ports.update(submission_port=0, smtps_port=0)
    lab = create_lab(
        directory / "lab",
        LabOptions(
            password=EMBEDDED_PASSWORD,
            ports=ports,
            idle_timeout=timeout,
            login_failure_delay=0.1,
            scrypt_n=2**12,
            fsync=False,
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
        seed=f"maildir:{lab.settings.mail_root / 'alice'}",
        allow_destructive=True,
        fast=fast,
        embedded=True,
        extra={"config": str(lab.config_path)},
    )
    return EmbeddedServer(directory, process, target)
