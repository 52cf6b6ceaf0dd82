"""ServerSession unit tests for STLS, AUTH PLAIN (RFC 5034) and APOP."""

from __future__ import annotations

import base64

import pytest

from pop3suite.proto.limits import MAX_COMMAND_LINE
from pop3suite.proto.server import (
    Authenticate,
    StartTLS,
)
from tests.unit.session_helpers import (
    AUTHORIZATION,
    LISTING,
    PLAIN_IR,
    TIMESTAMP,
    TRANSACTION,
    capa,
    logged_in,
    new_session,
    reply,
    step,
)

# --------------------------------------------------------------------- STLS


def test_stls_gives_starttls_action():
    """STLS answers +OK through a StartTLS action and the session stays in AUTHORIZATION (RFC 2595 §4)."""
    session = new_session(stls_available=True)
    action = step(session, b"STLS")
    assert isinstance(action, StartTLS)
    assert action.reply.startswith(b"+OK")
    session.start_tls_discard()
    session.tls_started()
    assert session.options.tls_active
    assert session.state is AUTHORIZATION


def test_stls_discards_pipelined_plaintext():
    """Plaintext pipelined after STLS is dropped, never executed inside TLS (RFC 2595 §4, CVE-2011-0411)."""
    session = new_session(stls_available=True)
    session.receive_data(b"STLS\r\nCAPA\r\n")
    assert isinstance(session.next_action(), StartTLS)
    assert session.start_tls_discard() == len(b"CAPA\r\n")
    session.tls_started()
    assert session.next_action() is None
    assert reply(session, b"CAPA").startswith(b"+OK")  # the first command inside TLS runs normally


def test_user_before_stls_is_forgotten():
    """A USER given before STLS is forgotten once TLS starts, so PASS is -ERR (RFC 2595 §4)."""
    session = new_session(stls_available=True)
    reply(session, b"USER alice")
    assert isinstance(step(session, b"STLS"), StartTLS)
    session.start_tls_discard()
    session.tls_started()
    assert reply(session, b"PASS secret").startswith(b"-ERR")
    assert session.state is AUTHORIZATION


def test_capa_lists_stls_only_before_tls():
    """STLS is advertised before TLS and no longer after it (RFC 2595 §4) nor after login."""
    session = new_session(stls_available=True)
    assert b"STLS" in capa(session)
    step(session, b"STLS")
    session.start_tls_discard()
    session.tls_started()
    assert b"STLS" not in capa(session)
    assert b"STLS" not in capa(logged_in(stls_available=True))


def test_stls_with_tls_active_is_err():
    """STLS when TLS is already active (implicit TLS, or a second STLS) is -ERR (RFC 2595 §4)."""
    implicit = new_session(stls_available=True, tls_active=True)
    assert reply(implicit, b"STLS").startswith(b"-ERR")
    assert b"STLS" not in capa(implicit)
    upgraded = new_session(stls_available=True)
    step(upgraded, b"STLS")
    upgraded.start_tls_discard()
    upgraded.tls_started()
    assert reply(upgraded, b"STLS").startswith(b"-ERR")
    assert upgraded.state is AUTHORIZATION


def test_stls_not_offered_is_err():
    """Without a certificate STLS is neither advertised nor accepted."""
    session = new_session()
    assert b"STLS" not in capa(session)
    assert reply(session, b"STLS").startswith(b"-ERR")


def test_cleartext_login_disallowed_until_tls():
    """Cleartext login off: USER, AUTH PLAIN get -ERR [AUTH] and CAPA omits them until TLS (RFC 2595 §2.3)."""
    session = new_session(cleartext_login=False, stls_available=True)
    assert reply(session, b"USER alice").startswith(b"-ERR [AUTH]")
    assert reply(session, b"AUTH PLAIN " + PLAIN_IR).startswith(b"-ERR [AUTH]")
    assert reply(session, b"PASS secret").startswith(b"-ERR")
    caps = capa(session)
    assert b"USER" not in caps
    assert not any(cap.startswith(b"SASL") and b"PLAIN" in cap for cap in caps)
    step(session, b"STLS")
    session.start_tls_discard()
    session.tls_started()
    caps = capa(session)
    assert b"USER" in caps
    assert b"SASL PLAIN" in caps
    assert reply(session, b"USER alice") == b"+OK\r\n"
    assert isinstance(step(session, b"PASS secret"), Authenticate)


# --------------------------------------------------------------- AUTH PLAIN


def test_auth_plain_initial_response():
    """AUTH PLAIN with an initial response asks the shell to check the credentials (RFC 5034 §4, RFC 4616)."""
    session = new_session()
    assert step(session, b"AUTH PLAIN " + PLAIN_IR) == Authenticate("PLAIN", "alice", b"secret", "")
    session.accept_login("alice", LISTING)
    assert session.state is TRANSACTION


