"""Faults in the SMTP side's POP-before-SMTP relay rules."""

from __future__ import annotations

from .. import parts
from .registry import fault

# ------------------------------------------------------------------ SMTP relay


@fault(
    "open-relay",
    "SMTP relay",
    "Port 25 relays for every address, POP login or not.",
    "security/S1-open-relay",
    "provider/pop-before-smtp-denied",
    "provider/pop-before-smtp-pop3s-does-not-open",
    "security/S2-relay-after-failed-pop-login",
)
def _open_relay() -> None:
    parts.use_relay().open_to_all = True


@fault(
    "pop3s-login-opens-relay",
    "SMTP relay",
    "A login on the implicit-TLS port (995) opens the POP-before-SMTP window.",
    "provider/pop-before-smtp-pop3s-does-not-open",
)
def _pop3s_opens() -> None:
    parts.use_relay().any_listener = True


@fault(
    "pop3-login-does-not-open-relay",
    "SMTP relay",
    "A POP3 login on port 110 does not open the POP-before-SMTP window.",
    "provider/pop-before-smtp-pop3-opens",
)
def _pop3_does_not_open() -> None:
    parts.use_relay().never_opens = True


@fault(
    "failed-login-opens-relay",
    "SMTP relay",
    "A failed POP3 login opens the POP-before-SMTP window.",
    "security/S2-relay-after-failed-pop-login",
)
def _failed_login_opens() -> None:
    parts.BrokenSession.failed_login_opens_relay = True
