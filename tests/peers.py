"""Real peer servers for the project's tests: Dovecot started by
scripts/peers/dovecot.sh on free loopback ports, stopped by PID.

Shared by the Dovecot peer tests and the conformance run against Dovecot.
"""

from __future__ import annotations

import os
import shlex
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from pop3suite.client import Pop3Client
from pop3suite.netutil import free_port

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "peers" / "dovecot.sh"
# Not under pytest's 0700 basetemp: Dovecot's unprivileged processes must
# traverse every parent of the peer directory (see docs/peers.md).
PEER_ROOT = Path("/var/tmp/pop3suite-peers")
UNAVAILABLE = 4  # dovecot.sh: not root, no apt-get, or apt-get install failed


@dataclass
class Peer:
    directory: Path
    env: dict[str, str]
    master_pid: int

    @property
    def pop3_port(self) -> int:
        return int(self.env["PEER_POP3_PORT"])

    @property
    def pop3s_port(self) -> int:
        return int(self.env["PEER_POP3S_PORT"])

    @property
    def password(self) -> str:
        return self.env["PEER_PASSWORD"]

    def context(self) -> ssl.SSLContext:
        """A client context that trusts only the peer's test CA."""
        return ssl.create_default_context(cafile=self.env["PEER_CA"])

    def client(self, mode: str = "plain", **kwargs: object) -> Pop3Client:
        """A connected client: ``plain``, ``stls`` or ``implicit``."""
        if mode == "implicit":
            pop = Pop3Client(
                "127.0.0.1", self.pop3s_port, tls="implicit", ssl_context=self.context(), **kwargs
            )
        elif mode == "stls":
            pop = Pop3Client("127.0.0.1", self.pop3_port, tls="stls", ssl_context=self.context(), **kwargs)
        else:
            pop = Pop3Client("127.0.0.1", self.pop3_port, **kwargs)
        pop.connect()
        return pop


def run_script(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = shlex.split(line)[0].partition("=")
            values[key] = value
    return values


def session_members(sid: int) -> list[int]:
    """Live processes whose session id is ``sid`` (Dovecot's master is a
    session leader, so these are all the processes of that instance)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in ("Z", "X") and int(fields[3]) == sid:
            members.append(int(stat.parent.name))
    return members


def log_tail(directory: Path) -> str:
    try:
        return "\n--- dovecot.log ---\n" + "\n".join(
            (directory / "dovecot.log").read_text().splitlines()[-20:]
        )
    except OSError:
        return ""


@contextmanager
def dovecot_peer(password: str) -> Iterator[Peer]:
    """Dovecot on free loopback ports (installed first if missing); skips
    the calling test with the reason when it cannot run on this machine."""
    installed = shutil.which("dovecot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is not None
    if not installed and shutil.which("apt-get") is None:
        pytest.skip("Dovecot is not installed and apt-get is unavailable to install it")
    PEER_ROOT.mkdir(parents=True, exist_ok=True)
    PEER_ROOT.chmod(0o755)
    directory = Path(tempfile.mkdtemp(prefix="test-", dir=PEER_ROOT))
    pop3_port = free_port()
    pop3s_port = free_port()
    while pop3s_port == pop3_port:
        pop3s_port = free_port()
    env = {
        **os.environ,
        "PEER_POP3_PORT": str(pop3_port),
        "PEER_POP3S_PORT": str(pop3s_port),
        "PEER_PASSWORD": password,
    }
    started = time.monotonic()
    result = run_script("start", str(directory), env=env, timeout=900)
    if result.returncode == UNAVAILABLE:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"Dovecot peer cannot run here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr + log_tail(directory)
    print(f"dovecot.sh start took {time.monotonic() - started:.2f} s: {result.stderr.strip()}")
    master_pid = int((directory / "dovecot.pid").read_text())
    try:
        yield Peer(directory, read_env(directory / "peer.env"), master_pid)
    finally:
        run_script("stop", str(directory))
        shutil.rmtree(directory, ignore_errors=True)
