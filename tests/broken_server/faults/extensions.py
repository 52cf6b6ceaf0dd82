"""Faults in the extensions and timers: CAPA, STLS, APOP, SASL, the idle timer, locking."""

from __future__ import annotations

import pop3suite.proto.commands as commands_module
import pop3suite.proto.server as core_module
from pop3suite.proto import responses

from .. import parts
from ..parts import override_command
from .registry import _BOTH, _original, fault

# ------------------------------------------------------------------ CAPA


@fault(
    "capa-advertises-utf8",
    "CAPA",
    "CAPA advertises UTF8, but the UTF8 command is unknown.",
    "rfc2449/5/capability-works[UTF8]",
    "rfc6856/2/utf8-authorization-only",
)
def _capa_utf8() -> None:
    parts.BrokenCore.extra_capabilities = ("UTF8",)


@fault(
    "capa-refused-after-user",
    "CAPA",
    "CAPA between USER and PASS answers -ERR.",
    "rfc2449/5/capa-after-user",
)
def _capa_after_user() -> None:
    original = _original("CAPA")

    def capa(core: parts.BrokenCore, command: object) -> core_module.Action:
        if core.user_given:
            return core_module.Send(responses.err("Invalid command."))
        return original(core, command)

    override_command("CAPA", capa)


@fault(
    "capa-refused-after-login",
    "CAPA",
    "CAPA in TRANSACTION answers -ERR.",
    "rfc2449/5/capa-both-states[plain]",
    "rfc2449/5/capa-both-states[stls]",
    "rfc2449/5/capa-both-states[implicit]",
    "rfc2449/5/announced-in-both-states[plain]",
    "rfc2449/5/announced-in-both-states[stls]",
    "rfc2449/5/announced-in-both-states[implicit]",
)
def _capa_after_login() -> None:
    override_command("CAPA", states=frozenset({core_module.State.AUTHORIZATION}))


@fault(
    "capa-drops-user-after-login",
    "CAPA",
    "The TRANSACTION-state CAPA leaves out USER and SASL, which AUTHORIZATION listed.",
    "rfc2449/5/announced-in-both-states[plain]",
    "rfc2449/5/announced-in-both-states[stls]",
    "rfc2449/5/announced-in-both-states[implicit]",
)
def _capa_drops_user() -> None:
    parts.BrokenCore.drop_after_login = ("USER", "SASL")


# ------------------------------------------------------------------ STLS


@fault(
    "stls-without-tls",
    "STLS",
    "STLS answers +OK, then the session goes on in cleartext (no handshake).",
    "rfc2449/5/capability-works[STLS]",
)
def _stls_without_tls() -> None:
    parts.BrokenSession.stls_without_tls = True


@fault(
    "stls-after-login",
    "STLS",
    "STLS is accepted in TRANSACTION.",
    "rfc2595/4/stls-after-login",
)
def _stls_after_login() -> None:
    override_command("STLS", states=_BOTH)


@fault(
    "stls-plaintext-injection",
    "STLS",
    "Commands pipelined in cleartext after STLS are executed inside TLS (CVE-2011-0411).",
    "rfc2595/4/no-plaintext-injection",
)
def _stls_injection() -> None:
    parts.BrokenSession.keep_plaintext_after_stls = True


@fault(
    "stls-keeps-user",
    "STLS",
    "A USER given before STLS is still in force after the handshake.",
    "rfc2595/4/user-forgotten",
)
def _stls_keeps_user() -> None:
    parts.BrokenCore.keep_user_over_tls = True


@fault(
    "stls-advertised-inside-tls",
    "STLS",
    "CAPA still lists STLS once TLS is active (SHOULD).",
    "rfc2595/4/stls-not-advertised-after-tls",
)
def _stls_inside_tls() -> None:
    parts.BrokenCore.stls_after_tls = True


# ------------------------------------------------------------------ APOP


