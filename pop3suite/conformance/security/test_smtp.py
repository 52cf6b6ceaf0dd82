"""§3.5 SMTP side (POP-before-SMTP relay, smuggling, size/quota, STARTTLS).

Needs ``--smtp`` (the embedded reference target has it).  Relay probes need a
client address that never logged in over POP: ``--source-address``, or
127.0.0.2 for the embedded server.  No probe sends DATA to an external
recipient, so nothing is ever relayed.
"""

from __future__ import annotations

import secrets
import smtplib
import socket

from pop3suite.conformance.case import INFO, MUST, SHOULD, case, expect, expect_err, observe, unimplemented
from pop3suite.conformance.helpers import wrong_password

from .probe import clean_source, read_line


def _smtp_endpoint(target):
    if target.smtp is None:
        unimplemented("no SMTP endpoint (give --smtp smtp://HOST:PORT; pytest: --pop3-smtp)")
    return target.smtp


def _session(target, source: str | None = None) -> smtplib.SMTP:
    endpoint = _smtp_endpoint(target)
    smtp = smtplib.SMTP(
        endpoint.host, endpoint.port, timeout=30, source_address=(source, 0) if source else None
    )
    smtp.ehlo("pop3suite.test")
    return smtp


def _relay_recipients(srv: str, ip: str) -> list[str]:
    ext = "relay-probe.example"
    return [
        f"r@{ext}", f"r%{ext}@[{ip}]", f"r%{ext}@{srv}", f'"r@{ext}"', f'"r%{ext}"', f"r@{ext}@[{ip}]",
        f'"r@{ext}"@[{ip}]', f"r@{ext}@{srv}", f"@[{ip}]:r@{ext}", f"@{srv}:r@{ext}", f"{ext}!r",
        f"{ext}!r@[{ip}]", f"{ext}!r@{srv}",
    ]  # fmt: skip


@case(
    "security/S1-open-relay",
    MUST,
    "2505",
    "2 (nmap smtp-open-relay)",
    "Without a prior POP login, every nmap smtp-open-relay sender/recipient combination (percent hack, "
    "bang path, quoted local part, IP literal, source route) is refused; a local recipient is accepted.",
    ref="security-probes/3.5/S1",
    probes=["S1"],
)
def test_no_open_relay_without_pop_login(target, request):
    """Every nmap open-relay address trick is refused without a POP login; local mail is accepted."""
    source = clean_source(target)
    endpoint = _smtp_endpoint(target)
    ip = endpoint.host if endpoint.host[0].isdigit() else "127.0.0.1"
    srv = target.domain
    senders = ["<>", f"<u@{target.domain}>", f"<u@{srv}>", f"<u@[{ip}]>"]
    accepted = []
    with _session(target, source) as smtp:
        for sender in senders:
            code, _ = smtp.docmd("MAIL", f"FROM:{sender}")
            if code != 250:
                smtp.rset()
                continue
            for recipient in _relay_recipients(srv, ip):
                code, _text = smtp.docmd("RCPT", f"TO:<{recipient}>")
                if 200 <= code < 300:
                    accepted.append(f"{sender} -> <{recipient}>: {code}")
            smtp.rset()
        code, _text = smtp.docmd("MAIL", "FROM:<>")
        local = smtp.docmd("RCPT", f"TO:<{target.user.user}@{target.domain}>")
        smtp.rset()
    observe(request, f"local recipient control: {local[0]}")
    expect(
        not accepted,
        "relay attempts from an address without a POP login",
        expected="all refused",
        actual=accepted,
    )
    expect(local[0] == 250, "RCPT to the local test user (control)", expected=250, actual=local)


@case(
    "security/S2-relay-after-failed-pop-login",
    MUST,
    "2505",
    "2 (DRAC / poprelayd)",
    "A failed POP login does not open POP-before-SMTP relaying for the client's address, and a login "
    "from another address does not either.",
    ref="security-probes/3.5/S2",
    probes=["S2"],
)
def test_failed_pop_login_does_not_open_relay(pop, target):
    """A failed POP login, or one from another address, does not open the relay."""
    source = clean_source(target)
    client = pop(login=False, source=source)
    user = client.command(f"USER {target.user.user}", check=False)
    if user.ok:
        reply = client.pass_(wrong_password(), check=False)
        expect_err(reply, "PASS with a wrong password")
    client.close()
    with _session(target, source) as smtp:
        smtp.docmd("MAIL", f"FROM:<{target.user.user}@{target.domain}>")
        code, text = smtp.docmd("RCPT", "TO:<r@relay-probe.example>")
        smtp.rset()
    expect(
        not 200 <= code < 300,
        "relay after a failed POP login (canary logged in from elsewhere)",
        expected="refused",
        actual=f"{code} {text!r}",
    )


