"""popa3d (Debian's popa3d 1.0.3) as a real peer, started by
scripts/peers/popa3d.sh on a free loopback port behind socat, in a private
mount namespace that gives it its own accounts and mbox spool: USER/PASS,
mbox seeding (From_ line, >From quoting), the absence of TLS, and a
conformance run whose only FAILED cases are the recorded deviations.

Opt-in (``peers`` marker).  The first run downloads popa3d (no install);
the module then takes a few minutes, almost all of it the conformance run.
"""

from __future__ import annotations

import json
import pwd
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.integration.test_conformance_runs import check, unexpected_failures
from tests.peers import Peer, check_args, run_script, running_peer, session_members

pytestmark = [pytest.mark.peers, pytest.mark.slow, pytest.mark.timeout(1800)]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "peers" / "popa3d.sh"
# CRLF lines and dot-stuffing candidates, no "From " line: served byte for byte.
MESSAGE = b"Subject: popa3d peer\r\nX-Test: 1\r\n\r\n.leading dot\r\n..two dots\r\n+OK fake\r\nend\r\n"


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    """popa3d started by popa3d.sh on a free port; stopped at module end."""
    with running_peer("popa3d", PASSWORD) as started:
        yield started


def _seed(peer: Peer, user: str, data: bytes, tmp_path: Path) -> None:
    message = tmp_path / "message.eml"
    message.write_bytes(data)
    result = run_script("seed", str(peer.directory), user, str(message), script=SCRIPT)
    assert result.returncode == 0, result.stderr


def _login(peer: Peer, user: str = "alice"):
    pop = peer.client()
    pop.login(user, peer.password)
    return pop


def test_peer_env_records_no_tls(peer):
    """peer.env (0600) says popa3d has no TLS: no POP3S port, no STLS, no CA, no APOP user."""
    assert (peer.directory / "peer.env").stat().st_mode & 0o777 == 0o600
    env = peer.env
    assert env["PEER_NAME"] == "popa3d" and env["PEER_VERSION"].startswith("1.0.3")
    assert env["PEER_POP3S_PORT"] == "" and env["PEER_STLS"] == "no" and env["PEER_CA"] == ""
    assert "PEER_APOP_USER" not in env and not peer.has_tls
    assert env["PEER_SEED"] == f"exec:{SCRIPT} seed {peer.directory}"
    assert int(env["PEER_PID"]) == peer.master_pid


def test_plain_user_pass_retr_byte_exact(peer, tmp_path):
    """USER/PASS through PAM (password with a space); RETR returns the seeded message byte for byte."""
    _seed(peer, "alice", MESSAGE, tmp_path)
    pop = _login(peer)
    try:
        count, _ = pop.stat()
        assert count >= 1
        assert pop.retr(count) == MESSAGE
        assert pop.list()[count] == len(MESSAGE)
        assert pop.quit().ok
    finally:
        pop.close()


def test_seed_writes_an_mbox_with_from_quoting(peer, tmp_path):
    """seed appends a From_ line, stores LF line ends and quotes a body "From " as ">From "
    (which popa3d, like every mboxo reader, then serves as is)."""
    before = (peer.directory / "mail" / "bob").read_bytes()
    _seed(peer, "bob", b"Subject: quoting\r\n\r\nFrom the start\r\nend\r\n", tmp_path)
    added = (peer.directory / "mail" / "bob").read_bytes()[len(before) :]
    assert added.startswith(b"From pop3suite@localhost ")
    assert added.endswith(b"\nSubject: quoting\n\n>From the start\nend\n\n")
    pop = _login(peer, "bob")
    try:
        count, _ = pop.stat()
        assert pop.retr(count) == b"Subject: quoting\r\n\r\n>From the start\r\nend\r\n"
        pop.quit()
    finally:
        pop.close()


