"""POP-before-SMTP on the ``smtp`` listener (provider-pop-service.md §6, probes S2).

A successful POP3 login on the plain POP3 port (with or without STLS) lets
that client address relay for 20 minutes; nothing else does.
"""

from __future__ import annotations

import json

import pytest

from pop3suite.server.relay import RelayWindow
from tests.conftest import PASSWORD
from tests.integration.conftest_smtp import OTHER_ADDRESS, FakeClock, mail_lab_factory, message

RELAY_DENIED = (550, b"Relaying denied.")


@pytest.fixture
def mail_factory(server_factory, lab, tls_context):
    yield from mail_lab_factory(server_factory, lab, tls_context)


@pytest.fixture
def mail(mail_factory):
    return mail_factory()


def relay(mail, source=None):
    """MAIL + RCPT to a foreign domain on the smtp listener: the RCPT reply."""
    client = mail.smtp("smtp", source=source)
    assert client.mail("sender@ext.test")[0] == 250
    reply = client.rcpt("someone@elsewhere.test")
    if reply[0] == 250:
        assert client.data(message("relayed"))[0] == 250
    client.quit()
    return reply


def test_relay_denied_before_pop_login(mail):
    """Without a prior POP3 login, RCPT to another domain gets exactly '550 Relaying denied.'."""
    assert relay(mail) == RELAY_DENIED
    assert mail.spooled() == []


def test_relay_allowed_after_plain_pop_login(mail):
    """A USER/PASS login on the plain POP3 port opens the window; the mail lands in the spool only."""
    mail.pop_login("plain")
    assert relay(mail)[0] == 250
    [spool_id] = mail.spooled()
    envelope = json.loads(mail.spool_envelope(spool_id))
    assert envelope["rcpt_to"] == ["someone@elsewhere.test"]
    assert envelope["client"] == "127.0.0.1" and envelope["listener"] == "smtp"


def test_relay_allowed_after_stls_pop_login(mail):
    """A login on the plain POP3 port after STLS opens the window too."""
    mail.pop_login("stls")
    assert relay(mail)[0] == 250


def test_relay_denied_after_pop3s_login(mail):
    """A login on the implicit-TLS POP3 port does NOT open the window."""
    mail.pop_login("implicit")
    assert relay(mail) == RELAY_DENIED


def test_relay_denied_after_window_expires(mail):
    """The window lasts 20 minutes from the login, on the injected clock."""
    mail.pop_login()
    mail.clock.advance(20 * 60 - 1)
    assert relay(mail)[0] == 250
    mail.clock.advance(2)
    assert relay(mail) == RELAY_DENIED


def test_new_login_restarts_window(mail):
    """Each successful POP3 login restarts the window from that login."""
    mail.pop_login()
    mail.clock.advance(15 * 60)
    mail.pop_login()
    mail.clock.advance(15 * 60)
    assert relay(mail)[0] == 250


def test_relay_window_length_configurable(mail_factory):
    """server.relay_window sets the window length in seconds."""
    mail = mail_factory(relay_window=60)
    mail.pop_login()
    mail.clock.advance(61)
    assert relay(mail) == RELAY_DENIED


def test_relay_window_zero_disables_pop_before_smtp(mail_factory):
    """relay_window = 0 switches POP-before-SMTP off."""
    mail = mail_factory(relay_window=0)
    mail.pop_login()
    assert relay(mail) == RELAY_DENIED


def test_relay_open_listeners_configurable(mail_factory):
    """server.relay_open_listeners can name pop3s, then implicit-TLS logins open the window."""
    mail = mail_factory(relay_open_listeners=("pop3", "pop3s"))
    mail.pop_login("implicit")
    assert relay(mail)[0] == 250


def test_relay_denied_from_another_address(mail):
    """The window belongs to the address that logged in, not to the account."""
    mail.pop_login(source="127.0.0.1")
    assert relay(mail, source=OTHER_ADDRESS) == RELAY_DENIED
    mail.pop_login(source=OTHER_ADDRESS)  # control: the other address can open its own
    assert relay(mail, source=OTHER_ADDRESS)[0] == 250


def test_relay_denied_after_failed_pop_login(mail):
    """A wrong password opens nothing."""
    client = mail.pop()
    client.user("alice")
    assert not client.pass_("wrong password", check=False).ok
    client.quit()
    assert relay(mail) == RELAY_DENIED


def test_relay_denied_after_in_use_login(mail):
    """Good credentials refused with [IN-USE] (mailbox locked) open nothing."""
    holder = mail.pop(source=OTHER_ADDRESS)
    holder.login("alice", PASSWORD)
    client = mail.pop()
    client.user("alice")
    reply = client.pass_(PASSWORD, check=False)
    assert not reply.ok and b"IN-USE" in reply.raw
    assert relay(mail) == RELAY_DENIED


def test_local_delivery_needs_no_window(mail):
    """Mail to a hosted domain is accepted on port 25 from anyone and delivered."""
    client = mail.smtp("smtp", source=OTHER_ADDRESS)
    client.sendmail("sender@ext.test", ["alice@example.test"], message("inbound"))
    client.quit()
    [stored] = mail.stored("alice")
    assert b"Subject: inbound" in stored
    assert mail.spooled() == []


def test_unknown_local_user_rejected(mail):
    """RCPT to a hosted domain without such an account gets 550."""
    client = mail.smtp("smtp")
    client.mail("sender@ext.test")
    code, text = client.rcpt("nobody@example.test")
    assert code == 550 and b"nobody@example.test" in text


@pytest.mark.parametrize("role", ["submission", "smtps"])
def test_local_delivery_on_every_listener(mail, role):
    """submission (after STARTTLS) and smtps accept mail for hosted accounts without AUTH."""
    client = mail.smtp(role)
    client.sendmail("sender@ext.test", ["Bob@EXAMPLE.test"], message(f"via {role}"))
    client.quit()
    [stored] = mail.stored("bob")
    assert f"via {role}".encode() in stored


def test_relay_window_object_on_injected_clock():
    """RelayWindow: open until expiry (exclusive), per address, IPv4-mapped IPv6 is the same client."""
    clock = FakeClock()
    window = RelayWindow(1200, clock=clock)
    window.open("::ffff:192.0.2.7")
    assert window.allowed("192.0.2.7") and not window.allowed("192.0.2.8")
    clock.advance(1199.5)
    assert window.allowed("::ffff:192.0.2.7") and window.remaining("192.0.2.7") == 0.5
    clock.advance(0.5)
    assert not window.allowed("192.0.2.7")


def test_relay_decisions_are_logged(mail, caplog):
    """Each RCPT to a foreign address leaves one ``relay_decision`` record
    (docs/operations.md): denied before the POP3 login, allowed after it."""
    import logging

    caplog.set_level(logging.INFO, logger="pop3suite")
    assert relay(mail) == RELAY_DENIED
    mail.pop_login("plain")
    assert relay(mail)[0] == 250
    decisions = [r for r in caplog.records if getattr(r, "event", None) == "relay_decision"]
    assert [r.fields["decision"] for r in decisions] == ["denied", "allowed-pop-before-smtp"]
    assert all(r.fields["address"] == "127.0.0.1" and r.fields["listener"] == "smtp" for r in decisions)
    assert 'recipient="someone@elsewhere.test" decision=denied' in decisions[0].getMessage()
