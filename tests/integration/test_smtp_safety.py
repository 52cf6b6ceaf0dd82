"""Open-relay tricks and SMTP smuggling (security-probes.md §3.5, S1, S3, S6)."""

from __future__ import annotations

import pytest

from tests.integration.conftest_smtp import mail_lab_factory, read_reply, read_until_closed

IP = "127.0.0.1"
EXT = "elsewhere.test"

# nmap smtp-open-relay's 16 combinations: four MAIL FROM forms with a plain
# foreign RCPT, then twelve address tricks from <u@[ip]>.  SRV is filled in
# with the hosted domain and with the name in the server's greeting.
_FROMS = ["<>", "<u@ext-sender.test>", "<u@SRV>", f"<u@[{IP}]>"]
_TRICKS = [
    f"<r%{EXT}@[{IP}]>",
    f"<r%{EXT}@SRV>",
    f'<"r@{EXT}">',
    f'<"r%{EXT}">',
    f"<r@{EXT}@[{IP}]>",
    f'<"r@{EXT}"@[{IP}]>',
    f"<r@{EXT}@SRV>",
    f"<@[{IP}]:r@{EXT}>",
    f"<@SRV:r@{EXT}>",
    f"<{EXT}!r>",
    f"<{EXT}!r@[{IP}]>",
    f"<{EXT}!r@SRV>",
]
RELAY_TRICKS = [(sender, f"<r@{EXT}>") for sender in _FROMS] + [(f"<u@[{IP}]>", rcpt) for rcpt in _TRICKS]
assert len(RELAY_TRICKS) == 16

SMUGGLING_ENDINGS = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CR": b"\r.\r",
    "CRLF.CR": b"\r\n.\r",
    "CRLF-NUL.CRLF": b"\r\n\x00.\r\n",
    "CRLF.LF": b"\r\n.\n",
    "CR.CRLF": b"\r.\r\n",
}
SMUGGLED = (
    b"MAIL FROM:<evil@ext-sender.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
    b"Subject: smuggled\r\n\r\nevil\r\n.\r\nQUIT\r\n"
)


@pytest.fixture
def mail_factory(server_factory, lab, tls_context):
    yield from mail_lab_factory(server_factory, lab, tls_context)


@pytest.fixture
def mail(mail_factory):
    return mail_factory()


def command(sock, line: str) -> list[str]:
    sock.sendall(line.encode("latin-1") + b"\r\n")
    return read_reply(sock)


@pytest.mark.parametrize(("sender", "rcpt"), RELAY_TRICKS, ids=[f"{s}->{r}" for s, r in RELAY_TRICKS])
def test_relay_trick_rejected_without_window(mail, sender, rcpt):
    """Each nmap open-relay combination is refused without a POP login; a local recipient still works."""
    sock = mail.raw_smtp("smtp")
    greeting_name = command(sock, "EHLO client.test")[0][4:]
    for srv in ("example.test", greeting_name):
        assert command(sock, f"MAIL FROM:{sender.replace('SRV', srv)}")[0].startswith("250")
        reply = command(sock, f"RCPT TO:{rcpt.replace('SRV', srv)}")
        assert reply == ["550 Relaying denied."] or reply[0].startswith("553 "), reply
        assert command(sock, "RCPT TO:<alice@example.test>")[0].startswith("250")  # control
        assert command(sock, "RSET")[0].startswith("250")
    command(sock, "QUIT")
    assert mail.spooled() == []
    assert mail.stored("alice") == [] and mail.stored("bob") == []


def test_ip_literals_handled_alike(mail):
    """<u@[own-ip]> and <u@[other-ip]> get the same answer: no leak of what counts as local (S6)."""
    client = mail.smtp()
    client.mail("u@ext-sender.test")
    own = client.rcpt(f"alice@[{IP}]")
    other = client.rcpt("alice@[192.0.2.1]")
    assert own == other == (550, b"Relaying denied.")


@pytest.mark.parametrize("ending", SMUGGLING_ENDINGS.values(), ids=SMUGGLING_ENDINGS.keys())
def test_smuggling_ending_does_not_end_data(mail, ending):
    """A bare-CR/LF or NUL end-of-data lookalike never ends DATA or injects a second message."""
    sock = mail.raw_smtp("smtp")
    command(sock, "EHLO client.test")
    command(sock, "MAIL FROM:<u@ext-sender.test>")
    assert command(sock, "RCPT TO:<alice@example.test>")[0].startswith("250")
    assert command(sock, "DATA")[0].startswith("354")
    sock.sendall(b"Subject: first\r\n\r\nbody" + ending + SMUGGLED)
    replies = read_until_closed(sock)
    assert len(replies) == 2 and replies[0].startswith("550 5.") and replies[1] == "221 Bye", replies
    assert mail.stored("alice") == [] and mail.stored("bob") == []


def test_smuggling_control_real_end_then_pipelined_message(mail):
    """Control: after a real CRLF.CRLF the pipelined commands are a second, legitimate message."""
    sock = mail.raw_smtp("smtp")
    command(sock, "EHLO client.test")
    command(sock, "MAIL FROM:<u@ext-sender.test>")
    command(sock, "RCPT TO:<alice@example.test>")
    command(sock, "DATA")
    sock.sendall(b"Subject: first\r\n\r\nbody\r\n.\r\n" + SMUGGLED)
    replies = read_until_closed(sock)
    assert [r[:3] for r in replies] == ["250", "250", "250", "354", "250", "221"]
    assert len(mail.stored("alice")) == 1 and len(mail.stored("bob")) == 1


def test_bare_lf_body_rejected_and_session_continues(mail):
    """A body with bare LF line ends is refused (550 5.5.2); the session then accepts a clean one."""
    client = mail.smtp()
    client.mail("u@ext-sender.test")
    client.rcpt("alice@example.test")
    code, text = client.data(b"Subject: lf\n\nbody\n")
    assert code == 550 and text.startswith(b"5.5.2 ")
    client.mail("u@ext-sender.test")
    client.rcpt("alice@example.test")
    assert client.data(b"Subject: crlf\r\n\r\nbody\r\n")[0] == 250
    assert mail.stored("alice") == [b"Subject: crlf\r\n\r\nbody\r\n"]
