"""Real peer servers for the project's tests, each started by its own
``scripts/peers/<name>.sh`` on free loopback ports and stopped by PID.

Every peer script has the same interface (start|stop|seed|status|env DIR)
and writes ``DIR/peer.env``; :func:`check_args` turns that file into the
``pop3suite check`` arguments for the server matrix.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from pop3suite import peers
from pop3suite.client import ErrResponse, Pop3Client
from tests.conftest import PASSWORD

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

    @property
    def script(self) -> Path:
        """The peer's own ``scripts/peers/<name>.sh``."""
        return PEER_SCRIPTS / f"{self.name}.sh"

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run this peer's script (``start``, ``stop``, ``status``, ...)."""
        return run_script(*args, env=env, script=self.script)

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


# ----------------------------------------------------------------- shared test parts
#
# What every peer module checks the same way; each module keeps only what is
# specific to its server (message traps, authentication variants, namespace
# isolation, expectations).


def peer_fixture(name: str) -> Callable[[], Iterator[Peer]]:
    """A module-scoped ``peer`` fixture: ``name`` started with the tests'
    PASSWORD on free ports, stopped at module end (``peer = peer_fixture("cyrus")``)."""

    @pytest.fixture(scope="module")
    def peer() -> Iterator[Peer]:
        starter = dovecot_peer(PASSWORD) if name == "dovecot" else running_peer(name, PASSWORD)
        with starter as started:
            yield started

    return peer


def seed(peer: Peer, user: str, data: bytes, tmp_path: Path) -> None:
    """Deliver ``data`` to ``user`` through the peer script's ``seed``."""
    message = tmp_path / "message.eml"
    message.write_bytes(data)
    result = peer.run("seed", str(peer.directory), user, str(message))
    assert result.returncode == 0, result.stderr


def retr_last(peer: Peer, user: str, exact_list: bool = False) -> tuple[int, bytes]:
    """Log ``user`` in over plain TCP and RETR the newest message: (its
    number, its bytes).  ``exact_list``: LIST's size must equal the bytes
    served (not for servers that count stored bytes, e.g. mboxrd quoting)."""
    pop = peer.client()
    try:
        assert pop.greeting.ok
        pop.login(user, peer.password)
        count, _ = pop.stat()
        assert count >= 1
        data = pop.retr(count)
        if exact_list:
            assert pop.list()[count] == len(data)
        assert pop.quit().ok
    finally:
        pop.close()
    return count, data


def assert_user_pass(peer: Peer, mode: str, user: str = "carol") -> None:
    """USER/PASS over ``mode`` (plain, stls, implicit): TLS is active exactly
    when asked for; a wrong password is refused, the right one logs in."""
    pop = peer.client(mode)
    try:
        assert pop.tls_active == (mode != "plain")
        with pytest.raises(ErrResponse):
            pop.login(user, peer.password + "x")
    finally:
        pop.close()
    pop = peer.client(mode)
    try:
        assert pop.login(user, peer.password).ok
        assert pop.quit().ok
    finally:
        pop.close()


def assert_tls_login(peer: Peer, mode: str, user: str = "bob") -> None:
    """``mode`` "stls": STLS upgrades with a certificate that verifies
    against the peer's CA (and CAPA then offers no STLS), USER/PASS inside;
    "implicit": the pop3s port does, and SASL PLAIN logs in."""
    pop = peer.client(mode)
    try:
        assert pop.tls_active and pop.greeting.ok
        if mode == "stls":
            assert "STLS" not in pop.capa()
            pop.login(user, peer.password)
        else:
            pop.auth_plain(user, peer.password)
        assert pop.stat()[0] >= 0
        assert pop.quit().ok
    finally:
        pop.close()


def assert_second_instance(peer: Peer, user: str = "bob") -> None:
    """A second peer of the same kind, in another DIR with another password,
    runs beside the first; both log ``user`` in."""
    with running_peer(peer.name, "other secret") as second:
        pop = second.client()
        try:
            pop.login(user, "other secret")
            assert pop.quit().ok
        finally:
            pop.close()
    pop = peer.client()
    try:
        pop.login(user, peer.password)
        assert pop.quit().ok
    finally:
        pop.close()


def assert_usage_and_status_exit_codes(script: Path, tmp_path: Path) -> None:
    """No command or an unknown one is a usage error (2); status of a directory
    that never ran says stopped (3) and stop of it succeeds (0)."""
    assert run_script(script=script).returncode == 2
    assert run_script("frobnicate", script=script).returncode == 2
    status = run_script("status", str(tmp_path / "never-started"), script=script)
    assert status.returncode == 3 and "stopped" in status.stdout
    assert run_script("stop", str(tmp_path / "never-started"), script=script).returncode == 0


def assert_start_is_idempotent(peer: Peer, pid_file: str) -> None:
    """start on a running peer says so and exits 0 with the same PID; status exits 0."""
    result = peer.run("start", str(peer.directory))
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stderr
    assert int((peer.directory / pid_file).read_text()) == peer.master_pid
    status = peer.run("status", str(peer.directory))
    assert status.returncode == 0 and "running" in status.stdout


