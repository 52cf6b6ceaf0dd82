"""The servers the matrix runs against, each as a ``pop3suite.target.model.Target``.

* the embedded reference server (``pop3suite.lab.embedded.start_embedded``:
  a temporary lab with alice, bob and carol, APOP for carol);
* any server given by URLs (``pop3suite.target.model.build``);
* the Dovecot peer started by ``scripts/peers/dovecot.sh`` on free loopback
  ports; its ``peer.env`` names ports, CA, password, seed route and the
  APOP account.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from pop3suite import peers
from pop3suite.peers import PEER_ROOT
from pop3suite.target.model import Target, build


class TargetUnavailable(RuntimeError):
    """A requested target could not be started (message says why)."""


@contextmanager
def embedded() -> Iterator[Target]:
    """The reference server in a temporary lab, stopped afterwards."""
    from pop3suite.lab.embedded import start_embedded

    server = start_embedded("rfc", fast=False, idle_timeout=120.0)
    try:
        yield server.target
    finally:
        server.stop()


def from_url(
    url: str,
    *,
    pop3s: str | None = None,
    cafile: str | None = None,
    seed: str = "smtp",
    smtp: str | None = None,
    apop_user: str | None = None,
    name: str | None = None,
) -> Target:
    """A target from ``--target`` and friends (raises ``TargetError``)."""
    return build(url, pop3s=pop3s, smtp=smtp, cafile=cafile, seed=seed, apop_user=apop_user, name=name)


def peer_target(env: dict[str, str]) -> Target:
    """The target a peer's ``peer.env`` describes."""
    host = env.get("PEER_HOST", "127.0.0.1")
    password = env["PEER_PASSWORD"]
    login = f"{env.get('PEER_USER', 'alice')}:{quote(password, safe='')}"
    pop3s = f"pop3s://{login}@{host}:{env['PEER_POP3S_PORT']}" if env.get("PEER_POP3S_PORT") else None
    return build(
        f"pop3://{login}@{host}:{env['PEER_POP3_PORT']}",
        pop3s=pop3s,
        cafile=env.get("PEER_CA"),
        seed=env.get("PEER_SEED", "smtp"),
        apop_user=f"{env['PEER_APOP_USER']}:{password}" if env.get("PEER_APOP_USER") else None,
        name=f"{env.get('PEER_NAME', 'peer')} {env.get('PEER_VERSION', '')}".strip(),
    )


@contextmanager
def peer(name: str, password: str = "interop pass") -> Iterator[Target]:
    """``scripts/peers/NAME.sh`` started on free ports, stopped afterwards.

    Raises:
        TargetUnavailable: no such script, or the peer cannot run here.
    """
    PEER_ROOT.mkdir(parents=True, exist_ok=True)
    PEER_ROOT.chmod(0o755)
    directory = Path(tempfile.mkdtemp(prefix=f"clients-{name}-", dir=PEER_ROOT))
    try:
        started = peers.start_peer(name, directory, password)
    except (peers.PeerUnavailable, RuntimeError, FileNotFoundError) as exc:
        shutil.rmtree(directory, ignore_errors=True)
        last = (str(exc).strip().splitlines() or ["no output"])[-1]
        raise TargetUnavailable(f"--peer {name}: {last}") from exc
    try:
        yield peer_target(started.env)
    finally:
        started.stop()
        shutil.rmtree(directory, ignore_errors=True)
