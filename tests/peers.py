"""Real peer servers for the project's tests, each started by its own
``scripts/peers/<name>.sh`` on free loopback ports and stopped by PID.

Every peer script has the same interface (start|stop|seed|status|env DIR)
and writes ``DIR/peer.env``; :func:`check_args` turns that file into the
``pop3suite check`` arguments for the server matrix.
"""

from __future__ import annotations

import contextlib
import os
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

from pop3suite import peers
from pop3suite.client import Pop3Client

ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPTS = ROOT / "scripts" / "peers"
SCRIPT = PEER_SCRIPTS / "dovecot.sh"
# Not under pytest's 0700 basetemp: Dovecot's unprivileged processes must
# traverse every parent of the peer directory (see docs/peers.md).
PEER_ROOT = peers.PEER_ROOT
UNAVAILABLE = peers.UNAVAILABLE  # a peer script: not root, no apt-get, or the install failed


@dataclass
class Peer:
    directory: Path
    env: dict[str, str]
    master_pid: int

    @property
    def name(self) -> str:
        return self.env.get("PEER_NAME", self.directory.name)

    @property
    def has_tls(self) -> bool:
        return bool(self.env.get("PEER_POP3S_PORT"))

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
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, script: Path = SCRIPT
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def read_env(path: Path) -> dict[str, str]:
    return peers.read_env(path)


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
    """The last lines of every ``*.log`` in the peer directory."""
    parts = []
    for log in sorted(directory.glob("*.log")):
        try:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            continue
        parts.append(f"\n--- {log.name} ---\n{tail}")
    return "".join(parts)


def _master_pid(name: str, directory: Path, env: dict[str, str]) -> int:
    if env.get("PEER_PID", "").isdigit():
        return int(env["PEER_PID"])
    return int((directory / f"{name}.pid").read_text().split()[0])


@contextmanager
def running_peer(name: str, password: str, **settings: str) -> Iterator[Peer]:
    """Peer ``name`` (``scripts/peers/<name>.sh``) on free loopback ports,
    installed first if missing; skips the calling test with the script's
    reason when the peer cannot run on this machine (exit 4)."""
    peers.script(name)  # FileNotFoundError for a peer without a script
    if shutil.which("apt-get") is None and shutil.which("dpkg") is None:
        pytest.skip(f"{name}: no apt-get/dpkg to install the peer")
    PEER_ROOT.mkdir(parents=True, exist_ok=True)
    PEER_ROOT.chmod(0o755)
    directory = Path(tempfile.mkdtemp(prefix=f"test-{name}-", dir=PEER_ROOT))
    started = time.monotonic()
    try:
        peer = peers.start_peer(name, directory, password, **settings)
    except peers.PeerUnavailable as exc:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"{name} peer cannot run here: {exc}")
    except RuntimeError as exc:
        pytest.fail(f"{exc}{log_tail(directory)}")
    print(f"{name}.sh start took {time.monotonic() - started:.2f} s")
    try:
        yield Peer(directory, peer.env, _master_pid(name, directory, peer.env))
    finally:
        peer.stop()
        shutil.rmtree(directory, ignore_errors=True)


def dovecot_peer(password: str, **settings: str) -> contextlib.AbstractContextManager[Peer]:
    """Dovecot on free loopback ports (see :func:`running_peer`)."""
    if shutil.which("dovecot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None and (
        shutil.which("apt-get") is None
    ):
        pytest.skip("Dovecot is not installed and apt-get is unavailable to install it")
    return running_peer("dovecot", password, **settings)


def check_args(peer: Peer) -> list[str]:
    """``pop3suite check`` arguments for a running peer (from its peer.env)."""
    return peers.check_args(peer.env)
