"""Cyrus IMAP's POP3 server (Debian 12's cyrus-pop3d, unpacked into a
private root) as a real peer, started by scripts/peers/cyrus.sh on free
loopback ports: logins over plain, STLS, implicit TLS, APOP and SASL PLAIN,
LMTP seeding read back byte for byte, a clean stop, and a conformance run
that may fail only where pop3suite/conformance/expectations/cyrus.toml says so.

Opt-in (``-m peers``): the conformance run alone takes about 3.5 minutes.
The checks every peer shares live in tests/peers.py.
"""

from __future__ import annotations

import pytest

from tests.peers import (
    PeerLifecycle,
    assert_only_expected_deviations,
    assert_peer_env,
    assert_user_pass,
    peer_fixture,
    retr_last,
    seed,
)

pytestmark = [pytest.mark.peers, pytest.mark.slow, pytest.mark.timeout(1200)]

# Message-ID and Date present, so lmtpd adds none; dot lines, 8-bit body.
MESSAGE = (
    b"From: peer@example.test\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <cyrus-peer@example.test>\r\nSubject: cyrus peer\r\n\r\n"
    b".leading dot\r\n..two dots\r\nFrom here\r\nGr\xfc\xdfe\r\nend\r\n"
)
# What lmtpd puts on top of a delivered message.
TRACE_FIELDS = (b"Return-Path:", b"Received:", b"X-Cyrus-Session-Id:", b"X-Sieve:")

peer = peer_fixture("cyrus")


def test_peer_env_describes_the_peer(peer):
    """peer.env carries what the matrix needs, and is private (0600)."""
    assert_peer_env(peer, "cyrus", "3.6.1")
    assert peer.env["PEER_STLS"] == "yes" and peer.env["PEER_APOP_USER"] == "carol"


def test_lmtp_seeded_message_reads_back_byte_exact(peer, tmp_path):
    """seed delivers over LMTP; RETR returns the message byte for byte below
    the trace header lines lmtpd prepends."""
    seed(peer, "bob", MESSAGE, tmp_path)
    _, data = retr_last(peer, "bob")
    assert data.endswith(MESSAGE)
    trace = data[: -len(MESSAGE)].split(b"\r\n")[:-1]
    assert trace and all(line.startswith(TRACE_FIELDS) or line[:1] in b" \t" for line in trace), trace


@pytest.mark.parametrize("mode", ["plain", "stls", "implicit"])
def test_user_pass_in_every_mode(peer, mode):
    """USER/PASS works over plain TCP, after STLS and on the implicit-TLS port;
    a wrong password is refused."""
    assert_user_pass(peer, mode)


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
    assert peer.env["PEER_EXPECTATIONS"].endswith("pop3suite/conformance/expectations/cyrus.toml")
    assert_only_expected_deviations(peer, tmp_path / "report", "Cyrus")


class TestLifecycle(PeerLifecycle):
    """start/status/stop: stop ends the master and every service process (a session is open);
    start again on the same directory works."""

    name, pid_file, hold, restarts = "cyrus", "cyrus.pid", "bob", True
    min_members = 2  # master + pop3d
    gone = ("master.pid",)