def assert_stop_leaves_no_process(peer: Peer, pid_file: str, min_members: int, hold: str = "") -> None:
    """stop ends every process of the peer's session (with a session held
    open: ``hold`` "connect" or a user name to log in), removes the pid file
    and the listener; status then exits 3 and a second stop exits 0."""
    holder = None
    if hold:
        holder = peer.client()
        if hold != "connect":
            holder.login(hold, peer.password)
    try:
        members = session_members(peer.master_pid)
        assert len(members) >= min_members, f"the peer should be running before stop: {members}"
        result = peer.run("stop", str(peer.directory))
        assert result.returncode == 0, result.stderr
        assert session_members(peer.master_pid) == []
        assert not (peer.directory / pid_file).exists()
        assert peer.run("status", str(peer.directory)).returncode == 3
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", peer.pop3_port), timeout=2).close()
        assert peer.run("stop", str(peer.directory)).returncode == 0
    finally:
        if holder is not None:
            holder.close()


def restart(peer: Peer) -> None:
    """start a stopped peer again in its directory on its ports: status exits 0."""
    env = {**os.environ, "PEER_POP3_PORT": str(peer.pop3_port), "PEER_PASSWORD": peer.password}
    if peer.has_tls:
        env["PEER_POP3S_PORT"] = str(peer.pop3s_port)
    started = peer.run("start", str(peer.directory), env=env)
    assert started.returncode == 0, started.stderr
    assert peer.run("status", str(peer.directory)).returncode == 0


def assert_peer_env(peer: Peer, name: str, version_prefix: str) -> None:
    """peer.env is private (0600) and carries what the server matrix needs:
    name, version, accounts, password, PID, seed route, expectations file."""
    assert (peer.directory / "peer.env").stat().st_mode & 0o777 == 0o600
    env = peer.env
    assert env["PEER_NAME"] == name and env["PEER_VERSION"].startswith(version_prefix), env
    assert env["PEER_USER"] == "alice" and env["PEER_SECOND_USER"] == "bob"
    assert env["PEER_PASSWORD"] == PASSWORD
    assert env["PEER_SEED"].startswith("exec:") and env["PEER_SEED"].endswith(f"seed {peer.directory}")
    assert env["PEER_EXPECTATIONS"].endswith(f"pop3suite/conformance/expectations/{name}.toml")
    assert int(env["PEER_PID"]) == peer.master_pid


class PeerLifecycle:
    """The script-interface checks every peer shares.  A module subclasses it
    as ``TestLifecycle`` after its own tests (the last check stops the
    module's peer) and sets: ``name``, ``pid_file``, ``min_members`` (the
    session's size while running), ``hold`` (see
    :func:`assert_stop_leaves_no_process`), ``gone`` (paths in DIR that stop
    must remove) and ``restarts`` (start again after the stop)."""

    name: str
    pid_file: str
    min_members: int = 1
    hold: str = ""
    gone: tuple[str, ...] = ()
    restarts: bool = False

    def test_usage_and_status_exit_codes(self, tmp_path):
        """No command is a usage error (2); status of a directory that never ran says stopped (3)."""
        assert_usage_and_status_exit_codes(PEER_SCRIPTS / f"{self.name}.sh", tmp_path)

    def test_start_is_idempotent_and_status_reports_running(self, peer):
        """start on a running peer says so and exits 0 with the same PID; status exits 0."""
        assert_start_is_idempotent(peer, self.pid_file)

    def test_stop_leaves_no_process(self, peer):
        """stop ends every process of the peer (open sessions too); a second stop exits 0."""
        assert_stop_leaves_no_process(peer, self.pid_file, self.min_members, self.hold)
        for pattern in self.gone:
            assert not list(peer.directory.glob(pattern)), f"{pattern} left behind by stop"
        if self.restarts:
            restart(peer)


def assert_only_expected_deviations(peer: Peer, report: Path, server: str, timeout: float = 900) -> None:
    """``pop3suite check --fast`` against a running peer FAILs only the cases
    recorded in its PEER_EXPECTATIONS file, and every recorded case still
    deviates (a stale expectation fails the test: ``server`` passes it now)."""
    # Imported here: test_conformance_runs imports this module.
    from tests.integration.test_conformance_runs import check, unexpected_failures

    expectations = tomllib.loads(Path(peer.env["PEER_EXPECTATIONS"]).read_text())
    result = check(*check_args(peer), "--fast", "--report", str(report), timeout=timeout)
    assert peer.run("status", str(peer.directory)).returncode == 0  # the run did not kill the peer
    document = json.loads((report / "results.json").read_text())
    assert unexpected_failures(document) == [], result.stdout[-4000:]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    seen = {c["id"] for c in document["cases"] if c.get("deviation")}
    seen |= {case_id.split("[")[0] for case_id in seen}
    stale = [case_id for case_id in expectations if case_id not in seen]
    assert stale == [], f"expectations no longer needed ({server} passes them now): {stale}"
