"""The 587 (STARTTLS + AUTH) and 465 (implicit TLS + AUTH) roles, and STARTTLS
injection (provider-pop-service.md §6, probes S5).  TLS is verified against
the lab's test CA throughout.
"""

from __future__ import annotations

import base64
import smtplib
import ssl

import pytest

from tests.conftest import PASSWORD
from tests.integration.conftest_smtp import mail_lab_factory, message, read_reply, read_until_closed

AUTH_ROLES = ["submission", "smtps"]


@pytest.fixture
def mail_factory(server_factory, lab, tls_context):
    yield from mail_lab_factory(server_factory, lab, tls_context)


@pytest.fixture
def mail(mail_factory):
    return mail_factory()


@pytest.mark.parametrize("role", AUTH_ROLES)
def test_relay_without_auth_gets_530(mail, role):
    """Without SMTP AUTH, relaying on 587/465 is refused with 530."""
    client = mail.smtp(role)
    assert client.mail("alice@example.test")[0] == 250
    code, text = client.rcpt("someone@elsewhere.test")
    assert code == 530 and b"Authentication required" in text
    assert mail.spooled() == []


@pytest.mark.parametrize("role", AUTH_ROLES)
def test_relay_with_auth_accepted(mail, role):
    """After SMTP AUTH, relaying on 587/465 is accepted into the spool."""
    client = mail.smtp(role, login="alice")
    client.sendmail("alice@example.test", ["someone@elsewhere.test"], message("submitted"))
    client.quit()
    assert len(mail.spooled()) == 1


@pytest.mark.parametrize("role", AUTH_ROLES)
def test_pop_window_not_used_on_auth_ports(mail, role):
    """587/465 ignore POP-before-SMTP: an open window does not replace AUTH."""
    mail.pop_login("plain")
    client = mail.smtp(role)
    client.mail("alice@example.test")
    assert client.rcpt("someone@elsewhere.test")[0] == 530


@pytest.mark.parametrize("role", AUTH_ROLES)
def test_wrong_password_and_unknown_user_rejected(mail, role):
    """Wrong passwords and unknown users both get 535, and relaying stays refused."""
    client = mail.smtp(role)
    for user in ("alice", "nobody"):
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            client.login(user, "wrong password")
        assert caught.value.smtp_code == 535
    client.mail("alice@example.test")
    assert client.rcpt("someone@elsewhere.test")[0] == 530


@pytest.mark.parametrize(
    ("initial", "blob"),
    [
        (True, "not_base64!"),
        (True, base64.b64encode(b"alice\0" + PASSWORD.encode()).decode()),  # two parts
        (True, base64.b64encode(b"\0alice\0").decode()),  # empty password
        (False, base64.b64encode(b"\0\0" + PASSWORD.encode()).decode()),  # empty user, after the challenge
    ],
)
def test_malformed_auth_plain_is_501_not_a_failed_login(mail, initial, blob):
    """A PLAIN message RFC 4616 does not allow is a syntax error (RFC 4954 §4:
    501), read by the parser POP3's AUTH PLAIN uses; the session goes on."""
    client = mail.smtp("submission")
    if initial:
        code, text = client.docmd("AUTH", "PLAIN " + blob)
    else:
        assert client.docmd("AUTH", "PLAIN")[0] == 334
        code, text = client.docmd(blob)
    assert code == 501 and text.startswith(b"5.5.2 SASL PLAIN:"), (code, text)
    client.user, client.password = "alice", PASSWORD
    assert client.auth("PLAIN", client.auth_plain)[0] == 235


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_auth_mechanisms_and_address_login(mail, mechanism):
    """AUTH PLAIN and LOGIN work, with the bare account name or user@hosted-domain."""
    for user in ("alice", "alice@example.test"):
        client = mail.smtp("submission")
        client.user, client.password = user, PASSWORD
        authobject = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        code, _ = client.auth(mechanism, authobject, initial_response_ok=mechanism == "PLAIN")
        assert code == 235
        client.quit()


def test_submission_requires_starttls_first(mail):
    """On 587 everything but EHLO/NOOP/STARTTLS/QUIT before STARTTLS gets 530, and AUTH is not offered."""
    client = smtplib.SMTP("127.0.0.1", mail.port("submission"), timeout=10)
    client.ehlo("client.test")
    assert client.has_extn("starttls") and not client.has_extn("auth")
    assert client.mail("alice@example.test")[0] == 530
    client.quit()


def test_smtps_is_implicit_tls_verified_by_lab_ca(mail, lab):
    """465 speaks TLS from the first byte with a certificate the lab CA verifies."""
    client = mail.smtp("smtps")
    assert isinstance(client.sock, ssl.SSLSocket)
    assert client.sock.getpeercert()["subject"]
    assert client.has_extn("auth") and not client.has_extn("starttls")


def test_port_25_offers_no_auth(mail):
    """The smtp listener relays by POP-before-SMTP only: no AUTH, before or after STARTTLS."""
    client = mail.smtp("smtp")
    assert not client.has_extn("auth") and client.has_extn("starttls")
    client.starttls(context=mail.tls_context)
    client.ehlo("client.test")
    assert not client.has_extn("auth")
    assert client.docmd("AUTH", "PLAIN")[0] in (502, 504)


@pytest.mark.parametrize("role", ["smtp", "submission"])
def test_starttls_injection_is_not_executed(mail, role):
    """Commands sent in the same segment after STARTTLS are discarded, not run inside TLS (CVE-2011-0411)."""
    sock = mail.raw_smtp(role)
    sock.sendall(b"EHLO client.test\r\n")
    read_reply(sock)
    sock.sendall(b"STARTTLS\r\nRSET\r\n")
    assert read_reply(sock)[0].startswith("220")
    with mail.tls_context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"QUIT\r\n")
        assert read_until_closed(tls) == ["221 Bye"]  # no "250 OK" for the injected RSET