@fault(
    "apop-any-digest",
    "APOP",
    "APOP logs in an APOP account whatever the digest.",
    "rfc1939/7/apop-digest",
    "rfc1939/7/apop-replay",
    "security/A12-apop-malformed-digest",
    "rfc3206/6/auth-resp-code-every-method",
    "provider/apop-off-by-default",
)
def _apop_any_digest() -> None:
    parts.use_authenticator().any_secret = frozenset({"APOP"})


@fault(
    "apop-fixed-timestamp",
    "APOP",
    "Every greeting carries the same APOP timestamp (a digest can be replayed).",
    "rfc1939/7/apop-timestamp",
    "rfc1939/7/apop-replay",
)
def _apop_fixed_timestamp() -> None:
    parts.use_context().fixed_timestamp = True


@fault(
    "apop-without-timestamp",
    "APOP",
    "APOP is accepted, but the greeting carries no timestamp (the digest is over the secret alone).",
    "rfc1939/7/apop-needs-timestamp",
)
def _apop_without_timestamp() -> None:
    parts.use_context().no_timestamp = True
    parts.use_authenticator()
    original = _original("APOP")

    def apop(core: parts.BrokenCore, command: object) -> core_module.Action:
        if core.options.apop_timestamp:
            return original(core, command)
        name, digest = commands_module.expect_args(command, 2)  # type: ignore[arg-type]
        core._pending_user = None
        return core._await("login", core_module.Authenticate("APOP", name.decode("utf-8", "replace"), digest))

    override_command("APOP", apop)


# ------------------------------------------------------------------ SASL


@fault(
    "sasl-plain-any-password",
    "SASL",
    "AUTH PLAIN logs in a known account whatever the password.",
    "rfc3206/6/auth-resp-code-every-method",
    "rfc2449/8.1.2/in-use-after-auth-only",
)
def _sasl_any_password() -> None:
    parts.use_authenticator().any_secret = frozenset({"PLAIN"})


@fault(
    "sasl-star-does-not-cancel",
    "SASL",
    "'*' inside AUTH gets another '+ ' challenge instead of -ERR.",
    "rfc5034/4/cancel",
)
def _sasl_star() -> None:
    parts.BrokenCore.sasl_star_continues = True


# ------------------------------------------------------------------ idle timeout


@fault(
    "idle-timeout-too-early",
    "idle timeout",
    "The idle timer fires after a third of the configured timeout.",
    "rfc1939/3/timer-not-early",
    "rfc1939/3/timer-reset",
)
def _timeout_early() -> None:
    parts.use_server().idle_factor = 1 / 3


@fault(
    "idle-timer-not-reset",
    "idle timeout",
    "Commands do not restart the idle timer: sessions end 1.5 T after login however busy (SHOULD).",
    "rfc1939/3/timer-reset",
)
def _timer_not_reset() -> None:
    parts.BrokenSession.timer_not_reset = True


@fault(
    "idle-timeout-replies",
    "idle timeout",
    "The idle timer sends an -ERR line before closing (SHOULD close silently).",
    "rfc1939/3/timer-silent-close",
)
def _timeout_replies() -> None:
    parts.BrokenSession.timeout_reply = True


# ------------------------------------------------------------------ locking


@fault(
    "no-maildrop-lock",
    "locking",
    "No exclusive-access lock: a second session opens the same maildrop and its QUIT removes "
    "messages under the first (SHOULD).",
    "rfc1939/4/exclusive-lock-concurrent-dele",
)
def _no_lock() -> None:
    parts.use_server().no_lock = True


@fault(
    "in-use-before-password",
    "locking",
    "A busy maildrop is refused with [IN-USE] before the password is checked.",
    "rfc2449/8.1.2/in-use-after-auth-only",
    "rfc1939/4/in-use-needs-credentials",
)
def _in_use_before_password() -> None:
    parts.BrokenSession.in_use_before_password = True
