"""TLS and authentication over real sockets: implicit TLS, STLS (including
the CVE-2011-0411 injection probe), protocol-version floor, APOP, SASL PLAIN,
uniform failure replies, the cleartext-login policy and LOGIN-DELAY.

security-probes.md §3 (T1, A5-A12) and rfc-checklist.md (RFC 1939 §7,
RFC 2449 §8, RFC 2595, RFC 3206, RFC 5034, RFC 8314) name the requirements.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
import warnings

import pytest

from pop3suite.client import apop_timestamp
from pop3suite.proto import apop_digest, capability_map, parse_status_line, sasl_plain_encode
from tests.conftest import PASSWORD, open_client

MSGID_RE = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")


# ------------------------------------------------------------------ helpers


def recv_line(sock: socket.socket) -> bytes:
    """One line read byte by byte, so nothing after it is consumed."""
    line = b""
    while not line.endswith(b"\n"):
        byte = sock.recv(1)
        assert byte, f"connection closed after {line!r}"
        line += byte
    return line


digest = apop_digest  # the RFC 1939 example is checked in tests/unit/test_proto_parsers.py


def tags(capa: list[str]) -> set[str]:
    return set(capability_map(capa))


# ----------------------------------------------------------- implicit TLS


def test_implicit_tls_greets_inside_tls(server, tls_context):
    """On the pop3s port TLS comes first and the +OK greeting arrives inside it (RFC 8314 §3.1)."""
    with socket.create_connection(("127.0.0.1", server.port("pop3s")), timeout=5) as raw:
        raw.settimeout(0.5)
        with pytest.raises(TimeoutError):
            raw.recv(1)  # no plaintext greeting before the handshake
        raw.settimeout(5)
        with tls_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert parse_status_line(recv_line(tls)).ok


def test_plaintext_command_on_pop3s_port_never_gets_ok(server):
    """Plaintext POP3 sent to the implicit-TLS port is never answered with +OK (RFC 8314 §3.1)."""
    with socket.create_connection(("127.0.0.1", server.port("pop3s")), timeout=5) as raw:
        raw.sendall(b"USER x\r\n")
        raw.settimeout(3)
        data = b""
        try:
            while chunk := raw.recv(4096):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    assert b"+OK" not in data


# ------------------------------------------------------------------- STLS


def test_stls_discards_pipelined_plaintext(server, tls_context):
    """Plaintext pipelined after STLS is discarded, never answered inside TLS (RFC 2595 §4, CVE-2011-0411)."""
    with socket.create_connection(("127.0.0.1", server.port()), timeout=5) as raw:
        assert parse_status_line(recv_line(raw)).ok
        raw.sendall(b"STLS\r\nCAPA\r\n")
        assert parse_status_line(recv_line(raw)).ok
        with tls_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.settimeout(1)
            with pytest.raises(TimeoutError):
                data = tls.recv(4096)
                pytest.fail(f"injected command was answered inside TLS: {data!r}")
            tls.settimeout(5)
            tls.sendall(b"CAPA\r\n")
            assert parse_status_line(recv_line(tls)).ok
            lines = []
            while (line := recv_line(tls)) != b".\r\n":
                lines.append(line.decode().strip())
            assert "STLS" not in tags(lines)
            assert "USER" in tags(lines)


def test_user_before_stls_is_forgotten(connect, tls_context):
    """USER given before STLS is forgotten: PASS after the handshake fails (RFC 2595 §4)."""
    pop = connect("plain", timeout=5, ssl_context=tls_context)
    assert pop.user("alice").ok
    pop.stls()
    assert pop.tls_active
    response = pop.pass_(PASSWORD, check=False)
    assert not response.ok
    pop.login("alice", PASSWORD)
    assert pop.stat() == (0, 0)


def test_stls_after_login_refused(connect):
    """STLS after login gets -ERR and the session goes on in cleartext (RFC 2595 §4)."""
    pop = connect("plain", timeout=5)
    pop.login("alice", PASSWORD)
    assert not pop.command("STLS", check=False).ok
    assert not pop.tls_active
    assert pop.noop().ok


@pytest.mark.parametrize("mode", ["stls", "implicit"])
def test_stls_with_tls_active_refused(mode, connect):
    """STLS when TLS is already active gets -ERR and is not advertised (RFC 2595 §4)."""
    pop = connect(mode, timeout=5)
    assert "STLS" not in tags(pop.capa())
    assert not pop.command("STLS", check=False).ok
    pop.login("alice", PASSWORD)
    assert pop.noop().ok


# ---------------------------------------------------------- TLS versions


def _client_context(ca_file, version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(ca_file))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version
    return context


def _handshake(context: ssl.SSLContext, port: int, stls: bool) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        if stls:
            assert parse_status_line(recv_line(raw)).ok
            raw.sendall(b"STLS\r\n")
            assert parse_status_line(recv_line(raw)).ok
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            if not stls:
                assert parse_status_line(recv_line(tls)).ok
            else:
                tls.sendall(b"CAPA\r\n")
                assert parse_status_line(recv_line(tls)).ok
            return tls.version() or ""


@pytest.mark.parametrize("stls", [False, True], ids=["implicit", "stls"])
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1], ids=["1.0", "1.1"])
def test_tls_1_0_and_1_1_refused(version, stls, server, lab):
    """A client limited to TLS 1.0 or 1.1 cannot complete a handshake (RFC 8314 §4.1, RFC 8996)."""
    port = server.port() if stls else server.port("pop3s")
    # If the local OpenSSL cannot even offer the old version, building the
    # context or the handshake fails on our side: still no session, which is
    # the point.
    with pytest.raises((ssl.SSLError, OSError, ValueError)):
        _handshake(_client_context(lab.ca_file, version), port, stls)


@pytest.mark.parametrize("stls", [False, True], ids=["implicit", "stls"])
@pytest.mark.parametrize(
    ("version", "name"), [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (ssl.TLSVersion.TLSv1_3, "TLSv1.3")]
)
def test_tls_1_2_and_1_3_accepted(version, name, stls, server, lab):
    """TLS 1.2 and TLS 1.3 handshakes succeed on both the STLS and the implicit-TLS port (RFC 8314 §4.1)."""
    port = server.port() if stls else server.port("pop3s")
    assert _handshake(_client_context(lab.ca_file, version), port, stls) == name


# ------------------------------------------------------------------- APOP


def test_apop_timestamps_are_unique_msg_ids(server):
    """Every greeting carries a different <...@...> timestamp (RFC 1939 §7)."""
    seen = set()
    for _ in range(200):
        with socket.create_connection(("127.0.0.1", server.port()), timeout=5) as raw:
            greeting = parse_status_line(recv_line(raw))
        timestamp = apop_timestamp(greeting)
        assert timestamp is not None and MSGID_RE.fullmatch(timestamp), greeting.raw
        seen.add(timestamp)
    assert len(seen) == 200


@pytest.mark.parametrize("mode", ["plain", "stls", "implicit"])
def test_apop_correct_digest_logs_in(mode, connect, deliver):
    """The lower-case hex MD5 of timestamp + secret logs the APOP account in (RFC 1939 §7)."""
    deliver("carol", b"Subject: for carol\r\n\r\nhi\r\n")
    pop = connect(mode, timeout=5)
    assert pop.apop("carol", PASSWORD).ok
    assert pop.retr(1) == b"Subject: for carol\r\n\r\nhi\r\n"


def test_apop_wrong_uppercase_or_replayed_digest_fails(connect):
    """A wrong, upper-case or replayed APOP digest fails with [AUTH]; retry is possible (RFC 1939 §7)."""
    first = connect("plain", timeout=5)
    old_timestamp = apop_timestamp(first.greeting)
    assert old_timestamp is not None
    replayed = digest(old_timestamp, PASSWORD)
    assert first.apop("carol", PASSWORD).ok  # the digest was good once
    first.command("QUIT")
    pop = connect("plain", timeout=5)
    timestamp = apop_timestamp(pop.greeting)
    assert timestamp is not None and timestamp != old_timestamp
    attempts = {
        "wrong": digest(timestamp, "not the secret"),
        "upper-case": digest(timestamp, PASSWORD).upper(),
        "replayed": replayed,
        "short": digest(timestamp, PASSWORD)[:31],
        "not-hex": "z" * 32,
    }
    for label, value in attempts.items():
        response = pop.command(f"APOP carol {value}", check=False)
        assert not response.ok and response.code == ("AUTH",), label
    unknown = pop.command(f"APOP nosuchuser {digest(timestamp, PASSWORD)}", check=False)
    assert unknown.raw == response.raw  # same reply as a bad digest
    assert pop.apop("carol", PASSWORD).ok


def test_apop_account_cannot_use_user_pass(connect):
    """An APOP account cannot log in with USER/PASS (RFC 1939 §13) nor SASL PLAIN."""
    pop = connect("plain", timeout=5)
    pop.user("carol")
    response = pop.pass_(PASSWORD, check=False)
    assert not response.ok and response.code == ("AUTH",)
    assert not pop.auth_plain("carol", PASSWORD, check=False).ok
    assert pop.apop("carol", PASSWORD).ok


def test_non_apop_account_cannot_use_apop(connect):
    """An account without APOP cannot log in with APOP even with the right digest (RFC 1939 §13)."""
    pop = connect("plain", timeout=5)
    response = pop.apop("alice", PASSWORD, check=False)
    assert not response.ok and response.code == ("AUTH",)
    pop.login("alice", PASSWORD)


# -------------------------------------------------------------- SASL PLAIN


def _plain_token(user: str, password: str) -> str:
    return sasl_plain_encode(user, password)


@pytest.mark.parametrize("initial", [True, False], ids=["initial-response", "continuation"])
@pytest.mark.parametrize("mode", ["plain", "stls", "implicit"])
def test_sasl_plain_logs_in(mode, initial, connect):
    """AUTH PLAIN works with an initial response and after an empty "+ " challenge (RFC 5034 §4, RFC 4616)."""
    pop = connect(mode, timeout=5)
    if not initial:
        challenge = pop.command("AUTH PLAIN", check=False)
        assert challenge.continuation and challenge.raw in (b"+ \r\n", b"+\r\n")
        assert pop.command(_plain_token("alice", PASSWORD)).ok
    else:
        assert pop.auth_plain("alice", PASSWORD).ok
    assert pop.stat() == (0, 0)
    assert not pop.command(f"AUTH PLAIN {_plain_token('alice', PASSWORD)}", check=False).ok


def test_sasl_cancel_bad_base64_and_unknown_mechanism(connect):
    """AUTH cancel ("*"), bad base64 and an unknown mechanism get -ERR; the session survives (RFC 5034 §4)."""
    pop = connect("plain", timeout=5)
    assert pop.command("AUTH PLAIN", check=False).continuation
    cancelled = pop.command("*", check=False)
    assert not cancelled.ok and not cancelled.continuation
    assert not pop.command("AUTH PLAIN !!!", check=False).ok
    assert pop.command("AUTH PLAIN", check=False).continuation
    assert not pop.command("!!!notbase64", check=False).ok
    assert not pop.command("AUTH FOO", check=False).ok
    assert not pop.command("AUTH FOO " + _plain_token("alice", PASSWORD), check=False).ok
    authzid = sasl_plain_encode("alice", PASSWORD, authzid="bob")
    assert not pop.command(f"AUTH PLAIN {authzid}", check=False).ok  # no proxy logins
    assert pop.auth_plain("alice", PASSWORD).ok
    assert pop.stat() == (0, 0)


# -------------------------------------------------- uniform failure replies


def test_wrong_password_and_unknown_user_get_identical_replies(connect):
    """Wrong password and unknown user get byte-identical -ERR [AUTH] replies (RFC 3206 §5)."""
    pop = connect("plain", timeout=5)
    replies = []
    for user in ("alice", "nosuchuser", "../../etc/passwd"):
        assert pop.user(user).raw == pop.user("bob").raw  # USER reveals nothing
        pop.user(user)
        replies.append(pop.pass_("wrong password", check=False).raw)
        replies.append(pop.auth_plain(user, "wrong password", check=False).raw)
    assert len(set(replies)) == 1, replies
    response = parse_status_line(replies[0])
    assert not response.ok and response.code == ("AUTH",)


# -------------------------------------------------------- cleartext policy


def test_cleartext_login_disallowed_until_tls(server_factory, tls_context):
    """Without cleartext login, USER is refused ([AUTH]) and unadvertised until STLS (RFC 2595 §2.3)."""
    running = server_factory(cleartext_login=False)
    pop = open_client(running, "plain", tls_context)
    caps = tags(pop.capa())
    assert "USER" not in caps and "STLS" in caps
    refused = pop.command("USER alice", check=False)
    assert not refused.ok and refused.code == ("AUTH",)
    plain = pop.auth_plain("alice", PASSWORD, check=False)
    assert not plain.ok
    pop.stls()
    assert "USER" in tags(pop.capa())
    pop.login("alice", PASSWORD)
    assert pop.stat() == (0, 0)
    pop.command("QUIT")
    implicit = open_client(running, "implicit", tls_context)
    implicit.auth_plain("bob", PASSWORD)
    assert implicit.stat() == (0, 0)


# ------------------------------------------------------------- LOGIN-DELAY


def test_login_delay_enforced_after_valid_credentials_only(server_factory, tls_context):
    """LOGIN-DELAY 5 is advertised; re-login within 5 s gets [LOGIN-DELAY] after valid login (RFC 2449)."""
    running = server_factory(login_delay=5)
    first = open_client(running, "plain", tls_context)
    capa = first.capa()
    assert "LOGIN-DELAY 5" in capa
    first.login("alice", PASSWORD)
    assert first.command("QUIT").ok
    time.sleep(0.1)
    second = open_client(running, "plain", tls_context)
    assert second.user("alice").ok  # never on USER
    wrong = second.pass_("wrong password", check=False)
    assert not wrong.ok and wrong.code == ("AUTH",)
    second.user("alice")
    delayed = second.pass_(PASSWORD, check=False)
    assert not delayed.ok and delayed.code == ("LOGIN-DELAY",)
    other = second.auth_plain("bob", PASSWORD)  # the delay is per account
    assert other.ok
