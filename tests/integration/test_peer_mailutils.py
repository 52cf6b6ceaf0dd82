"""GNU Mailutils pop3d (Debian 12's mailutils-pop3d) as a real peer, started
by scripts/peers/mailutils.sh on free loopback ports: logins over plain,
STLS, implicit TLS and APOP, mbox seeding read back byte for byte, a clean
stop, and a conformance run that may fail only where
pop3suite/conformance/expectations/mailutils.toml says so.

Opt-in (``-m peers``): the conformance run alone takes about 2.5 minutes.
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

# mbox traps: "From " and ">From " lines (mboxrd quoting must round-trip),
# a dot line (byte-stuffing) and 8-bit text.
MESSAGE = (
    b"From: peer@example.test\r\nSubject: mailutils peer\r\n\r\n"
    b"From here on\r\n>From quoted\r\n.leading dot\r\nGr\xfc\xdfe\r\nend\r\n"
)

peer = peer_fixture("mailutils")


def test_peer_env_describes_the_peer(peer):
    """peer.env carries what the matrix needs, and is private (0600)."""
    assert_peer_env(peer, "mailutils", "1:3.15")
    assert peer.env["PEER_STLS"] == "yes" and peer.env["PEER_APOP_USER"] == "carol"


def test_seeded_mbox_message_reads_back_byte_exact(peer, tmp_path):
    """seed appends to bob's mbox spool; RETR (before any UIDL) returns it
    byte for byte, "From " lines included."""
    seed(peer, "bob", MESSAGE, tmp_path)
    assert retr_last(peer, "bob")[1] == MESSAGE
    spool = (peer.directory / "spool" / "bob").read_bytes()
    assert b"\n>From here on\n>>From quoted\n" in spool  # mboxrd quoting on disk


@pytest.mark.parametrize("mode", ["plain", "stls", "implicit"])
def test_user_pass_in_every_mode(peer, mode):
    """USER/PASS works over plain TCP, after STLS and on the implicit-TLS port;
    a wrong password is refused."""
    assert_user_pass(peer, mode)


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
    assert peer.env["PEER_EXPECTATIONS"].endswith("pop3suite/conformance/expectations/mailutils.toml")
    assert_only_expected_deviations(peer, tmp_path / "report", "Mailutils")


class TestLifecycle(PeerLifecycle):
    """start/status/stop: stop ends the daemon and every session child (one is open); start again works."""

    name, pid_file, hold, restarts = "mailutils", "pop3d.pid", "bob", True
    min_members = 2  # the daemon and the open session's child