SMUGGLE_ENDINGS = {
    "LF.LF": b"\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CR": b"\r.\r",
    "CRLF.CR": b"\r\n.\r",
    "CRLF NUL.CRLF": b"\r\n\x00.\r\n",
}


def _smuggle(target, recipient: str, ending: bytes) -> list[bytes]:
    """One DATA whose body carries ``ending`` then a pipelined second
    transaction: the replies after the first 354, up to QUIT's."""
    endpoint = _smtp_endpoint(target)
    nonce = secrets.token_hex(6)
    sock = socket.create_connection((endpoint.host, endpoint.port), timeout=15)
    try:
        read_reply = lambda: _reply(sock)  # noqa: E731
        read_reply()
        sock.sendall(b"EHLO pop3suite.test\r\n")
        read_reply()
        for line in (f"MAIL FROM:<probe@{target.domain}>", f"RCPT TO:<{recipient}>", "DATA"):
            sock.sendall(line.encode() + b"\r\n")
            reply = read_reply()
        if not reply.startswith(b"354"):
            unimplemented(f"DATA not accepted for {recipient}: {reply!r}")
        smuggled = (
            f"MAIL FROM:<probe@{target.domain}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n"
            f"Subject: SMUGGLED-{nonce}\r\n\r\nsmuggled\r\n.\r\nQUIT\r\n"
        ).encode()
        sock.sendall(f"Subject: smuggle-{nonce}\r\n\r\nfirst".encode() + ending + smuggled)
        replies = []
        while len(replies) < 8:
            reply = read_reply()
            if not reply:
                break
            replies.append(reply)
            if reply.startswith(b"221"):
                break
        return [r for r in replies if not r.startswith(b"221")]
    finally:
        sock.close()


def _reply(sock: socket.socket) -> bytes:
    """A whole (possibly multi-line) SMTP reply."""
    lines = b""
    while True:
        line = read_line(sock)
        lines += line
        if len(line) < 4 or line[3:4] != b"-":
            return lines


def _smuggle_recipient(target, guard) -> str:
    _smtp_endpoint(target)
    if target.second_user is not None:
        return f"{target.second_user.user}@{target.domain}"
    guard.allow_new_messages()
    return f"{target.user.user}@{target.domain}"


@case(
    "security/S3-smtp-smuggling",
    MUST,
    "5321",
    "4.1.1.4 (CVE-2023-51764, CVE-2023-51765, CVE-2023-51766)",
    "Only CRLF.CRLF ends DATA: a body with LF.LF, LF.CRLF, CR.CR, CRLF.CR or CRLF NUL.CRLF followed by "
    "a pipelined second MAIL/RCPT/DATA yields one reply to the one message, never a second message.",
    ref="security-probes/3.5/S3",
    probes=["S3"],
)
def test_no_smuggled_second_message(target, guard, request):
    """Only CRLF.CRLF ends DATA: no smuggled second message."""
    recipient = _smuggle_recipient(target, guard)
    seen = {}
    for label, ending in SMUGGLE_ENDINGS.items():
        replies = _smuggle(target, recipient, ending)
        seen[label] = replies[0][:3] if replies else b"none"
        expect(
            len(replies) == 1,
            f"replies after DATA with {label} and a pipelined second message",
            expected=1,
            actual=replies,
        )
    observe(request, "; ".join(f"{k}: {v.decode()}" for k, v in seen.items()))


@case(
    "security/S3-bare-newline-rejected",
    SHOULD,
    "5321",
    "2.3.8 (Postfix smtpd_forbid_bare_newline)",
    "A DATA body with a bare CR or LF (or NUL) before the terminator is rejected, as Postfix "
    "smtpd_forbid_bare_newline=yes does.",
    hardening=True,
    ref="security-probes/3.5/S3",
    probes=["S3"],
)
def test_bare_newline_in_data_rejected(target, guard):
    """A DATA body with a bare CR, LF or NUL is rejected."""
    recipient = _smuggle_recipient(target, guard)
    for label, ending in SMUGGLE_ENDINGS.items():
        replies = _smuggle(target, recipient, ending)
        first = replies[0] if replies else b""
        expect(first[:1] in (b"4", b"5"), f"DATA with {label} in the body", expected="4xx/5xx", actual=first)