def test_auth_plain_with_authzid():
    """The PLAIN authorization identity is passed on separately (RFC 4616 §2)."""
    session = new_session()
    ir = base64.b64encode(b"admin\0alice\0secret")
    assert step(session, b"auth plain " + ir) == Authenticate("PLAIN", "alice", b"secret", "admin")


def test_auth_plain_continuation():
    """AUTH PLAIN alone gets an empty "+ " challenge, then reads the response line (RFC 5034 §4)."""
    session = new_session()
    assert reply(session, b"AUTH PLAIN") == b"+ \r\n"
    assert step(session, PLAIN_IR) == Authenticate("PLAIN", "alice", b"secret", "")


def test_auth_star_cancels():
    """A "*" response cancels the exchange with -ERR and the session stays usable (RFC 5034 §4)."""
    session = new_session()
    assert reply(session, b"AUTH PLAIN") == b"+ \r\n"
    assert reply(session, b"*").startswith(b"-ERR")
    assert session.state is AUTHORIZATION
    assert reply(session, b"USER alice") == b"+OK\r\n"


@pytest.mark.parametrize("payload", [b"!!!", b"AGFsaWNl*", b"abc", b"\xff\xfe"])
def test_auth_bad_base64_is_err(payload):
    """Undecodable base64, initial or continuation response, is -ERR; session stays usable (RFC 5034 §4)."""
    session = new_session()
    assert reply(session, b"AUTH PLAIN " + payload).startswith(b"-ERR")
    assert reply(session, b"AUTH PLAIN") == b"+ \r\n"
    assert reply(session, payload).startswith(b"-ERR")
    assert session.state is AUTHORIZATION
    assert reply(session, b"USER alice") == b"+OK\r\n"


def test_auth_equals_is_empty_response():
    """A response of "=" is empty, not a challenge request: PLAIN without credentials fails (RFC 5034 §4)."""
    session = new_session()
    assert reply(session, b"AUTH PLAIN =").startswith(b"-ERR")
    assert reply(session, b"AUTH PLAIN") == b"+ \r\n"
    assert reply(session, b"=").startswith(b"-ERR")
    assert session.state is AUTHORIZATION
    assert reply(session, b"USER alice") == b"+OK\r\n"


def test_auth_unsupported_mechanism_is_err():
    """An unsupported SASL mechanism is -ERR and the session stays usable (RFC 5034 §4)."""
    session = new_session()
    assert reply(session, b"AUTH FOO").startswith(b"-ERR")
    assert reply(session, b"USER alice") == b"+OK\r\n"


def test_auth_non_ascii_mechanism_is_err():
    """A mechanism name with non-ASCII bytes is -ERR, not a crash (RFC 5034 §4)."""
    session = new_session()
    assert reply(session, b"AUTH PL\xc3\x84IN").startswith(b"-ERR")
    assert reply(session, b"USER alice") == b"+OK\r\n"


def test_auth_without_arguments_lists_mechanisms():
    """AUTH alone lists the mechanisms as a multi-line +OK reply (Outlook's non-standard probe)."""
    assert reply(new_session(), b"AUTH") == b"+OK\r\nPLAIN\r\n.\r\n"


def test_auth_long_continuation_line():
    """A continuation response longer than a command line (4 KB) is accepted (RFC 5034 §4)."""
    session = new_session()
    password = b"p" * 3000
    response = base64.b64encode(b"\0alice\0" + password)
    assert len(response) > MAX_COMMAND_LINE
    assert reply(session, b"AUTH PLAIN") == b"+ \r\n"
    assert step(session, response) == Authenticate("PLAIN", "alice", password, "")


# --------------------------------------------------------------------- APOP


def test_apop_offered_with_timestamp():
    """With a timestamp the greeting carries it and APOP asks the shell to check the digest (RFC 1939 §7)."""
    session = new_session(apop_timestamp=TIMESTAMP)
    assert TIMESTAMP.encode() in session.greeting()
    digest = b"c4c9334bac560ecc979e58001b3e22fb"
    assert step(session, b"APOP mrose " + digest) == Authenticate("APOP", "mrose", digest)


def test_apop_not_offered_without_timestamp():
    """Without a greeting timestamp APOP is -ERR and the greeting has no msg-id (RFC 1939 §7)."""
    session = new_session()
    assert b"<" not in session.greeting()
    assert reply(session, b"APOP mrose c4c9334bac560ecc979e58001b3e22fb").startswith(b"-ERR")
    assert session.state is AUTHORIZATION
