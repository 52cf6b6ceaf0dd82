"""GNU Mailutils pop3d (Debian 12's mailutils-pop3d) as a real peer, started
by scripts/peers/mailutils.sh on free loopback ports: logins over plain,
STLS, implicit TLS and APOP, mbox seeding read back byte for byte, a clean
stop, and a conformance run that may fail only where
conformance/expectations/mailutils.toml says so.

Opt-in (``-m peers``): the conformance run alone takes about 2.5 minutes.
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

SCRIPT = PEER_SCRIPTS / "mailutils.sh"
EXPECTATIONS = Path(__file__).resolve().parents[2] / "conformance" / "expectations" / "mailutils.toml"
# mbox traps: "From " and ">From " lines (mboxrd quoting must round-trip),
# a dot line (byte-stuffing) and 8-bit text.
MESSAGE = (
    b"From: peer@example.test\r\nSubject: mailutils peer\r\n\r\n"
    b"From here on\r\n>From quoted\r\n.leading dot\r\nGr\xfc\xdfe\r\nend\r\n"
)


@pytest.fixture(scope="module")
def peer() -> Iterator[Peer]:
    with running_peer("mailutils", PASSWORD) as started:
        yield started


def seed(peer: Peer, user: str, data: bytes, tmp_path: Path) -> None:
    message = tmp_path / "message.eml"
    message.write_bytes(data)
    result = run_script("seed", str(peer.directory), user, str(message), script=SCRIPT)
    assert result.returncode == 0, result.stderr


def test_peer_env_describes_the_peer(peer):
    """peer.env carries what the matrix needs, and is private (0600)."""
    env = peer.env
    assert env["PEER_NAME"] == "mailutils" and env["PEER_STLS"] == "yes"
    assert env["PEER_USER"] == "alice" and env["PEER_APOP_USER"] == "carol"
    assert env["PEER_VERSION"].startswith("1:3.15")
    assert env["PEER_SEED"].startswith("exec:") and env["PEER_PASSWORD"] == PASSWORD
    assert int(env["PEER_PID"]) == peer.master_pid
    assert (peer.directory / "peer.env").stat().st_mode & 0o777 == 0o600


def test_seeded_mbox_message_reads_back_byte_exact(peer, tmp_path):
    """seed appends to bob's mbox spool; RETR (before any UIDL) returns it
    byte for byte, "From " lines included."""
    seed(peer, "bob", MESSAGE, tmp_path)
    pop = peer.client()
    try:
        pop.login("bob", peer.password)
        count, _ = pop.stat()
        assert pop.retr(count) == MESSAGE
        assert pop.quit().ok
    finally:
        pop.close()
    spool = (peer.directory / "spool" / "bob").read_bytes()
    assert b"\n>From here on\n>>From quoted\n" in spool  # mboxrd quoting on disk


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


def test_apop_with_popauth_database(peer):
    """APOP for carol works from the popauth GDBM file; a wrong secret fails."""
    pop = peer.client()
    try:
        assert "<" in pop.greeting.text
        assert not pop.apop("carol", "wrong", check=False).ok
    finally:
        pop.close()
    pop = peer.client()
    try:
        assert pop.apop("carol", peer.password).ok
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
    assert stale == [], f"expectations no longer needed (Mailutils passes them now): {stale}"


def test_stop_leaves_no_process_and_restarts(peer):
    """stop ends the daemon and every session child (one is open); start again works."""
    holder = peer.client()
    holder.login("bob", peer.password)
    try:
        assert len(session_members(peer.master_pid)) >= 2  # daemon + the session's child
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
