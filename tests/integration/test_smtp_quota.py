"""Mailbox quotas per plan on SMTP delivery (provider-pop-service.md §2, probes S4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pop3suite.server import config, plans
from pop3suite.server.config import AccountSettings
from tests.conftest import PASSWORD
from tests.integration.conftest_smtp import mail_lab_factory, message

MIB = 2**20


@pytest.fixture
def mail_factory(server_factory, lab, tls_context):
    yield from mail_lab_factory(server_factory, lab, tls_context)


def body_of(octets: int) -> bytes:
    """A body of exactly ``octets`` octets in 78-octet CRLF lines (octets % 78 == 0)."""
    assert octets % 78 == 0
    return (b"x" * 76 + b"\r\n") * (octets // 78)


def sized_message(total: int, subject: str = "big") -> bytes:
    """A message of exactly ``total`` octets."""
    head = b"Subject: " + subject.encode() + b"\r\nX-Pad: "
    pad_to = total - len(head) - 4
    body_octets = pad_to - pad_to % 78
    return head + b"p" * (pad_to - body_octets) + b"\r\n\r\n" + body_of(body_octets)


def send(mail, recipients, data, role="smtp"):
    """MAIL, RCPT each, DATA on a fresh connection: (rcpt replies, data reply or None)."""
    client = mail.smtp(role)
    client.mail("sender@ext.test")
    rcpts = [client.rcpt(r) for r in recipients]
    data_reply = client.data(data) if any(code == 250 for code, _ in rcpts) else None
    client.quit()
    return rcpts, data_reply


def test_over_quota_refused_with_552_and_mailbox_untouched(mail_factory, deliver):
    """Mail that would exceed the quota gets 552 5.2.2 at DATA; nothing in the mailbox changes."""
    mail = mail_factory(quotas={"alice": 1})
    deliver("alice", sized_message(700_000, "old"))
    before = mail.stored("alice")
    rcpts, reply = send(mail, ["alice@example.test"], sized_message(400_000))
    assert rcpts == [(250, b"2.1.5 OK")]
    assert reply[0] == 552 and reply[1].startswith(b"5.2.2 ")
    assert mail.stored("alice") == before


def test_dele_quit_frees_space_then_delivery_succeeds(mail_factory, deliver):
    """After DELE + QUIT over POP3 the space is free and the refused mail is accepted."""
    mail = mail_factory(quotas={"alice": 1})
    deliver("alice", sized_message(700_000, "old"))
    new = sized_message(400_000, "new")
    assert send(mail, ["alice@example.test"], new)[1][0] == 552
    pop = mail.pop()
    pop.login("alice", PASSWORD)
    pop.dele(1)
    pop.quit()
    assert send(mail, ["alice@example.test"], new)[1][0] == 250
    assert mail.stored("alice") == [new]


def test_quota_tempfail_gives_452(mail_factory, deliver):
    """server.quota_tempfail = true answers 452 4.2.2 instead."""
    mail = mail_factory(quotas={"alice": 1}, quota_tempfail=True)
    deliver("alice", sized_message(700_000))
    reply = send(mail, ["alice@example.test"], sized_message(400_000))[1]
    assert reply[0] == 452 and reply[1].startswith(b"4.2.2 ")


def test_message_that_exactly_fills_quota_accepted(mail_factory, deliver):
    """A message that brings the mailbox exactly to its quota is accepted; one octet more is not."""
    mail = mail_factory(quotas={"alice": 1})
    deliver("alice", sized_message(600_000))
    assert send(mail, ["alice@example.test"], sized_message(MIB - 600_000 + 1))[1][0] == 552
    assert send(mail, ["alice@example.test"], sized_message(MIB - 600_000))[1][0] == 250
    assert mail.store.usage("alice") == MIB


def test_full_mailbox_refused_at_rcpt(mail_factory, deliver):
    """A mailbox already at its quota is refused at RCPT with 552 5.2.2."""
    mail = mail_factory(quotas={"alice": 0.5})
    deliver("alice", sized_message(MIB // 2))
    (code, text), *_ = send(mail, ["alice@example.test"], message("tiny"))[0]
    assert code == 552 and text.startswith(b"5.2.2 ")


def test_declared_size_over_quota_refused_at_rcpt(mail_factory):
    """MAIL FROM SIZE= (RFC 1870) larger than the free space is refused at RCPT."""
    mail = mail_factory(quotas={"alice": 1})
    client = mail.smtp()
    client.mail("sender@ext.test", [f"SIZE={MIB + 1}"])
    assert client.rcpt("alice@example.test")[0] == 552


def test_one_recipient_over_quota_refuses_whole_message(mail_factory, deliver):
    """With several local recipients, one over quota refuses the message for all (never accept-then-drop)."""
    mail = mail_factory(quotas={"alice": 1})
    deliver("alice", sized_message(700_000))
    rcpts, reply = send(mail, ["bob@example.test", "alice@example.test"], sized_message(400_000))
    assert [code for code, _ in rcpts] == [250, 250]
    assert reply[0] == 552
    assert mail.stored("bob") == []


def test_unlimited_override_lifts_plan_quota(mail_factory, deliver):
    """quota_mb = "unlimited" removes the plan's limit for that account."""
    mail = mail_factory(quotas={"alice": "unlimited"})
    assert mail.running.server.smtp.quota.limit("alice") is None
    assert mail.running.server.smtp.quota.limit("bob") == 768 * MIB


