"""Real client programs against the reference server: Python's poplib and
the curl binary, over plain POP3, STLS and implicit TLS.

Both are independent POP3 implementations: if they log in and get every
message back byte for byte, framing, dot-stuffing and sizes agree with
something other than our own client.
"""

from __future__ import annotations

import poplib
import shutil
import ssl
import subprocess

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.realclient

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(
    CURL is None, reason="the curl program is not installed (apt-get install curl)"
)

#: (stored bytes, expected wire form).  Delivered mail is stored CRLF; the
#: last one is written straight into the Maildir with bare LF.
MESSAGES = [
    b"From: a@example.test\r\nSubject: plain\r\n\r\nhello\r\n",
    b"Subject: dots\r\n\r\n.\r\n..two\r\n.leading\r\n+OK fake\r\n\r\n.\r\nend\r\n",
    b"Subject: no final newline\r\n\r\nlast line",
]
RAW_LF = b"Subject: bare lf\n\nline one\n.dot\nline three\n"


def expected_wire(data: bytes) -> bytes:
    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return out if out.endswith(b"\r\n") else out + b"\r\n"


@pytest.fixture
def mailbox(lab, deliver) -> list[bytes]:
    """alice's maildrop in order, as the wire forms RETR must send."""
    (lab.settings.mail_root / "alice" / "new" / "1700000000.M1P1.rawlf").write_bytes(RAW_LF)
    for data in MESSAGES:
        deliver("alice", data)
    return [expected_wire(RAW_LF)] + [expected_wire(m) for m in MESSAGES]


def poplib_client(mode: str, server, tls_context: ssl.SSLContext) -> poplib.POP3:
    if mode == "implicit":
        return poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=tls_context, timeout=10)
    client = poplib.POP3("127.0.0.1", server.port(), timeout=10)
    if mode == "stls":
        client.stls(context=tls_context)
    return client


# ------------------------------------------------------------------ poplib


@pytest.mark.parametrize("mode", ["plain", "stls", "implicit"])
def test_poplib_retrieves_byte_exact(mode, server, tls_context, mailbox):
    """poplib logs in and RETRs every message byte-exact, sizes matching LIST (RFC 1939 §5, §7)."""
    client = poplib_client(mode, server, tls_context)
    try:
        assert client.getwelcome().startswith(b"+OK")
        capa = client.capa()
        assert {"TOP", "UIDL", "USER"} <= set(capa)
        assert ("STLS" in capa) == (mode == "plain")
        client.user("alice")
        client.pass_(PASSWORD)
        count, total = client.stat()
        assert (count, total) == (len(mailbox), sum(len(m) for m in mailbox))
        _, listing, _ = client.list()
        sizes = {int(n): int(s) for n, s in (line.split() for line in listing)}
        for number, want in enumerate(mailbox, 1):
            _, lines, _ = client.retr(number)
            got = b"\r\n".join(lines) + b"\r\n"
            assert got == want
            assert sizes[number] == len(want)
        _, top_lines, _ = client.top(2, 0)
        assert b"\r\n".join(top_lines) + b"\r\n" == b"From: a@example.test\r\nSubject: plain\r\n\r\n"
        _, uidl, _ = client.uidl()
        assert len(uidl) == len(mailbox)
        client.dele(1)
        client.rset()
        client.noop()
        assert client.quit().startswith(b"+OK")
    finally:
        client.close()


@pytest.mark.parametrize("mode", ["plain", "implicit"])
def test_poplib_apop_and_delete(mode, server, tls_context, deliver):
    """poplib's APOP logs carol in, and DELE+QUIT through poplib removes the message (RFC 1939 §6, §7)."""
    deliver("carol", b"Subject: one\r\n\r\n1\r\n")
    deliver("carol", b"Subject: two\r\n\r\n2\r\n")
    client = poplib_client(mode, server, tls_context)
    client.apop("carol", PASSWORD)
    client.dele(1)
    client.quit()
    again = poplib_client(mode, server, tls_context)
    again.apop("carol", PASSWORD)
    _, lines, _ = again.retr(1)
    assert lines == [b"Subject: two", b"", b"2"]
    assert again.stat()[0] == 1
    again.quit()


def test_poplib_wrong_password_raises(server):
    """poplib sees -ERR for a wrong password (RFC 1939 §7)."""
    client = poplib.POP3("127.0.0.1", server.port(), timeout=10)
    client.user("alice")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        client.pass_("wrong")
    client.quit()


# -------------------------------------------------------------------- curl


def curl(*args: str) -> bytes:
    assert CURL is not None
    result = subprocess.run(
        [CURL, "-sS", "--max-time", "15", *args], capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, f"curl exit {result.returncode}: {result.stderr.decode(errors='replace')}"
    return result.stdout


def _curl_url(mode: str, server, lab, path: str) -> list[str]:
    if mode == "implicit":
        return ["--cacert", str(lab.ca_file), f"pop3s://127.0.0.1:{server.port('pop3s')}/{path}"]
    tls = ["--ssl-reqd", "--cacert", str(lab.ca_file)] if mode == "stls" else []
    return [*tls, f"pop3://127.0.0.1:{server.port()}/{path}"]


@needs_curl
@pytest.mark.parametrize("mode", ["plain", "stls", "implicit"])
def test_curl_retrieves_byte_exact(mode, server, lab, mailbox):
    """curl retrieves every message byte-exact over plain, STLS and pop3s:// (RFC 1939 §5, RFC 8314)."""
    for number, want in enumerate(mailbox, 1):
        got = curl("--user", f"alice:{PASSWORD}", *_curl_url(mode, server, lab, str(number)))
        assert got == want, number


@needs_curl
@pytest.mark.parametrize("mode", ["plain", "stls", "implicit"])
def test_curl_list_matches_sizes(mode, server, lab, mailbox, connect):
    """curl's LIST (URL without a message) shows the sizes RETR sends (RFC 1939 §5)."""
    listing = curl("--user", f"alice:{PASSWORD}", *_curl_url(mode, server, lab, ""))
    lines = listing.split(b"\r\n")
    assert lines[-1] == b""
    sizes = {int(n): int(s) for n, s in (line.split() for line in lines[:-1])}
    assert sizes == {number: len(want) for number, want in enumerate(mailbox, 1)}
    pop = connect("plain", timeout=5)
    pop.login("alice", PASSWORD)
    assert pop.list() == sizes


@needs_curl
def test_curl_apop_login(server, lab, deliver):
    """curl's APOP login (AUTH=+APOP) works for the APOP account (RFC 1939 §7)."""
    deliver("carol", b"Subject: apop\r\n\r\n.via apop\r\n")
    got = curl(
        "--user", f"carol:{PASSWORD}", "--login-options", "AUTH=+APOP", f"pop3://127.0.0.1:{server.port()}/1"
    )
    assert got == b"Subject: apop\r\n\r\n.via apop\r\n"


@needs_curl
def test_curl_wrong_password_fails(server, lab, mailbox):
    """curl fails (login denied, nothing retrieved) with a wrong password (RFC 1939 §7)."""
    assert CURL is not None
    result = subprocess.run(
        [CURL, "-sS", "--max-time", "15", "--user", "alice:wrong", f"pop3://127.0.0.1:{server.port()}/1"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 67  # CURLE_LOGIN_DENIED
    assert result.stdout == b""
