"""Real clients: swaks (Debian's package) against the SMTP side, curl for the POP3
login that opens the POP-before-SMTP window."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import PASSWORD
from tests.integration.conftest_smtp import mail_lab_factory

NO_SWAKS = "swaks is not installed (apt-get install -y swaks)"
pytestmark = [pytest.mark.realclient, pytest.mark.skipif(shutil.which("swaks") is None, reason=NO_SWAKS)]


@pytest.fixture
def mail_factory(server_factory, lab, tls_context):
    yield from mail_lab_factory(server_factory, lab, tls_context)


@pytest.fixture
def mail(mail_factory):
    return mail_factory()


def swaks(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["swaks", "--server", f"127.0.0.1:{port}", "--from", "u@ext-sender.test", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_swaks_relay_denied_then_allowed_after_curl_pop_login(mail):
    """swaks gets '550 Relaying denied.' until curl has logged in over plain POP3, then relays."""
    denied = swaks(mail.port("smtp"), "--to", "r@elsewhere.test")
    assert "<** 550 Relaying denied." in denied.stdout
    assert denied.returncode != 0
    login = subprocess.run(
        ["curl", "-s", "--user", f"alice:{PASSWORD}", f"pop3://127.0.0.1:{mail.port('pop3')}/"],
        capture_output=True,
        timeout=30,
    )
    assert login.returncode == 0
    relayed = swaks(mail.port("smtp"), "--to", "r@elsewhere.test")
    assert relayed.returncode == 0, relayed.stdout
    assert len(mail.spooled()) == 1


@pytest.mark.parametrize(("role", "tls_flag"), [("submission", "--tls"), ("smtps", "--tls-on-connect")])
def test_swaks_auth_over_verified_tls(mail, lab, role, tls_flag):
    """swaks relays through 587 (STARTTLS) and 465 (implicit TLS) with AUTH, verifying the lab CA."""
    tls = [tls_flag, "--tls-verify", "--tls-ca-path", str(lab.ca_file), "--tls-sni", "localhost"]
    no_auth = swaks(mail.port(role), "--to", "r@elsewhere.test", *tls)
    if "TLS not available" in no_auth.stderr:  # swaks without Net::SSLeay; ./dev test installs it
        pytest.skip("swaks has no TLS: apt-get install libnet-ssleay-perl")
    assert "<** 530" in no_auth.stdout or "<~* 530" in no_auth.stdout, no_auth.stdout
    auth = ["--auth", "PLAIN", "--auth-user", "alice", "--auth-password", PASSWORD]
    relayed = swaks(mail.port(role), "--to", "r@elsewhere.test", *tls, *auth)
    assert relayed.returncode == 0, relayed.stdout
    assert len(mail.spooled()) == 1


def test_swaks_local_delivery_from_anyone(mail):
    """swaks delivers to a hosted account on port 25 without any POP login."""
    result = swaks(mail.port("smtp"), "--to", "bob@example.test")
    assert result.returncode == 0, result.stdout
    assert len(mail.stored("bob")) == 1
