"""The fault registry: name -> area, what is broken, the cases that catch it.

``catches`` lists the conformance case ids (``results.json`` ids, with the
parameter where the case is parametrised) that must grade the fault
FAILED -- or NON-STRICT for a SHOULD case -- when the suite runs against a
server with that fault alone.  They were measured with a full
``pop3suite check --fast --profile provider`` run per fault
(tests/integration/test_broken_server.py keeps them true).

Each fault's ``install`` runs in the broken server's process before the
server starts; it switches on one behaviour of the classes in
:mod:`.parts`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pop3suite.proto.commands as commands_module
import pop3suite.proto.server as core_module
from pop3suite.proto import responses
from pop3suite.proto.errors import UnknownCommand

from . import parts
from .parts import override_command

AREAS = (
    "AUTHORIZATION",
    "TRANSACTION",
    "UPDATE",
    "framing",
    "CAPA",
    "STLS",
    "APOP",
    "SASL",
    "idle timeout",
    "locking",
    "long lines",
    "response codes",
    "SMTP relay",
    "parser",
)


@dataclass(frozen=True)
class Fault:
    name: str
    area: str
    description: str
    catches: tuple[str, ...]
    install: Callable[[], None]


FAULTS: dict[str, Fault] = {}


def fault(
    name: str, area: str, description: str, *catches: str
) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Register the decorated installer as fault ``name``."""
    assert area in AREAS, area

    def register(install: Callable[[], None]) -> Callable[[], None]:
        assert name not in FAULTS, name
        FAULTS[name] = Fault(name, area, description, tuple(catches), install)
        return install

    return register


def install(name: str) -> None:
    """Switch fault ``name`` on in this process (before the server starts)."""
    parts.use_core()
    parts.use_session()
    FAULTS[name].install()


_BOTH = frozenset({core_module.State.AUTHORIZATION, core_module.State.TRANSACTION})


def _original(keyword: str) -> Callable[..., core_module.Action]:
    return core_module.COMMANDS[keyword].handler


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


# ------------------------------------------------------------------ framing


@fault(
    "no-dot-stuffing",
    "framing",
    "RETR and TOP send lines beginning with '.' without the stuffing dot.",
    "rfc1939/5/retr-byte-exact[dot-lines]",
    "rfc1939/5/list-exact-size[dot-lines]",
    "rfc1939/7/top-lines[dot-lines]",
)
def _no_dot_stuffing() -> None:
    parts.BrokenSession.no_dot_stuffing = True


@fault(
    "bare-lf-bodies",
    "framing",
    "Messages stored with bare LF are sent with bare LF (no CRLF on the wire).",
    "rfc1939/5/retr-byte-exact[bare-lf]",
    "rfc1939/5/list-exact-size[bare-lf]",
)
def _bare_lf_bodies() -> None:
    parts.BrokenSession.no_crlf_normalizing = True


@fault(
    "err-lines-bare-lf",
    "framing",
    "-ERR status lines end in a bare LF instead of CRLF.",
    "rfc1939/3/crlf-line-ends",
    "security/P12-no-echo-splitting",
)
def _err_lines_bare_lf() -> None:
    original = responses.err

    def err(text: str, code: str | None = None) -> bytes:
        return original(text, code)[:-2] + b"\n"

    responses.err = err  # error_line() looks err up in the module


@fault(
    "body-without-terminator",
    "framing",
    "RETR ends the message by closing the connection instead of sending '.' CRLF.",
    "rfc1939/5/retr-byte-exact[plus-ok]",
    "rfc1939/5/retr-byte-exact[dot-lines]",
    "rfc1939/5/list-exact-size[dot-lines]",
)
def _body_without_terminator() -> None:
    parts.BrokenSession.drop_terminator = True


@fault(
    "list-size-stored-octets",
    "framing",
    "LIST and STAT sizes are the octets on disk, not the CRLF octets RETR sends.",
    "rfc1939/5/list-exact-size[bare-lf]",
    "rfc1939/5/list-exact-size[no-final-newline]",
)
def _list_size_stored() -> None:
    parts.BrokenSession.stored_sizes = True


@fault(
    "top-one-line-too-many",
    "framing",
    "TOP m n sends n+1 body lines.",
    "rfc1939/7/top-lines[top-lines]",
    "rfc1939/7/top-lines[dot-lines]",
    "rfc1939/7/top-lines[no-final-newline]",
)
def _top_extra_line() -> None:
    original = _original("TOP")

    def top(core: parts.BrokenCore, command: object) -> core_module.Action:
        action = original(core, command)
        if isinstance(action, core_module.Retrieve) and action.top_lines is not None:
            return core_module.Retrieve(action.number, action.status_line, action.top_lines + 1)
        return action

    override_command("TOP", top)