@case(
    "security/S4-declared-size-refused",
    SHOULD,
    "1870",
    "6 (Dovecot lmtp-local.c quota)",
    "A message declared (SIZE=) larger than the server or the account can take is refused with 552 "
    "(or 452) at MAIL or RCPT, before any DATA is accepted.",
    ref="security-probes/3.5/S4",
    probes=["S4"],
)
def test_oversized_declared_message_refused_early(target, request):
    """A too-large declared SIZE is refused (552/452) before DATA."""
    with _session(target) as smtp:
        limit = smtp.esmtp_features.get("size", "")
        size = int(limit) + 1 if limit.strip().isdigit() and int(limit) else 2**40
        code, text = smtp.docmd("MAIL", f"FROM:<probe@{target.domain}> SIZE={size}")
        stage = "MAIL"
        if code == 250:
            code, text = smtp.docmd("RCPT", f"TO:<{target.user.user}@{target.domain}>")
            stage = "RCPT"
        smtp.rset()
    observe(request, f"SIZE={size}: {stage} {code} {text!r}")
    expect(
        code in (552, 452),
        f"MAIL/RCPT with SIZE={size}",
        expected="552 (or 452)",
        actual=f"{stage} {code} {text!r}",
    )


@case(
    "security/S5-starttls-injection",
    MUST,
    "3207",
    "4.2 (CVE-2011-0411)",
    "STARTTLS<CRLF>RSET<CRLF> in one segment: the RSET sent in clear is not run inside TLS (nothing "
    "is answered before the client's first TLS command).",
    ref="security-probes/3.5/S5",
    probes=["S5"],
)
def test_smtp_starttls_injection(target):
    """A command pipelined after STARTTLS in clear is not run inside TLS."""
    endpoint = _smtp_endpoint(target)
    sock = socket.create_connection((endpoint.host, endpoint.port), timeout=15)
    try:
        _reply(sock)
        sock.sendall(b"EHLO pop3suite.test\r\n")
        if b"STARTTLS" not in _reply(sock).upper():
            unimplemented("STARTTLS is not offered on this SMTP port")
        sock.sendall(b"STARTTLS\r\nRSET\r\n")
        ready = _reply(sock)
        if not ready.startswith(b"220"):
            expect(True, "", expected="", actual="")
            return
        host = target.server_hostname or (
            "localhost" if endpoint.host in ("127.0.0.1", "::1") else endpoint.host
        )
        tls = target.ssl_context().wrap_socket(sock, server_hostname=host)
        tls.settimeout(1.5)
        try:
            early = tls.recv(4096)
        except TimeoutError:
            early = b""
        expect(early == b"", "bytes received inside TLS before any command", expected="nothing", actual=early)
        tls.settimeout(10)
        tls.sendall(b"EHLO pop3suite.test\r\n")
        expect(_reply(tls).startswith(b"250"), "EHLO inside TLS", expected="250", actual="")
        tls.sendall(b"QUIT\r\n")
        tls.close()
    finally:
        sock.close()


@case(
    "security/S6-ip-literal-leak",
    INFO,
    "5321",
    "4.1.3 (Sendmail leak example)",
    "RCPT TO:<postmaster@[own-ip]> vs <postmaster@[other-ip]> from an address without POP login: "
    "different answers reveal which address literals count as local; recorded.",
    ref="security-probes/3.5/S6",
    probes=["S6"],
)
def test_ip_literal_answers_recorded(target, request):
    """Records whether IP-literal recipients reveal which addresses count as local."""
    source = clean_source(target)
    endpoint = _smtp_endpoint(target)
    own = endpoint.host if endpoint.host[0].isdigit() else "127.0.0.1"
    with _session(target, source) as smtp:
        smtp.docmd("MAIL", "FROM:<>")
        mine = smtp.docmd("RCPT", f"TO:<postmaster@[{own}]>")
        other = smtp.docmd("RCPT", "TO:<postmaster@[192.0.2.1]>")
        smtp.rset()
    same = mine[0] == other[0]
    observe(
        request,
        f"own IP literal: {mine[0]}, other: {other[0]} ({'identical' if same else 'DIFFERENT: leaks'})",
    )
