"""Faults in the RFC 1939 states: AUTHORIZATION, TRANSACTION and UPDATE."""

from __future__ import annotations

import pop3suite.proto.commands as commands_module
import pop3suite.proto.server as core_module
from pop3suite.proto import responses

from .. import parts
from ..parts import override_command
from .registry import _BOTH, _original, fault

# ------------------------------------------------------------------ AUTHORIZATION


@fault(
    "transaction-commands-before-login",
    "AUTHORIZATION",
    "STAT, LIST, UIDL, NOOP and RSET are answered +OK before login (an empty maildrop).",
    "rfc1939/3/wrong-state",
    "rfc1939/7/pass-needs-user",
    "rfc1939/7/failed-pass-stays-authorization",
    "security/A4-auth-sequence-errors",
    "rfc2595/4/user-forgotten",
    "rfc1939/7/apop-digest",
    "rfc8314/3.1/tls-first",
)
def _transaction_before_login() -> None:
    for keyword in ("STAT", "LIST", "UIDL", "NOOP", "RSET"):
        override_command(keyword, states=_BOTH)


@fault(
    "pass-without-user",
    "AUTHORIZATION",
    "PASS with no USER before it logs in the first account of the configuration.",
    "rfc1939/7/pass-needs-user",
    "rfc2595/4/user-forgotten",
    "security/A4-auth-sequence-errors",
)
def _pass_without_user() -> None:
    parts.BrokenSession.pass_defaults_user = True
    original = _original("PASS")

    def pass_(core: parts.BrokenCore, command: object) -> core_module.Action:
        if core._pending_user is None and core.default_user:
            core._pending_user = core.default_user
        return original(core, command)

    override_command("PASS", pass_)


@fault(
    "any-password-accepted",
    "AUTHORIZATION",
    "USER/PASS logs in a known account whatever the password.",
    "rfc1939/7/failed-pass-stays-authorization",
    "rfc1939/4/quit[after-failed-pass]",
    "rfc2449/5/capability-works[AUTH-RESP-CODE]",
    "rfc2449/8.1.2/in-use-after-auth-only",
    "rfc3206/6/auth-resp-code-every-method",
    "security/A5-password-with-spaces",
    "security/S2-relay-after-failed-pop-login",
    "rfc1939/4/in-use-needs-credentials",
)
def _any_password() -> None:
    parts.use_authenticator().any_secret = frozenset({"USER"})


@fault(
    "quit-after-user-silent",
    "AUTHORIZATION",
    "QUIT between USER and PASS closes the connection without the +OK reply.",
    "rfc1939/4/quit[after-user]",
    "rfc2449/4/command-255-octets",
)
def _quit_after_user_silent() -> None:
    original = _original("QUIT")

    def quit_(core: parts.BrokenCore, command: object) -> core_module.Action:
        action = original(core, command)
        return core_module.Close(b"") if core.user_given and isinstance(action, core_module.Close) else action

    override_command("QUIT", quit_)


# ------------------------------------------------------------------ TRANSACTION


@fault(
    "stat-counts-deleted",
    "TRANSACTION",
    "STAT still counts messages marked as deleted.",
    "rfc1939/5/dele-marks-only",
    "rfc1939/5/list-excludes-deleted",
    "rfc1939/6/never-remove-unmarked",
)
def _stat_counts_deleted() -> None:
    def stat(core: parts.BrokenCore, command: object) -> core_module.Action:
        total = sum(m.size for m in core.listing)
        return core_module.Send(responses.ok(f"{len(core.listing)} {total}"))

    override_command("STAT", stat)


@fault(
    "list-shows-deleted",
    "TRANSACTION",
    "LIST without an argument still lists messages marked as deleted.",
    "rfc1939/5/list-excludes-deleted",
)
def _list_shows_deleted() -> None:
    original = _original("LIST")

    def list_(core: parts.BrokenCore, command: object) -> core_module.Action:
        if getattr(command, "args", ()):
            return original(core, command)
        lines = [f"{i} {m.size}" for i, m in enumerate(core.listing, 1)]
        return core._multiline(responses.ok(f"{len(lines)} messages"), lines)

    override_command("LIST", list_)


