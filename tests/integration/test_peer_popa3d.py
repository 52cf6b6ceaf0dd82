"""popa3d (Debian's popa3d 1.0.3) as a real peer, started by
scripts/peers/popa3d.sh on a free loopback port behind socat, in a private
mount namespace that gives it its own accounts and mbox spool: USER/PASS,
mbox seeding (From_ line, >From quoting), the absence of TLS, and a
conformance run whose only FAILED cases are the recorded deviations.

Opt-in (``peers`` marker).  The first run downloads popa3d (no install);
the module then takes a few minutes, almost all of it the conformance run.
The checks every peer shares live in tests/peers.py.
"""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.peers import (
    PEER_SCRIPTS,
    PeerLifecycle,
    assert_only_expected_deviations,
    assert_peer_env,
    assert_second_instance,
    peer_fixture,
    retr_last,
    running_peer,
    seed,
)

pytestmark = [pytest.mark.peers, pytest.mark.slow, pytest.mark.timeout(1800)]

SCRIPT = PEER_SCRIPTS / "popa3d.sh"
# CRLF lines and dot-stuffing candidates, no "From " line: served byte for byte.
MESSAGE = b"Subject: popa3d peer\r\nX-Test: 1\r\n\r\n.leading dot\r\n..two dots\r\n+OK fake\r\nend\r\n"

peer = peer_fixture("popa3d")


def test_peer_env_records_no_tls(peer):
    """peer.env (0600) says popa3d has no TLS: no POP3S port, no STLS, no CA, no APOP user."""
    assert_peer_env(peer, "popa3d", "1.0.3")
    env = peer.env
    assert env["PEER_POP3S_PORT"] == "" and env["PEER_STLS"] == "no" and env["PEER_CA"] == ""
    assert "PEER_APOP_USER" not in env and not peer.has_tls
    assert env["PEER_SEED"] == f"exec:{SCRIPT} seed {peer.directory}"
    assert int(env["PEER_PID"]) == peer.master_pid


def test_plain_user_pass_retr_byte_exact(peer, tmp_path):
    """USER/PASS through PAM (password with a space); RETR returns the seeded message byte for byte."""
    seed(peer, "alice", MESSAGE, tmp_path)
    assert retr_last(peer, "alice", exact_list=True)[1] == MESSAGE


def test_seed_writes_an_mbox_with_from_quoting(peer, tmp_path):
    """seed appends a From_ line, stores LF line ends and quotes a body "From " as ">From "
    (which popa3d, like every mboxo reader, then serves as is)."""
    before = (peer.directory / "mail" / "bob").read_bytes()
    seed(peer, "bob", b"Subject: quoting\r\n\r\nFrom the start\r\nend\r\n", tmp_path)
    added = (peer.directory / "mail" / "bob").read_bytes()[len(before) :]
    assert added.startswith(b"From pop3suite@localhost ")
    assert added.endswith(b"\nSubject: quoting\n\n>From the start\nend\n\n")
    assert retr_last(peer, "bob")[1] == b"Subject: quoting\r\n\r\n>From the start\r\nend\r\n"


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
    assert_second_instance(peer)


class TestLifecycle(PeerLifecycle):
    """start/status/stop: stop ends the launcher, socat, the syslog reader and open sessions."""

    name, pid_file, min_members = "popa3d", "popa3d.pid", 3
    hold = "connect"  # a popa3d serving a session must not survive stop either
    gone = ("ns/dev/log",)  # no stale syslog socket


def test_conformance_only_expected_deviations(tmp_path):
    """`pop3suite check --fast` against a fresh popa3d: FAILED only for the cases recorded in
    pop3suite/conformance/expectations/popa3d.toml, and every recorded case still fails."""
    with running_peer("popa3d", PASSWORD) as fresh:
        assert_only_expected_deviations(fresh, tmp_path / "popa3d", "popa3d", timeout=1500)