@fault(
    "lower-case-err",
    "framing",
    "An unknown command is answered '-err' in lower case.",
    "rfc1939/3/status-upper-case",
    "rfc1939/3/unknown-command",
    "rfc1939/3/crlf-line-ends",
    "rfc2449/5/capability-works[RESP-CODES]",
    "rfc2449/6.4/resp-code-syntax",
)
def _lower_case_err() -> None:
    original = responses.error_line

    def error_line(error: core_module.Pop3Error) -> bytes:
        line = original(error)
        return b"-err" + line[4:] if isinstance(error, UnknownCommand) else line

    responses.error_line = error_line


@fault(
    "greeting-over-512",
    "framing",
    "The greeting is longer than 512 octets.",
    "rfc1939/3/response-length",
    "rfc2449/4/first-line-512-octets[plain]",
    "rfc2449/4/first-line-512-octets[stls]",
    "rfc2449/4/first-line-512-octets[implicit]",
)
def _long_greeting() -> None:
    parts.BrokenCore.long_greeting = True


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


# ------------------------------------------------------------------ long lines


@fault(
    "long-line-truncated",
    "long lines",
    "An over-long command line is cut to 253 octets and executed (qpopper style); NOOP ignores "
    "its arguments, so 'NOOP AAAA...' (8 KiB) gets +OK.",
    "security/P2-long-lines",
)
def _long_line_truncated() -> None:
    parts.BrokenCore.truncate_long_lines = True
    override_command("NOOP", lambda core, command: core_module.Send(responses.ok("")))


@fault(
    "line-limit-128",
    "long lines",
    "Command lines over 128 octets are refused (RFC 2449 §4 asks for 255).",
    "rfc2449/4/command-255-octets",
)
def _line_limit() -> None:
    parts.BrokenCore.max_line = 128


# ------------------------------------------------------------------ response codes


@fault(
    "no-auth-code",
    "response codes",
    "Failed logins get -ERR without [AUTH] although AUTH-RESP-CODE is advertised.",
    "rfc3206/6/auth-resp-code-every-method",
    "rfc2449/5/capability-works[AUTH-RESP-CODE]",
)
def _no_auth_code() -> None:
    parts.BrokenCore.strip_login_codes = True


@fault(
    "malformed-resp-code",
    "response codes",
    "Failed logins get a response code without its closing bracket ('-ERR [AUTH ...').",
    "rfc2449/6.4/resp-code-syntax",
    "rfc2449/5/capability-works[RESP-CODES]",
    "rfc2449/5/capability-works[AUTH-RESP-CODE]",
    "rfc3206/6/auth-resp-code-every-method",
)
def _malformed_code() -> None:
    parts.BrokenCore.broken_login_codes = True


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


# ------------------------------------------------------------------ parser


@fault(
    "nul-cuts-line",
    "parser",
    "A command line is cut at its first NUL (C string), so 'USER alice<NUL>bob' is USER alice.",
    "security/A6-nul-in-credentials",
)
def _nul_cuts_line() -> None:
    original = core_module.parse_command

    def parse_command(line: bytes, max_line: int = 255) -> core_module.Command:
        return original(line.split(b"\0", 1)[0], max_line)

    core_module.parse_command = parse_command  # type: ignore[assignment]


@fault(
    "bare-cr-ends-line",
    "parser",
    "A bare CR ends a command line, so 'NOOP<CR>DELE 1' is two commands.",
    "security/P7-bare-cr",
    "security/A7-control-chars-in-credentials",
)
def _bare_cr() -> None:
    parts.BrokenCore.split_on_cr = True


@fault(
    "lenient-message-numbers",
    "parser",
    "Message numbers are read with int(): '+1', ' 1', '1_0' name messages.",
    "security/P4-message-number-forms",
)
def _lenient_numbers() -> None:
    def message_number(arg: bytes) -> int:
        try:
            return int(arg)
        except ValueError:
            raise core_module.BadArguments("Invalid message number.") from None

    core_module.message_number = message_number  # type: ignore[assignment]


@fault(
    "unknown-command-ok",
    "parser",
    "An unknown command is answered +OK.",
    "rfc1939/3/unknown-command",
)
def _unknown_ok() -> None:
    original = parts.BrokenCore._bad_command

    def bad_command(core: parts.BrokenCore, error: core_module.Pop3Error) -> core_module.Action:
        if isinstance(error, UnknownCommand):
            return core_module.Send(responses.ok(""))
        return original(core, error)

    parts.BrokenCore._bad_command = bad_command  # type: ignore[method-assign]
