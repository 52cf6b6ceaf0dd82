"""The hosting provider's published POP rules (provider-pop-service.md):
the 2-minute idle timeout, APOP off by default, POP-before-SMTP.

PROVIDER cases run only with ``--profile provider``.  Where the provider
deviates from RFC 1939 (the 2-minute timer against the RFC's 10 minutes)
the RFC cases report the RFC verdict and these cases the provider's.

POP-before-SMTP probes need ``--smtp``.  The "no window yet" probes need a
client address that has not logged in to POP3 in the last 20 minutes:
``--source-address`` (for example 127.0.0.2).  Every other case of the run
logs in from the default address, which opens its window.
"""

from __future__ import annotations

import smtplib
import time

import pytest

from pop3suite.conformance.case import INFO, PROVIDER, case, expect, expect_equal, observe, unimplemented
from pop3suite.conformance.helpers import apop_login, bytes_until_close, reply_unless_closed

PROVIDER_IDLE_TIMEOUT = 120.0
FOREIGN_RECIPIENT = "someone@relay-test.invalid"
RELAY_DENIED = b"Relaying denied."


@pytest.mark.timeout(900)
@case(
    "provider/idle-timeout",
    PROVIDER,
    "provider",
    "4",
    "If communication with the server stops for 2 minutes during a session, the server times out "
    "and closes the connection.",
    slow=True,
)
def test_idle_session_closed_after_two_minutes(pop, target):
    """Idle 115 s: NOOP still gets ``+OK``; idle 125 s: the server has closed the connection."""
    early = pop()
    late = pop(user=target.second_user) if target.second_user else None
    started = time.monotonic()
    time.sleep(PROVIDER_IDLE_TIMEOUT - 5)
    response = reply_unless_closed(early, "NOOP")
    expect(
        response is not None and response.ok,
        "NOOP after 115 s idle",
        expected="+OK",
        actual=response and response.raw,
    )
    if late is None:  # one account: the NOOP restarted the timer; wait a full period again
        late, started = early, time.monotonic()
    time.sleep(max(0.0, PROVIDER_IDLE_TIMEOUT + 5 - (time.monotonic() - started)))
    expect(
        bytes_until_close(late, 5.0) is not None,
        "session closed after 125 s idle",
        expected="connection closed",
        actual="still open",
    )


@case(
    "provider/idle-timeout-declared",
    INFO,
    "provider",
    "4",
    "If communication with the server stops for 2 minutes during a session, the server times out "
    "and closes the connection.",
)
def test_declared_idle_timeout_is_two_minutes(target, request):
    """The idle timeout given with ``--idle-timeout`` is the provider's 120 s."""
    if target.profile != "provider":
        unimplemented("a provider rule: run with --profile provider")
    if target.idle_timeout is None:
        unimplemented(
            "the server's idle timeout is not known "
            "(give --idle-timeout SECONDS; pytest: --pop3-idle-timeout)"
        )
    observe(request, f"declared idle timeout: {target.idle_timeout:g} s")
    expect_equal("declared idle timeout (s)", expected=PROVIDER_IDLE_TIMEOUT, actual=target.idle_timeout)


@case(
    "provider/apop-off-by-default",
    PROVIDER,
    "provider",
    "5",
    "[APOP is] off by default, switched on per account by the customer (in the control panel's "
    "password settings).",
)
def test_apop_off_for_ordinary_account(pop, target):
    """APOP for the ordinary test account fails even with the right digest."""
    account = target.user
    _, _, response = apop_login(
        pop, target, account, missing="the greeting carries no APOP timestamp (APOP is off for every account)"
    )
    expect(
        not response.ok and response.code_str != "IN-USE",
        f"APOP for {account.user}, whose APOP was never switched on ([IN-USE] means it authenticated)",
        expected="-ERR",
        actual=response.raw,
    )


# ------------------------------------------------------------------ POP before SMTP


