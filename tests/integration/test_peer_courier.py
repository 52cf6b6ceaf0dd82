"""Courier (Debian's courier-pop: pop3d + pop3d-ssl) as a real peer, started
by scripts/peers/courier.sh on free loopback ports in a private mount
namespace, and driven with the project's own client: plain, STLS, implicit
TLS, SASL PLAIN and CRAM-MD5, seeding through Courier's deliverquota, and a
conformance run whose only FAILED cases are the recorded deviations.

Opt-in (``peers`` marker).  The first run installs courier-base and its
authlib (about 10 s) and downloads courier-pop; the module then takes about
8 minutes, almost all of it the conformance run (Courier waits 5 s after
every failed login and ignores a NUL line until the next one arrives).
The checks every peer shares live in tests/peers.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.peers import (
    PeerLifecycle,
    assert_only_expected_deviations,
    assert_peer_env,
    assert_second_instance,
    assert_tls_login,
    peer_fixture,
    retr_last,
    running_peer,
    seed,
)

pytestmark = [pytest.mark.peers, pytest.mark.slow, pytest.mark.timeout(1800)]

# CRLF lines, dot-stuffing candidates and a "From " line: served byte for byte.
MESSAGE = b"Subject: courier peer\r\nX-Test: 1\r\n\r\n.leading dot\r\n..two dots\r\nFrom here\r\nend\r\n"

peer = peer_fixture("courier")


def test_peer_env_describes_the_server(peer):
    """peer.env is private (0600) and names Courier's version, ports, CA, seed route and expectations."""
    assert_peer_env(peer, "courier", "1.0.")
    assert peer.env["PEER_STLS"] == "yes"
    assert "PEER_APOP_USER" not in peer.env  # Courier's pop3login has no APOP


def test_plain_user_pass_retr_byte_exact(peer, tmp_path):
    """USER/PASS over plain TCP (password with a space); RETR returns the seeded message byte for byte."""
    seed(peer, "alice", MESSAGE, tmp_path)
    assert retr_last(peer, "alice", exact_list=True)[1] == MESSAGE


def test_stls_verifies_against_peer_ca(peer):
    """STLS upgrades with a certificate that verifies against the peer's CA; USER/PASS inside."""
    assert_tls_login(peer, "stls")


def test_implicit_tls_with_sasl_plain(peer):
    """Implicit TLS (pop3d-ssl, couriertls) verifies against the peer's CA; SASL PLAIN logs in."""
    assert_tls_login(peer, "implicit")


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
    assert_second_instance(peer)


class TestLifecycle(PeerLifecycle):
    """start/status/stop: stop ends the launcher, authdaemond, both couriertcpd and open sessions."""

    name, pid_file, min_members, hold = "courier", "courier.pid", 4, "connect"
    gone = ("run/authdaemon/socket*",)  # no stale authdaemond socket


def test_conformance_only_expected_deviations(tmp_path):
    """`pop3suite check --fast` against a fresh Courier: FAILED only for the cases recorded in
    pop3suite/conformance/expectations/courier.toml, and every recorded case still fails."""
    with running_peer("courier", PASSWORD) as fresh:
        assert_only_expected_deviations(fresh, tmp_path / "courier", "Courier", timeout=1500)