@pytest.mark.parametrize(
    ("plan", "generation", "megabytes"),
    [
        ("personal-shared", "almalinux9", 512),
        ("personal-shared", "centos6", 384),
        ("business-shared", "centos7", 512),
        ("business-shared", "centos5", 272),
        ("reseller-managed-vps", "centos5", 196),
        ("reseller-dedicated", "centos7", 512),
        ("business-dedicated", "almalinux9", None),
        ("business-managed-vps", "centos5", None),
    ],
)
def test_plan_table_gives_default_quota(plan, generation, megabytes):
    """An account's quota defaults to the provider's plan x OS generation table."""
    account = AccountSettings("a", "{PLAIN}x", plan=plan, os_generation=generation)
    assert account.quota_bytes == (None if megabytes is None else megabytes * MIB)
    assert plans.quota_mb(plan, generation) == megabytes


def test_adjustable_plans_are_the_footnoted_ones():
    """Only reseller managed VPS and dedicated servers may change the limit (table footnote)."""
    adjustable = {p.name for p in plans.PLANS.values() if p.adjustable}
    assert adjustable == {"reseller-managed-vps", "reseller-dedicated"}


def test_lab_accounts_have_plans(lab):
    """pop3suite init gives every demo account a plan and an OS generation."""
    accounts = lab.settings.accounts
    assert accounts["alice"].quota_bytes == 512 * MIB
    assert accounts["carol"].os_generation == "centos5" and accounts["carol"].quota_bytes == 224 * MIB


@pytest.mark.parametrize(
    ("server", "account", "error"),
    [
        ({}, {"plan": "gold"}, "key 'accounts.a.plan': unknown plan 'gold'"),
        ({}, {"os_generation": "centos4"}, "key 'accounts.a.os_generation': unknown OS generation"),
        ({}, {"quota_mb": 0}, "key 'accounts.a.quota_mb': expected MB (more than 0)"),
        ({}, {"quota_mb": "lots"}, "key 'accounts.a.quota_mb': expected MB"),
        ({"relay_window": -1}, {}, "key 'server.relay_window': must not be negative"),
        ({"relay_open_listeners": ["smtp"]}, {}, "key 'server.relay_open_listeners': expected a list of"),
        ({"quota_tempfail": "yes"}, {}, "key 'server.quota_tempfail': expected true or false"),
        ({"submission_port": 587}, {}, "key 'server.submission_port': STARTTLS needs a [tls] table"),
        ({"smtps_port": 465}, {}, "key 'server.smtps_port': implicit TLS needs a [tls] table"),
    ],
)
def test_config_errors_are_one_line(server, account, error):
    """Bad SMTP-side keys give a one-line error naming the file and the key."""
    path = Path("/lab/pop3suite.toml")
    data = {"server": server, "accounts": {"a": {"password": "{PLAIN}x", **account}}}
    with pytest.raises(config.ConfigError) as caught:
        config.parse(data, path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and error in message and "\n" not in message


def test_config_smtp_keys_parsed():
    """The SMTP-side keys are read, with paths relative to the config file."""
    data = {
        "server": {
            "relay_window": 600,
            "relay_open_listeners": ["pop3", "pop3s"],
            "quota_tempfail": True,
            "spool_dir": "out",
        },
        "accounts": {"a": {"password": "{PLAIN}x", "plan": "reseller-dedicated", "quota_mb": 50}},
    }
    settings = config.parse(data, Path("/lab/pop3suite.toml"))
    assert settings.relay_window == 600 and settings.relay_open_listeners == ("pop3", "pop3s")
    assert settings.quota_tempfail and settings.spool_dir == Path("/lab/out")
    assert settings.accounts["a"].quota_bytes == 50 * MIB
