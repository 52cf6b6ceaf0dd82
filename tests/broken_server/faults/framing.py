"""Faults in the wire format: framing, the command parser, long lines, response codes."""

from __future__ import annotations

import pop3suite.proto.server as core_module
from pop3suite.proto import responses
from pop3suite.proto.errors import UnknownCommand

from .. import parts
from ..parts import override_command
from .registry import _original, fault

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
