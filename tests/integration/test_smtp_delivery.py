"""Local delivery over SMTP is the same as ``pop3suite deliver``, and ``pop3suite
serve`` starts the SMTP listeners."""

from __future__ import annotations

import smtplib
import subprocess
import sys

import pytest

from pop3suite import cli
from pop3suite.netutil import free_port
from pop3suite.server.lab import LabOptions, create_lab
from tests.conftest import PASSWORD
from tests.integration.conftest_smtp import mail_lab_factory

MESSAGES = {
    "dot-lines": b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n",
    "8bit": "Subject: 8bit\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n日本語のメール\r\n".encode(),
    "no-final-newline": b"Subject: nonl\r\n\r\nno newline at the end",
    "lf-only": "Subject: lf\n\nline one\n.dot line\n",  # str: smtplib sends CRLF
    "empty-body": b"Subject: empty\r\n\r\n",
}


@pytest.fixture
def mail_factory(server_factory, lab, tls_context):
    yield from mail_lab_factory(server_factory, lab, tls_context)


@pytest.mark.parametrize("name", MESSAGES)
def test_smtp_and_deliver_command_store_identical_messages(mail_factory, lab, tmp_path, name):
    """The same message via 'pop3suite deliver' and via SMTP gives identical files and RETR bytes."""
    mail = mail_factory()
    data = MESSAGES[name]
    eml = tmp_path / "message.eml"
    eml.write_bytes(data.encode() if isinstance(data, str) else data)
    assert cli.main(["deliver", "--config", str(lab.config_path), "alice@example.test", str(eml)]) == 0
    client = mail.smtp()
    assert client.sendmail("u@ext-sender.test", ["alice@example.test"], data) == {}
    client.quit()
    by_command, by_smtp = mail.stored("alice")
    assert by_command == by_smtp
    first, second = mail.retr_all("alice")
    assert first == second


def test_serve_starts_smtp_listeners(tmp_path):
    """'pop3suite serve' listens on smtp, submission and smtps and answers on port 25."""
    keys = ("pop3_port", "pop3s_port", "smtp_port", "submission_port", "smtps_port")
    ports = {key: free_port() for key in keys}
    options = LabOptions(password=PASSWORD, ports=ports, scrypt_n=2**10, fsync=False)
    lab = create_lab(tmp_path / "lab", options)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pop3suite", "serve", "--config", str(lab.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "ready" in line:
                break
        output = "".join(lines)
        for role in ("smtp", "submission", "smtps"):
            assert f"listening: {role} on 127.0.0.1:{ports[role + '_port']}" in output
        assert "no SMTP side" not in output
        client = smtplib.SMTP("127.0.0.1", ports["smtp_port"], timeout=10)
        client.ehlo("client.test")
        client.mail("u@ext-sender.test")
        assert client.rcpt("r@elsewhere.test") == (550, b"Relaying denied.")
        client.quit()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_conformance_smtp_seeding_delivers_the_bare_lf_fixture(mail_factory):
    """`pop3suite check --seed smtp` against a server with a careful SMTP side
    (ours refuses bare LF in DATA, RFC 5321 §2.3.8): the seeder sends CRLF, so
    every fixture arrives and RETR gives its wire form."""
    from pop3suite.proto import CrlfNormalizer
    from pop3suite.target.fixtures import all_fixtures
    from pop3suite.target.model import Credentials, Endpoint, Target
    from pop3suite.target.seeding import Seeder

    mail = mail_factory()
    target = Target(
        name="lab",
        pop3=Endpoint("127.0.0.1", mail.port("pop3"), "none"),
        pop3s=None,
        user=Credentials("alice", PASSWORD),
        smtp=Endpoint("127.0.0.1", mail.port("smtp"), "none"),
    )
    bare_lf = all_fixtures()["bare-lf"].data
    assert b"\n" in bare_lf.replace(b"\r\n", b"") and b"\r\n" not in bare_lf
    Seeder(target).deliver(bare_lf)
    normalizer = CrlfNormalizer()
    assert mail.retr_all("alice") == [normalizer.feed(bare_lf) + normalizer.finish()]
