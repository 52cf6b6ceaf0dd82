"""Real peer servers started by the project's ``scripts/peers/<name>.sh``.

Every peer script has one interface (``start|stop|seed|status|env DIR``,
exit 4 = cannot run on this machine) and writes ``DIR/peer.env``, a
shell-sourceable file of ``PEER_*`` settings.  This module reads that file
and turns it into ``pop3suite check`` arguments, so the server matrix and
the tests treat every peer the same way.  The scripts live in a checkout
(they install Debian packages as root), not in the installed package.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .netutil import free_port

ROOT = Path(__file__).resolve().parents[1]
PEER_SCRIPTS = ROOT / "scripts" / "peers"
#: Not under a 0700 temporary directory: servers that drop privileges must
#: traverse every parent of the peer directory (see docs/peers.md).
PEER_ROOT = Path("/var/tmp/pop3suite-peers")
UNAVAILABLE = 4


class PeerUnavailable(RuntimeError):
    """The peer cannot run on this machine (script exit 4); the message says why."""


def available_peers() -> list[str]:
    """Names of the peer scripts in this checkout (``lib.sh`` is their shared helpers)."""
    return sorted(path.stem for path in PEER_SCRIPTS.glob("*.sh") if path.stem != "lib")


def read_env(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a peer.env (values quoted with ``printf %q``)."""
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            words = shlex.split(line)
            if words:
                key, _, value = words[0].partition("=")
                values[key] = value
    return values


def check_args(env: dict[str, str]) -> list[str]:
    """``pop3suite check`` arguments for a running peer described by its
    peer.env: target URLs, trust anchor, extra accounts, seed route and
    expectations file."""
    host = env.get("PEER_HOST", "127.0.0.1")
    password = env["PEER_PASSWORD"]
    user = f"{env.get('PEER_USER', 'alice')}:{quote(password, safe='')}"
    pop3s = f"pop3s://{user}@{host}:{env['PEER_POP3S_PORT']}" if env.get("PEER_POP3S_PORT") else None
    if env.get("PEER_POP3_PORT"):
        args = [f"pop3://{user}@{host}:{env['PEER_POP3_PORT']}"] + (["--pop3s", pop3s] if pop3s else [])
    elif pop3s:
        args = [pop3s]
    else:
        raise ValueError(f"{env.get('PEER_DIR', '?')}/peer.env names no POP3 port")
    args += ["--name", display_name(env)]
    if env.get("PEER_CA"):
        args += ["--cafile", env["PEER_CA"]]
    if env.get("PEER_APOP_USER"):
        args += ["--apop-user", f"{env['PEER_APOP_USER']}:{password}"]
    if env.get("PEER_SECOND_USER"):
        args += ["--second-user", f"{env['PEER_SECOND_USER']}:{password}"]
    if env.get("PEER_SEED"):
        args += ["--seed", env["PEER_SEED"], "--allow-destructive"]
    if env.get("PEER_EXPECTATIONS") and Path(env["PEER_EXPECTATIONS"]).exists():
        args += ["--expectations", env["PEER_EXPECTATIONS"]]
    return args


def display_name(env: dict[str, str]) -> str:
    """``name version`` as the matrix shows it."""
    name = env.get("PEER_NAME", "peer")
    version = env.get("PEER_VERSION", "")
    return f"{name} {version}".strip()


def script(name: str) -> Path:
    path = PEER_SCRIPTS / f"{name}.sh"
    if not path.exists():
        known = ", ".join(available_peers()) or "none"
        raise FileNotFoundError(f"no peer script {path} (known peers: {known})")
    return path


def run_script(
    name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script(name)), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )


@dataclass
class StartedPeer:
    name: str
    directory: Path
    env: dict[str, str]

    def stop(self) -> None:
        run_script(self.name, "stop", str(self.directory))


def start_peer(name: str, directory: Path, password: str, **settings: str) -> StartedPeer:
    """Start peer ``name`` in ``directory`` on free loopback ports.

    Raises:
        PeerUnavailable: the script exited 4 (not root, package unavailable).
        RuntimeError: the script failed; the message has its stderr.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    pop3_port = free_port()
    pop3s_port = free_port()
    while pop3s_port == pop3_port:
        pop3s_port = free_port()
    env = {
        **os.environ,
        "PEER_POP3_PORT": str(pop3_port),
        "PEER_POP3S_PORT": str(pop3s_port),
        "PEER_PASSWORD": password,
        **settings,
    }
    result = run_script(name, "start", str(directory), env=env, timeout=900)
    if result.returncode == UNAVAILABLE:
        lines = result.stderr.strip().splitlines() or ["no reason given"]
        raise PeerUnavailable(f"{name}: {lines[-1]}")
    if result.returncode != 0:
        raise RuntimeError(f"{name}.sh start {directory} exited {result.returncode}:\n{result.stderr}")
    return StartedPeer(name, directory, read_env(directory / "peer.env"))
