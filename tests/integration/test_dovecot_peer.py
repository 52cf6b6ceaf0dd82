"""Dovecot from Debian's packages as a real peer, started by
scripts/peers/dovecot.sh on free loopback ports and driven with the
project's own client: plain, STLS, implicit TLS, APOP, the session lock.

The first run installs dovecot-core and dovecot-pop3d (about 20 s); the
module then takes about 15 s, most of it Dovecot's ~10 s lock wait.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pop3suite.client import Pop3Client
from pop3suite.netutil import free_port
from tests.conftest import PASSWORD

# The module's first test may install Dovecot from Debian's packages.
pytestmark = [pytest.mark.realclient, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "peers" / "dovecot.sh"
# Not under pytest's 0700 basetemp: Dovecot's unprivileged processes must
# traverse every parent of the peer directory (see docs/peers.md).
PEER_ROOT = Path("/var/tmp/pop3suite-peers")
UNAVAILABLE = 4  # dovecot.sh: not root, no apt-get, or apt-get install failed

MESSAGE = b"Subject: dovecot peer\r\nX-Test: 1\r\n\r\n.leading dot\r\n..two dots\r\n+OK fake\r\nend\r\n"


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


def _script(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def _read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = shlex.split(line)[0].partition("=")
            values[key] = value
    return values


def _session_members(sid: int) -> list[int]:
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


def _log_tail(directory: Path) -> str:
    try:
        return "\n--- dovecot.log ---\n" + "\n".join(
            (directory / "dovecot.log").read_text().splitlines()[-20:]
        )
    except OSError:
        return ""


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    """Dovecot started by dovecot.sh on free ports; stopped at module end."""
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
        "PEER_PASSWORD": PASSWORD,
    }
    started = time.monotonic()
    result = _script("start", str(directory), env=env, timeout=900)
    if result.returncode == UNAVAILABLE:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"Dovecot peer cannot run here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr + _log_tail(directory)
    print(f"dovecot.sh start took {time.monotonic() - started:.2f} s: {result.stderr.strip()}")
    master_pid = int((directory / "dovecot.pid").read_text())
    try:
        yield Peer(directory, _read_env(directory / "peer.env"), master_pid)
    finally:
        _script("stop", str(directory))
        shutil.rmtree(directory, ignore_errors=True)


def _seed(peer: Peer, user: str, data: bytes, tmp_path: Path) -> None:
    message = tmp_path / "message.eml"
    message.write_bytes(data)
    result = _script("seed", str(peer.directory), user, str(message))
    assert result.returncode == 0, result.stderr


def test_plain_user_pass_retr_byte_exact(peer, tmp_path):
    """USER/PASS over plain TCP; RETR returns the seeded message byte for byte."""
    _seed(peer, "alice", MESSAGE, tmp_path)
    pop = peer.client()
    try:
        assert pop.greeting.ok
        pop.login("alice", peer.password)
        assert pop.stat() == (1, len(MESSAGE))
        assert pop.retr(1) == MESSAGE
        # pop3_uidl_format = %08Xu%08Xv: UID then UIDVALIDITY, 8 hex digits each
        assert re.fullmatch(r"[0-9A-Fa-f]{16}", pop.uidl()[1])
        assert pop.quit().ok
    finally:
        pop.close()


def test_stls_verifies_against_peer_ca(peer):
    """STLS upgrades with a certificate that verifies against the peer's CA."""
    pop = peer.client("stls")
    try:
        assert pop.tls_active
        assert "STLS" not in pop.capa()
        pop.login("bob", peer.password)
        assert pop.stat()[0] >= 0
        assert pop.quit().ok
    finally:
        pop.close()


def test_implicit_tls_with_sasl_plain(peer):
    """Implicit TLS on the pop3s port verifies against the peer's CA; SASL PLAIN logs in."""
    pop = peer.client("implicit")
    try:
        assert pop.tls_active and pop.greeting.ok
        pop.auth_plain("bob", peer.password)
        assert pop.stat()[0] >= 0
        assert pop.quit().ok
    finally:
        pop.close()


def test_implicit_tls_fails_without_peer_ca(peer):
    """A client trusting only the system CAs refuses the peer's test certificate."""
    pop = Pop3Client("127.0.0.1", peer.pop3s_port, tls="implicit", ssl_context=ssl.create_default_context())
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            pop.connect()
    finally:
        pop.close()


def test_apop_for_carol(peer):
    """The greeting carries a timestamp and APOP logs carol in ({PLAIN} passwd-file)."""
    pop = peer.client()
    try:
        assert "<" in pop.greeting.text and "@" in pop.greeting.text
        assert pop.apop("carol", peer.password).ok
        assert pop.stat()[0] >= 0
        assert pop.quit().ok
    finally:
        pop.close()


def test_second_concurrent_login(peer, record_property):
    """A second session for a logged-in user gets -ERR [IN-USE] or +OK; which, and when, is printed."""
    first = peer.client()
    second = peer.client()
    try:
        first.login("alice", peer.password)
        second.user("alice")
        started = time.monotonic()
        response = second.pass_(peer.password, check=False)
        waited = time.monotonic() - started
        behaviour = "+OK" if response.ok else "-ERR [IN-USE]"
        print(f"second concurrent login: {response.raw.decode().strip()!r} after {waited:.2f} s")
        record_property("dovecot_second_login", f"{behaviour} after {waited:.2f} s")
        assert response.ok or response.code == ("IN-USE",), response.raw
        assert first.noop().ok  # the first session keeps its lock and works on
        assert first.quit().ok
    finally:
        first.close()
        second.close()


def test_start_is_idempotent_and_status_reports_running(peer):
    """start on a running peer says so and exits 0 without a second master; status exits 0."""
    result = _script("start", str(peer.directory))
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stderr
    assert int((peer.directory / "dovecot.pid").read_text()) == peer.master_pid
    status = _script("status", str(peer.directory))
    assert status.returncode == 0 and "running" in status.stdout


def test_stop_leaves_no_dovecot_process(peer):
    """stop ends the master and all its processes, removes the pid file; a second stop exits 0."""
    assert _session_members(peer.master_pid), "the peer should be running before stop"
    result = _script("stop", str(peer.directory))
    assert result.returncode == 0, result.stderr
    assert _session_members(peer.master_pid) == []
    assert not (peer.directory / "dovecot.pid").exists()
    assert _script("status", str(peer.directory)).returncode == 3
    assert _script("stop", str(peer.directory)).returncode == 0
