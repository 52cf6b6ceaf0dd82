"""Courier (Debian's courier-pop: pop3d + pop3d-ssl) as a real peer, started
by scripts/peers/courier.sh on free loopback ports in a private mount
namespace, and driven with the project's own client: plain, STLS, implicit
TLS, SASL PLAIN and CRAM-MD5, seeding through Courier's deliverquota, and a
conformance run whose only FAILED cases are the recorded deviations.

Opt-in (``peers`` marker).  The first run installs courier-base and its
authlib (about 10 s) and downloads courier-pop; the module then takes about
8 minutes, almost all of it the conformance run (Courier waits 5 s after
every failed login and ignores a NUL line until the next one arrives).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.integration.test_conformance_runs import check, unexpected_failures
from tests.peers import Peer, check_args, run_script, running_peer, session_members

pytestmark = [pytest.mark.peers, pytest.mark.slow, pytest.mark.timeout(1800)]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "peers" / "courier.sh"
# CRLF lines, dot-stuffing candidates and a "From " line: served byte for byte.
MESSAGE = b"Subject: courier peer\r\nX-Test: 1\r\n\r\n.leading dot\r\n..two dots\r\nFrom here\r\nend\r\n"


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    """Courier started by courier.sh on free ports; stopped at module end."""
    with running_peer("courier", PASSWORD) as started:
        yield started


def _seed(peer: Peer, user: str, data: bytes, tmp_path: Path) -> None:
    message = tmp_path / "message.eml"
    message.write_bytes(data)
    result = run_script("seed", str(peer.directory), user, str(message), script=SCRIPT)
    assert result.returncode == 0, result.stderr


def test_peer_env_describes_the_server(peer):
    """peer.env is private (0600) and names Courier's version, ports, CA, seed route and expectations."""
    env_file = peer.directory / "peer.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    env = peer.env
    assert env["PEER_NAME"] == "courier" and env["PEER_STLS"] == "yes"
    assert env["PEER_VERSION"].startswith("1.0.")
    assert env["PEER_USER"] == "alice" and env["PEER_SECOND_USER"] == "bob"
    assert "PEER_APOP_USER" not in env  # Courier's pop3login has no APOP
    assert env["PEER_SEED"].startswith("exec:") and env["PEER_SEED"].endswith(f"seed {peer.directory}")
    assert env["PEER_EXPECTATIONS"].endswith("conformance/expectations/courier.toml")
    assert int(env["PEER_PID"]) == peer.master_pid


def test_plain_user_pass_retr_byte_exact(peer, tmp_path):
    """USER/PASS over plain TCP (password with a space); RETR returns the seeded message byte for byte."""
    _seed(peer, "alice", MESSAGE, tmp_path)
    pop = peer.client()
    try:
        assert pop.greeting.ok
        pop.login("alice", peer.password)
        count, _ = pop.stat()
        assert count >= 1
        assert pop.retr(count) == MESSAGE
        assert pop.list()[count] == len(MESSAGE)
        assert pop.quit().ok
    finally:
        pop.close()


def test_stls_verifies_against_peer_ca(peer):
    """STLS upgrades with a certificate that verifies against the peer's CA; USER/PASS inside."""
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
    """Implicit TLS (pop3d-ssl, couriertls) verifies against the peer's CA; SASL PLAIN logs in."""
    pop = peer.client("implicit")
    try:
        assert pop.tls_active and pop.greeting.ok
        pop.auth_plain("bob", peer.password)
        assert pop.stat()[0] >= 0
        assert pop.quit().ok
    finally:
        pop.close()


def test_sasl_cram_md5_uses_the_clear_password(peer):
    """AUTH CRAM-MD5 (advertised in CAPA) logs carol in: userdb's clearpw is in place."""
    pop = peer.client()
    try:
        assert "CRAM-MD5" in " ".join(pop.capa())
        challenge = pop.command("AUTH CRAM-MD5")
        assert challenge.raw.startswith(b"+ "), challenge.raw
        digest = hmac.new(peer.password.encode(), base64.b64decode(challenge.raw[2:].strip()), hashlib.md5)
        answer = base64.b64encode(f"carol {digest.hexdigest()}".encode())
        assert pop.command(answer).ok
        assert pop.stat()[0] >= 0
        assert pop.quit().ok
    finally:
        pop.close()


def test_wrong_password_and_apop_are_refused(peer):
    """A wrong password gets -ERR; APOP is not implemented (no timestamp, -ERR)."""
    pop = peer.client()
    try:
        assert "<" not in pop.greeting.text
        assert not pop.command("APOP alice 0123456789abcdef0123456789abcdef", check=False).ok
        pop.user("alice")
        assert not pop.pass_("not " + peer.password, check=False).ok
    finally:
        pop.close()


def test_system_courier_state_is_untouched(peer):
    """The namespace keeps the peer's authlib files private: the host sees no peer socket and
    /etc/courier holds no userdb."""
    assert (peer.directory / "run" / "authdaemon" / "socket").is_socket()
    assert not Path("/etc/courier/userdb.dat").exists()
    assert not Path("/run/courier/authdaemon/socket").exists()


def test_two_instances_do_not_collide(peer):
    """A second Courier in another DIR runs beside the first, each with its own authdaemond."""
    with running_peer("courier", "other secret") as second:
        pop = second.client()
        try:
            pop.login("bob", "other secret")
            assert pop.quit().ok
        finally:
            pop.close()
    pop = peer.client()
    try:
        pop.login("bob", peer.password)
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
    assert int((peer.directory / "courier.pid").read_text()) == peer.master_pid
    status = run_script("status", str(peer.directory), script=SCRIPT)
    assert status.returncode == 0 and "running" in status.stdout


def test_stop_leaves_no_courier_process(peer):
    """stop ends the launcher, authdaemond, both couriertcpd and open sessions; a second stop exits 0."""
    lingering = peer.client()  # an open session must not survive stop either
    try:
        assert len(session_members(peer.master_pid)) >= 4
        result = run_script("stop", str(peer.directory), script=SCRIPT)
        assert result.returncode == 0, result.stderr
        assert session_members(peer.master_pid) == []
        assert not (peer.directory / "courier.pid").exists()
        assert run_script("status", str(peer.directory), script=SCRIPT).returncode == 3
        assert run_script("stop", str(peer.directory), script=SCRIPT).returncode == 0
    finally:
        lingering.close()


def test_conformance_only_expected_deviations(tmp_path):
    """`pop3suite check --fast` against a fresh Courier: FAILED only for the cases recorded in
    conformance/expectations/courier.toml, and every recorded case still fails."""
    with running_peer("courier", PASSWORD) as fresh:
        expectations_file = Path(fresh.env["PEER_EXPECTATIONS"])
        expectations = tomllib.loads(expectations_file.read_text())
        result = check(*check_args(fresh), "--fast", "--report", str(tmp_path / "courier"), timeout=1500)
        assert run_script("status", str(fresh.directory), script=SCRIPT).returncode == 0
    document = json.loads((tmp_path / "courier" / "results.json").read_text())
    assert unexpected_failures(document) == [], result.stdout[-4000:]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    seen = {c["id"].split("[")[0] for c in document["cases"] if c.get("deviation")}
    seen |= {c["id"] for c in document["cases"] if c.get("deviation")}
    stale = [case_id for case_id in expectations if case_id not in seen]
    assert stale == [], f"expectations no longer needed (Courier passes them now): {stale}"
