"""Start a lab and a broken server in it; run ``pop3suite check`` against it.

The lab is the one the embedded conformance target uses (alice, bob, carol
with APOP, a test CA, free ports, a 3 s idle timer); the server is
``python -m tests.broken_server`` with one fault, or ``none`` for the clean
reference server.  :func:`run_check` drives the real ``pop3suite check``
command and returns its results.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pop3suite.lab import ServerProcess, wait_ready

from .cases import keyword_expression

PASSWORD = "broken pass"
IDLE_TIMEOUT = 3.0
#: A loopback address that never logs in over POP (relay probes).
CLEAN_SOURCE = "127.0.0.2"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class BrokenLab:
    directory: Path
    fault: str
    server: ServerProcess

    def check_args(self) -> list[str]:
        """``pop3suite check`` options that describe this server as a target."""
        ports = self.server.endpoints
        user = f"{quote('alice')}:{quote(PASSWORD)}"
        return [
            f"pop3://{user}@127.0.0.1:{ports['pop3']}",
            "--pop3s", f"pop3s://{user}@127.0.0.1:{ports['pop3s']}",
            "--smtp", f"smtp://127.0.0.1:{ports['smtp']}",
            "--apop-user", f"carol:{PASSWORD}",
            "--second-user", f"bob:{PASSWORD}",
            "--cafile", str(self.directory / "tls" / "ca.pem"),
            "--idle-timeout", str(IDLE_TIMEOUT),
            "--seed", f"maildir:{self.directory / 'mail' / 'alice'}",
            "--source-address", CLEAN_SOURCE,
            "--profile", "provider",
            "--allow-destructive",
            "--fast",
            "--name", f"broken:{self.fault}",
        ]  # fmt: skip


def start(fault: str, directory: Path, timeout: float = 30.0) -> ServerProcess:
    """Run ``python -m tests.broken_server --fault FAULT`` for the lab in
    ``directory`` and wait for its ``ready`` line (as ``pop3suite serve``)."""
    from pop3suite.server.lab import LabOptions, create_lab

    ports: dict[str, int | str] = {"pop3_port": "auto", "pop3s_port": "auto", "smtp_port": "auto"}
    ports.update(submission_port=0, smtps_port=0)
    options = LabOptions(
        password=PASSWORD,
        ports=ports,
        idle_timeout=IDLE_TIMEOUT,
        login_failure_delay=0.1,
        scrypt_n=2**12,
        fsync=False,
    )
    lab = create_lab(directory, options)
    seed_fixtures(lab.settings.mail_root / "alice")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.broken_server", "--fault", fault, "--config", str(lab.config_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return _wait_ready(process, timeout)


def seed_fixtures(maildir: Path) -> None:
    """The suite's fixture messages (not the 1 MB / 10 MB ones) in alice's
    Maildir, as every full run has them: a run limited to a few cases may
    not include one that seeds them (the ``mailbox`` fixture tops up what
    is missing when a case needs it)."""
    from pop3suite.target.fixtures import all_fixtures
    from pop3suite.target.seeding import Seeder

    for fixture in all_fixtures(include_big=False).values():
        Seeder._to_maildir(maildir, fixture.data)


def _wait_ready(process: subprocess.Popen[str], timeout: float) -> ServerProcess:
    return wait_ready(process, timeout, "broken server")


@contextmanager
def broken_lab(fault: str) -> Iterator[BrokenLab]:
    """A fresh lab with the broken server for ``fault`` running in it."""
    directory = Path(tempfile.mkdtemp(prefix=f"pop3suite-broken-{fault}-"))
    directory.chmod(0o755)
    server = start(fault, directory / "lab")
    try:
        yield BrokenLab(directory / "lab", fault, server)
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class CheckRun:
    returncode: int
    outcomes: dict[str, str]  # case id -> outcome
    records: list[dict[str, Any]]
    output: str


def run_check(lab: BrokenLab, case_ids: Iterable[str] | None = None, timeout: float = 600.0) -> CheckRun:
    """``pop3suite check`` against ``lab`` (only the cases ``case_ids`` name,
    when given); the outcomes read from results.json."""
    report = lab.directory.parent / "report"
    argv = [sys.executable, "-m", "pop3suite", "check", *lab.check_args(), "--report", str(report)]
    if case_ids is not None:
        argv += ["-k", keyword_expression(case_ids)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    results = report / "results.json"
    if not results.exists():
        raise RuntimeError(
            f"pop3suite check wrote no results (rc {done.returncode}):\n{done.stdout}{done.stderr}"
        )
    document = json.loads(results.read_text(encoding="utf-8"))
    records = document["cases"]
    return CheckRun(
        done.returncode, {r["id"]: r["outcome"] for r in records}, records, done.stdout + done.stderr
    )
