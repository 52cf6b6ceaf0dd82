"""Dovecot from Debian's packages as a real peer, started by
scripts/peers/dovecot.sh on free loopback ports and driven with the
project's own client: plain, STLS, implicit TLS, APOP, the session lock.

The first run installs dovecot-core and dovecot-pop3d (about 20 s); the
module then takes about 15 s, most of it Dovecot's ~10 s lock wait.
The checks every peer shares live in tests/peers.py.
"""

from __future__ import annotations

import re
import ssl
import time

import pytest

from pop3suite.client import Pop3Client
from tests.peers import (
    PeerLifecycle,
    assert_tls_login,
    peer_fixture,
    seed,
)

# The module's first test may install Dovecot from Debian's packages.
pytestmark = [pytest.mark.realclient, pytest.mark.timeout(900)]

MESSAGE = b"Subject: dovecot peer\r\nX-Test: 1\r\n\r\n.leading dot\r\n..two dots\r\n+OK fake\r\nend\r\n"


# Dovecot started by dovecot.sh on free ports; stopped at module end.
peer = peer_fixture("dovecot")


def test_plain_user_pass_retr_byte_exact(peer, tmp_path):
    """USER/PASS over plain TCP; RETR returns the seeded message byte for byte."""
    seed(peer, "alice", MESSAGE, tmp_path)
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
    assert_tls_login(peer, "stls")


def test_implicit_tls_with_sasl_plain(peer):
    """Implicit TLS on the pop3s port verifies against the peer's CA; SASL PLAIN logs in."""
    assert_tls_login(peer, "implicit")


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


class TestLifecycle(PeerLifecycle):
    """start/status/stop: stop ends the master and all its processes and removes the pid files."""

    name, pid_file = "dovecot", "dovecot.pid"
    gone = ("run/master.pid",)