def test_wrong_password_and_missing_extensions(peer):
    """A wrong password gets -ERR; CAPA, STLS and APOP do not exist (-ERR), the greeting has no timestamp."""
    pop = peer.client()
    try:
        assert pop.greeting.raw == b"+OK\r\n"
        for line in ("CAPA", "STLS", "APOP alice 0123456789abcdef0123456789abcdef"):
            assert not pop.command(line, check=False).ok, line
        pop.user("alice")
        assert not pop.pass_("not " + peer.password, check=False).ok
    finally:
        pop.close()


def test_system_accounts_and_spool_are_untouched(peer):
    """The accounts and the spool exist only in the peer's namespace."""
    with pytest.raises(KeyError):
        pwd.getpwnam("alice")
    assert not Path("/var/mail/alice").exists()
    assert not Path("/var/lib/popa3d").exists()
    assert (peer.directory / "mail" / "alice").is_file()
    assert b"Authentication passed for alice" in (peer.directory / "syslog.log").read_bytes()


def test_two_instances_do_not_collide(peer):
    """A second popa3d in another DIR, with another password, runs beside the first."""
    with running_peer("popa3d", "other secret") as second:
        pop = second.client()
        try:
            pop.login("bob", "other secret")
            assert pop.quit().ok
        finally:
            pop.close()
    pop = _login(peer, "bob")
    try:
        assert pop.quit().ok
    finally:
        pop.close()


def test_usage_and_status_exit_codes(tmp_path):
    """No command is a usage error (2); status of a directory that never ran says stopped (3)."""
    assert run_script(script=SCRIPT).returncode == 2
    assert run_script("frobnicate", script=SCRIPT).returncode == 2
    status = run_script("status", str(tmp_path / "never-started"), script=SCRIPT)
    assert status.returncode == 3 and "stopped" in status.stdout
    assert run_script("stop", str(tmp_path / "never-started"), script=SCRIPT).returncode == 0


def test_start_is_idempotent_and_status_reports_running(peer):
    """start on a running peer says so and exits 0 with the same PID; status exits 0."""
    result = run_script("start", str(peer.directory), script=SCRIPT)
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stderr
    assert int((peer.directory / "popa3d.pid").read_text()) == peer.master_pid
    status = run_script("status", str(peer.directory), script=SCRIPT)
    assert status.returncode == 0 and "running" in status.stdout


def test_stop_leaves_no_popa3d_process(peer):
    """stop ends the launcher, socat, the syslog reader and open sessions; a second stop exits 0."""
    lingering = peer.client()  # a popa3d serving a session must not survive stop either
    try:
        assert len(session_members(peer.master_pid)) >= 3
        result = run_script("stop", str(peer.directory), script=SCRIPT)
        assert result.returncode == 0, result.stderr
        assert session_members(peer.master_pid) == []
        assert not (peer.directory / "popa3d.pid").exists()
        assert run_script("status", str(peer.directory), script=SCRIPT).returncode == 3
        assert run_script("stop", str(peer.directory), script=SCRIPT).returncode == 0
    finally:
        lingering.close()


def test_conformance_only_expected_deviations(tmp_path):
    """`pop3suite check --fast` against a fresh popa3d: FAILED only for the cases recorded in
    conformance/expectations/popa3d.toml, and every recorded case still fails."""
    with running_peer("popa3d", PASSWORD) as fresh:
        expectations = tomllib.loads(Path(fresh.env["PEER_EXPECTATIONS"]).read_text())
        result = check(*check_args(fresh), "--fast", "--report", str(tmp_path / "popa3d"), timeout=1500)
        assert run_script("status", str(fresh.directory), script=SCRIPT).returncode == 0
    document = json.loads((tmp_path / "popa3d" / "results.json").read_text())
    assert unexpected_failures(document) == [], result.stdout[-4000:]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    seen = {c["id"].split("[")[0] for c in document["cases"] if c.get("deviation")}
    seen |= {c["id"] for c in document["cases"] if c.get("deviation")}
    stale = [case_id for case_id in expectations if case_id not in seen]
    assert stale == [], f"expectations no longer needed (popa3d passes them now): {stale}"