@fault(
    "dele-twice-ok",
    "TRANSACTION",
    "DELE of a message already marked as deleted answers +OK again.",
    "rfc1939/5/dele-marks-only",
)
def _dele_twice_ok() -> None:
    original = _original("DELE")

    def dele(core: parts.BrokenCore, command: object) -> core_module.Action:
        args = getattr(command, "args", ())
        if len(args) == 1 and args[0].isdigit() and int(args[0]) in core.deleted:
            return core_module.Send(responses.ok(f"Message {int(args[0])} deleted."))
        return original(core, command)

    override_command("DELE", dele)


@fault(
    "list-n-of-deleted",
    "TRANSACTION",
    "LIST n and RETR n still answer for a message marked as deleted.",
    "rfc1939/5/dele-marks-only",
    "rfc1939/7/top-errors",
    "rfc1939/7/uidl-deleted-excluded",
)
def _list_n_of_deleted() -> None:
    def live_or_deleted(core: parts.BrokenCore, arg: bytes) -> int:
        number = commands_module.message_number(arg)
        if not 1 <= number <= len(core.listing):
            raise core_module.NoSuchMessage()
        return number

    parts.BrokenCore._message = live_or_deleted  # type: ignore[method-assign]


@fault(
    "rset-keeps-marks",
    "TRANSACTION",
    "RSET answers +OK but leaves every message marked as deleted.",
    "rfc1939/5/rset-unmarks",
    "rfc1939/6/rset-before-quit",
    "rfc1939/7/uidl-deleted-excluded",
)
def _rset_keeps_marks() -> None:
    override_command("RSET", lambda core, command: core_module.Send(responses.ok("")))


@fault(
    "uidl-shows-deleted",
    "TRANSACTION",
    "UIDL without an argument still lists messages marked as deleted.",
    "rfc1939/7/uidl-deleted-excluded",
)
def _uidl_shows_deleted() -> None:
    original = _original("UIDL")

    def uidl(core: parts.BrokenCore, command: object) -> core_module.Action:
        if getattr(command, "args", ()):
            return original(core, command)
        lines = [f"{i} {m.uid}" for i, m in enumerate(core.listing, 1)]
        return core._multiline(responses.ok(""), lines)

    override_command("UIDL", uidl)


@fault(
    "uidl-changes-per-session",
    "TRANSACTION",
    "Every session gives each message a new unique-id.",
    "rfc1939/7/uidl-persist",
)
def _uidl_changes() -> None:
    parts.BrokenSession.session_uids = True


@fault(
    "noop-refused",
    "TRANSACTION",
    "NOOP in TRANSACTION answers -ERR.",
    "rfc1939/5/noop[plain]",
    "rfc1939/5/noop[stls]",
    "rfc1939/5/noop[implicit]",
    "rfc1939/3/unknown-command",
    "rfc1939/3/wrong-state",
    "rfc2449/6.6/pipelining-in-order",
    "rfc2449/5/capability-works[PIPELINING]",
)
def _noop_refused() -> None:
    override_command("NOOP", lambda core, command: core_module.Send(responses.err("No.")))


# ------------------------------------------------------------------ UPDATE


@fault(
    "update-without-quit",
    "UPDATE",
    "A session that ends without QUIT (EOF, reset, idle timer) still removes the marked messages.",
    "rfc1939/6/no-quit-no-update[fin]",
    "rfc1939/6/no-quit-no-update[rst]",
    "rfc1939/6/no-quit-no-update[unterminated-quit]",
    "rfc1939/3/timer-no-update",
    "rfc1939/5/dele-marks-only",
)
def _update_without_quit() -> None:
    parts.BrokenSession.update_on_any_end = True


@fault(
    "quit-removes-nothing",
    "UPDATE",
    "QUIT in TRANSACTION answers +OK but removes nothing.",
    "rfc1939/6/quit-removes-marked",
    "rfc1939/6/rset-before-quit",
    "rfc1939/6/never-remove-unmarked",
)
def _quit_removes_nothing() -> None:
    parts.BrokenSession.quit_removes_nothing = True


@fault(
    "quit-ignores-rset",
    "UPDATE",
    "QUIT removes every message ever marked in the session, also those RSET unmarked.",
    "rfc1939/6/rset-before-quit",
)
def _quit_ignores_rset() -> None:
    parts.BrokenSession.quit_ignores_rset = True


@fault(
    "lock-held-after-quit",
    "UPDATE",
    "The maildrop lock is released 3 s after QUIT, not at once.",
    "rfc1939/6/quit-releases-lock",
)
def _lock_held_after_quit() -> None:
    parts.BrokenSession.hold_lock_after_quit = 3.0