def _smtp_endpoint(target):
    if target.smtp is None:
        unimplemented("no SMTP endpoint (give --smtp smtp://HOST:PORT; pytest: --pop3-smtp)")
    return target.smtp


def _second_address(target):
    if target.source_address is None:
        unimplemented(
            "needs a client address without a POP login "
            "(give --source-address, e.g. 127.0.0.2; pytest: --pop3-source-address)"
        )
    return target.source_address


def _rcpt(target, recipient: str, source: str | None = None) -> tuple[int, bytes]:
    """MAIL FROM the test user, RCPT TO ``recipient`` on port 25; the RCPT reply.
    No DATA is sent, so nothing is ever relayed."""
    endpoint = _smtp_endpoint(target)
    with smtplib.SMTP(
        endpoint.host, endpoint.port, timeout=30, source_address=(source, 0) if source else None
    ) as smtp:
        smtp.ehlo("pop3suite.test")
        sender = f"{target.user.user}@{target.domain}"
        code, message = smtp.mail(sender)
        expect(code == 250, f"MAIL FROM:<{sender}>", expected="250", actual=f"{code} {message!r}")
        reply = smtp.rcpt(recipient)
        smtp.rset()
    return reply


@case(
    "provider/pop-before-smtp-denied",
    PROVIDER,
    "provider",
    "6",
    "Without a prior POP retrieval, relaying on port 25 fails with an error such as "
    "`550 Relaying denied.` [...] Mail to the server's own hosted domains is accepted on port 25 "
    "from anyone.",
    ref="smtp/relay/2",
    probes=["S2"],
)
def test_relay_denied_without_pop_login(target):
    """From an address with no POP login: RCPT to a foreign domain gets ``550 Relaying denied.``."""
    _smtp_endpoint(target)
    source = _second_address(target)
    code, message = _rcpt(target, f"{target.user.user}@{target.domain}", source)
    expect(
        code in (250, 251), "RCPT to a hosted mailbox (control)", expected="250", actual=f"{code} {message!r}"
    )
    code, message = _rcpt(target, FOREIGN_RECIPIENT, source)
    expect(
        code == 550 and RELAY_DENIED in message,
        "relay without POP login",
        expected="550 Relaying denied.",
        actual=f"{code} {message!r}",
    )


@case(
    "provider/pop-before-smtp-pop3s-does-not-open",
    PROVIDER,
    "provider",
    "6",
    "Retrieval over POP over SSL (995) does NOT open the POP-before-SMTP window.",
    ref="smtp/relay/2",
    probes=["S2"],
)
def test_pop3s_login_does_not_open_relay(pop, target):
    """After a login on the implicit-TLS port only, relaying from that address is still denied."""
    _smtp_endpoint(target)
    source = _second_address(target)
    client = pop("implicit", source=source)
    client.quit()
    code, message = _rcpt(target, FOREIGN_RECIPIENT, source)
    expect(
        code == 550 and RELAY_DENIED in message,
        "relay after a POP3S-only login",
        expected="550 Relaying denied.",
        actual=f"{code} {message!r}",
    )


@case(
    "provider/pop-before-smtp-pop3-opens",
    PROVIDER,
    "provider",
    "6",
    "To send mail through the normal SMTP port 25, the client must first successfully retrieve mail "
    "(authenticate) over POP on port 110. For 20 minutes after that retrieval, relaying through port "
    "25 is allowed from that client's address.",
    ref="smtp/relay/2",
    probes=["S2"],
)
def test_pop3_login_opens_relay(pop, target):
    """After a login on the plain POP3 port, RCPT to a foreign domain from that address is accepted."""
    _smtp_endpoint(target)
    client = pop("plain")
    client.quit()
    code, message = _rcpt(target, FOREIGN_RECIPIENT)
    expect(code in (250, 251), "relay right after a POP3 login", expected="250", actual=f"{code} {message!r}")
