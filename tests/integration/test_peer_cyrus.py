"""Cyrus IMAP's POP3 server (Debian 12's cyrus-pop3d, unpacked into a
private root) as a real peer, started by scripts/peers/cyrus.sh on free
loopback ports: logins over plain, STLS, implicit TLS, APOP and SASL PLAIN,
LMTP seeding read back byte for byte, a clean stop, and a conformance run
that may fail only where conformance/expectations/cyrus.toml says so.

Opt-in (``-m peers``): the conformance run alone takes about 3.5 minutes.
"""

from __future__ import annotations

import json
import os
import socket
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from pop3suite.client import ErrResponse
from tests.conftest import PASSWORD
from tests.integration.test_conformance_runs import check, unexpected_failures
from tests.peers import PEER_SCRIPTS, Peer, check_args, run_script, running_peer, session_members

pytestmark = [pytest.mark.peers, pytest.mark.slow, pytest.mark.timeout(1200)]

SCRIPT = PEER_SCRIPTS / "cyrus.sh"
EXPECTATIONS = Path(__file__).resolve().parents[2] / "conformance" / "expectations" / "cyrus.toml"
# Message-ID and Date present, so lmtpd adds none; dot lines, 8-bit body.
MESSAGE = (
    b"From: peer@example.test\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <cyrus-peer@example.test>\r\nSubject: cyrus peer\r\n\r\n"
    b".leading dot\r\n..two dots\r\nFrom here\r\nGr\xfc\xdfe\r\nend\r\n"
)
# What lmtpd puts on top of a delivered message.
TRACE_FIELDS = (b"Return-Path:", b"Received:", b"X-Cyrus-Session-Id:", b"X-Sieve:")


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    with running_peer("cyrus", PASSWORD) as started:
        yield started


def test_peer_env_describes_the_peer(peer):
    """peer.env carries what the matrix needs, and is private (0600)."""
    env = peer.env
    assert env["PEER_NAME"] == "cyrus" and env["PEER_STLS"] == "yes"
    assert env["PEER_USER"] == "alice" and env["PEER_APOP_USER"] == "carol"
    assert env["PEER_VERSION"].startswith("3.6.1")
    assert env["PEER_SEED"].startswith("exec:") and env["PEER_PASSWORD"] == PASSWORD
    assert int(env["PEER_PID"]) == peer.master_pid
    assert (peer.directory / "peer.env").stat().st_mode & 0o777 == 0o600


def test_lmtp_seeded_message_reads_back_byte_exact(peer, tmp_path):
    """seed delivers over LMTP; RETR returns the message byte for byte below
    the trace header lines lmtpd prepends."""
    message = tmp_path / "message.eml"
    message.write_bytes(MESSAGE)
    result = run_script("seed", str(peer.directory), "bob", str(message), script=SCRIPT)
    assert result.returncode == 0, result.stderr
    pop = peer.client()
    try:
        pop.login("bob", peer.password)
        count, _ = pop.stat()
        data = pop.retr(count)
        assert pop.quit().ok
    finally:
        pop.close()
    assert data.endswith(MESSAGE)
    trace = data[: -len(MESSAGE)].split(b"\r\n")[:-1]
    assert trace and all(line.startswith(TRACE_FIELDS) or line[:1] in b" \t" for line in trace), trace


@pytest.mark.parametrize("mode", ["plain", "stls", "implicit"])
def test_user_pass_in_every_mode(peer, mode):
    """USER/PASS works over plain TCP, after STLS and on the implicit-TLS port;
    a wrong password is refused."""
    pop = peer.client(mode)
    try:
        assert pop.tls_active == (mode != "plain")
        with pytest.raises(ErrResponse):
            pop.login("carol", peer.password + "x")
    finally:
        pop.close()
    pop = peer.client(mode)
    try:
        assert pop.login("carol", peer.password).ok
        assert pop.quit().ok
    finally:
        pop.close()


def test_apop_and_sasl_plain_from_sasldb(peer):
    """APOP and AUTH PLAIN both check the private sasldb2; wrong secrets fail."""
    pop = peer.client()
    try:
        assert not pop.apop("carol", "wrong", check=False).ok
    finally:
        pop.close()
    pop = peer.client()
    try:
        assert pop.apop("carol", peer.password).ok
        assert pop.quit().ok
    finally:
        pop.close()
    pop = peer.client("implicit")
    try:
        assert pop.auth_plain("carol", peer.password).ok
        assert pop.quit().ok
    finally:
        pop.close()


def test_conformance_has_only_expected_deviations(peer, tmp_path):
    """pop3suite check fails only the recorded deviations, and each still happens."""
    expectations = tomllib.loads(EXPECTATIONS.read_text())
    result = check(*check_args(peer), "--fast", "--report", str(tmp_path / "report"))
    document = json.loads((tmp_path / "report" / "results.json").read_text())
    assert unexpected_failures(document) == [], result.stdout[-4000:]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    seen = {c["id"] for c in document["cases"] if c.get("deviation")}
    seen |= {case_id.split("[")[0] for case_id in seen}
    stale = [case_id for case_id in expectations if case_id not in seen]
    assert stale == [], f"expectations no longer needed (Cyrus passes them now): {stale}"


def test_stop_leaves_no_process_and_restarts(peer):
    """stop ends the master and every service process (a session is open);
    start again on the same directory works."""
    holder = peer.client()
    holder.login("bob", peer.password)
    try:
        assert len(session_members(peer.master_pid)) >= 2  # master + pop3d
        stopped = run_script("stop", str(peer.directory), script=SCRIPT)
        assert stopped.returncode == 0, stopped.stderr
        assert session_members(peer.master_pid) == []
        assert run_script("status", str(peer.directory), script=SCRIPT).returncode == 3
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", peer.pop3_port), timeout=2).close()
    finally:
        holder.close()
    env = {**os.environ, "PEER_POP3_PORT": str(peer.pop3_port), "PEER_POP3S_PORT": str(peer.pop3s_port)}
    env["PEER_PASSWORD"] = PASSWORD
    started = run_script("start", str(peer.directory), env=env, script=SCRIPT)
    assert started.returncode == 0, started.stderr
    assert run_script("status", str(peer.directory), script=SCRIPT).returncode == 0
