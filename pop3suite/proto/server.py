"""The POP3 server state machine, with no I/O (STYLE.md principles 1-2).

Theory of operation
-------------------
A :class:`ServerSession` is fed the bytes a client sends
(:meth:`~ServerSession.receive_data`) and hands back *actions*
(:meth:`~ServerSession.next_action`), one per command, in order:

* :class:`Send` -- reply bytes the core computed itself.  Everything that
  only needs the login-time *listing* (sizes, UIDs, deletion marks) is
  answered here: STAT, LIST, UIDL, DELE, RSET, NOOP, CAPA and every error.
* :class:`Authenticate` -- the shell checks credentials (and takes the
  maildrop lock), then calls :meth:`~ServerSession.accept_login` with the
  listing or :meth:`~ServerSession.reject_login` with the error.
* :class:`Retrieve` -- the shell writes ``status_line``, streams the message
  through :func:`~pop3suite.proto.framing.encode_body` (and a
  :class:`~pop3suite.proto.framing.TopFilter` for TOP).
* :class:`StartTLS` -- the shell writes ``reply``, drops buffered plaintext
  (:meth:`~ServerSession.start_tls_discard`), upgrades, then calls
  :meth:`~ServerSession.tls_started`.
* :class:`Update` -- QUIT in TRANSACTION: the shell removes exactly
  ``numbers`` and reports with :meth:`~ServerSession.update_finished`.
* :class:`Close` -- write ``reply`` and close; nothing is removed.

Which command is valid in which state is the one table :data:`COMMANDS`.
While the shell owes the core an answer (after Authenticate, StartTLS or
Update) the session processes no further command; pipelined commands wait in
the buffer and come out in order afterwards (RFC 2449 §6.6).

The core never looks at a clock, a socket or a file.  Timeouts, login delays,
TLS and storage belong to the shell.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import responses
from .auth import sasl_plain_split
from .commands import Command, expect_args, line_count, message_number, parse_command
from .errors import (
    AuthFailed,
    BadArguments,
    CleartextDisallowed,
    LineTooLong,
    MalformedResponse,
    NoSuchMessage,
    Pop3Error,
    TooManyErrors,
    UnknownCommand,
    WrongState,
)
from .framing import LINE_TOO_LONG, LineBuffer
from .limits import CRLF, MAX_COMMAND_LINE, MAX_SASL_LINE, TERMINATOR


class State(enum.Enum):
    """RFC 1939 §3 session states (plus CLOSED once QUIT or an error ended it)."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"


@dataclass(frozen=True)
class MessageInfo:
    """What the core knows of one message: its wire size and its UID."""

    size: int
    uid: str


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Send:
    data: bytes


@dataclass(frozen=True)
class Authenticate:
    """Credentials to check.

    Attributes:
        mechanism: ``"USER"`` (USER/PASS), ``"APOP"`` or a SASL mechanism
            name such as ``"PLAIN"``.
        username: the login name as sent (decoded UTF-8).
        secret: the password (USER, PLAIN) or the hex digest (APOP).
        authzid: SASL authorization identity, empty when not given.
    """

    mechanism: str
    username: str
    secret: bytes = field(repr=False)
    authzid: str = ""


@dataclass(frozen=True)
class Retrieve:
    """Stream message ``number`` (1-based); ``top_lines`` is None for RETR."""

    number: int
    status_line: bytes
    top_lines: int | None = None


@dataclass(frozen=True)
class StartTLS:
    reply: bytes


@dataclass(frozen=True)
class Update:
    """Remove exactly these 1-based message numbers, then report back."""

    numbers: tuple[int, ...]


@dataclass(frozen=True)
class Close:
    reply: bytes


Action = Send | Authenticate | Retrieve | StartTLS | Update | Close


@dataclass
class SessionOptions:
    """What the shell tells the core about this connection and server.

    Attributes:
        implementation: the RFC 2449 IMPLEMENTATION text.
        tls_active: the connection is already inside TLS (implicit TLS port).
        stls_available: STLS can be offered (a certificate is configured).
        cleartext_login: USER/PASS and SASL PLAIN allowed without TLS.
        apop_timestamp: the greeting's msg-id for APOP, or None when APOP is
            not offered on this connection.
        sasl_mechanisms: SASL mechanisms to offer (only PLAIN is handled by
            the core; others are passed to the shell as ``Authenticate``).
        login_delay: RFC 2449 LOGIN-DELAY seconds to advertise, or None.
        login_delay_per_user: the delay differs per user (RFC 2449 §6.5):
            AUTHORIZATION-state CAPA appends ``USER`` to ``login_delay``
            (the largest value any user has); the shell sets
            ``login_delay`` to this user's value once logged in.
        expire: RFC 2449 EXPIRE value to advertise (``"NEVER"`` or days).
        max_bad_commands: unknown commands / over-long lines tolerated
            before the connection is closed.
    """

    implementation: str = "pop3suite-reference"
    tls_active: bool = False
    stls_available: bool = False
    cleartext_login: bool = True
    apop_timestamp: str | None = None
    sasl_mechanisms: tuple[str, ...] = ("PLAIN",)
    login_delay: int | None = None
    login_delay_per_user: bool = False
    expire: str | None = None
    max_bad_commands: int = 20


Handler = Callable[["ServerSession", Command], Action]


@dataclass(frozen=True)
class CommandSpec:
    """One row of the command table."""

    states: frozenset[State]
    handler: Handler


class ServerSession:
    """One POP3 connection's protocol state.  See the module docstring."""

    def __init__(self, options: SessionOptions | None = None) -> None:
        self.options = options or SessionOptions()
        self.state = State.AUTHORIZATION
        self.username: str | None = None  # set once logged in
        self._pending_user: str | None = None  # USER given, PASS awaited
        self._listing: tuple[MessageInfo, ...] = ()
        self._deleted: set[int] = set()
        self._live_size = 0  # octets of messages not marked deleted (STAT)
        self._lines = LineBuffer(MAX_COMMAND_LINE)
        self._awaiting: str | None = None  # the shell owes us this answer
        self._sasl_mechanism: str | None = None  # inside an AUTH exchange
        self.bad_commands = 0
        #: Keyword of the command the last action answers (``UNKNOWN`` for a
        #: line that is no command): a bounded label for the shell's metrics.
        self.last_command = ""

    # ----------------------------------------------------------- public API

    def greeting(self) -> bytes:
        """The ``+OK`` greeting, with the APOP timestamp when offered."""
        text = "POP3 server ready."
        if self.options.apop_timestamp:
            text = f"{text} {self.options.apop_timestamp}"
        return responses.ok(text)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes the client sent."""
        self._lines.feed(data)

    def next_action(self) -> Action | None:
        """The next action for the shell, or None when more bytes are needed."""
        if self._awaiting:
            raise RuntimeError(f"shell still owes {self._awaiting}")
        if self.state in (State.CLOSED, State.UPDATE):
            return None
        line = self._lines.next_line()
        if line is None:
            return None
        if self._sasl_mechanism is not None:
            self.last_command = "AUTH"
            return self._sasl_response(line)
        self.last_command = "UNKNOWN"
        if line is LINE_TOO_LONG:
            return self._bad_command(LineTooLong())
        assert isinstance(line, bytes)
        try:
            command = parse_command(line)
        except Pop3Error as error:
            self._pending_user = None
            return self._bad_command(error)
        if command.keyword not in ("USER", "PASS"):
            self._pending_user = None  # RFC 1939 §7: PASS only right after USER
        spec = COMMANDS.get(command.keyword)
        if spec is None:
            return self._bad_command(UnknownCommand())
        self.last_command = command.keyword
        if self.state not in spec.states:
            return Send(responses.error_line(WrongState()))
        try:
            return spec.handler(self, command)
        except Pop3Error as error:
            return Send(responses.error_line(error))

    def accept_login(self, username: str, listing: Sequence[MessageInfo]) -> bytes:
        """Credentials were good and the maildrop is ours: enter TRANSACTION."""
        self._expect("login")
        self.state = State.TRANSACTION
        self.username = username
        self._listing = tuple(listing)
        self._deleted.clear()
        self._live_size = sum(m.size for m in self._listing)
        return responses.ok("Logged in.")

    def reject_login(self, error: Pop3Error) -> bytes:
        """Login refused: stay in AUTHORIZATION (RFC 1939 §7)."""
        self._expect("login")
        return responses.error_line(error)

    def start_tls_discard(self) -> int:
        """Drop plaintext received after STLS (CVE-2011-0411 class)."""
        return self._lines.discard()

    def tls_started(self) -> None:
        """TLS is up: forget any USER given before it (RFC 2595 §4)."""
        self._expect("tls")
        self.options.tls_active = True
        self._pending_user = None

    def update_finished(self, error: Pop3Error | None = None) -> bytes:
        """UPDATE done (RFC 1939 §6); the reply to QUIT.  Close afterwards."""
        self._expect("update")
        self.state = State.CLOSED
        if error is not None:
            return responses.err("Some deleted messages not removed.", error.code)
        if not self._deleted:
            return responses.ok("Logging out.")
        return responses.ok(f"Logging out, {len(self._deleted)} messages deleted.")

    @property
    def listing(self) -> tuple[MessageInfo, ...]:
        return self._listing

    @property
    def deleted(self) -> frozenset[int]:
        return frozenset(self._deleted)

    def capabilities(self) -> list[str]:
        """The CAPA list for the current state (RFC 2449 §5).

        Everything listed works: STLS only while it can still run (not
        after TLS, not after login); USER and SASL PLAIN only where cleartext
        login is allowed or TLS is active.
        """
        opts = self.options
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        login_allowed = opts.cleartext_login or opts.tls_active
        if login_allowed:
            caps.append("USER")
        mechanisms = [m for m in opts.sasl_mechanisms if login_allowed or m != "PLAIN"]
        if mechanisms:
            caps.append("SASL " + " ".join(mechanisms))
        if opts.stls_available and not opts.tls_active and self.state is State.AUTHORIZATION:
            caps.append("STLS")
        if opts.login_delay is not None:
            per_user = opts.login_delay_per_user and self.state is State.AUTHORIZATION
            caps.append(f"LOGIN-DELAY {opts.login_delay}{' USER' if per_user else ''}")
        if opts.expire is not None:
            caps.append(f"EXPIRE {opts.expire}")
        caps.append(f"IMPLEMENTATION {opts.implementation}")
        return caps

    # -------------------------------------------------------------- helpers

    def _expect(self, what: str) -> None:
        if self._awaiting != what:
            raise RuntimeError(f"no {what} pending (awaiting {self._awaiting})")
        self._awaiting = None

    def _await(self, what: str, action: Action) -> Action:
        self._awaiting = what
        return action

    def _bad_command(self, error: Pop3Error) -> Action:
        self.bad_commands += 1
        if self.bad_commands >= self.options.max_bad_commands:
            self.state = State.CLOSED
            return Close(responses.error_line(TooManyErrors()))
        return Send(responses.error_line(error))

    def _message(self, arg: bytes) -> int:
        """A message number naming a live (not deleted) message."""
        number = message_number(arg)
        if not 1 <= number <= len(self._listing) or number in self._deleted:
            raise NoSuchMessage()
        return number

    def _live(self) -> list[tuple[int, MessageInfo]]:
        return [(i, m) for i, m in enumerate(self._listing, 1) if i not in self._deleted]

    def _login_allowed(self) -> None:
        if not (self.options.cleartext_login or self.options.tls_active):
            raise CleartextDisallowed()

    @staticmethod
    def _multiline(first: bytes, lines: Sequence[str]) -> Send:
        body = "".join(f"{line}\r\n" for line in lines).encode("ascii")
        return Send(first + body + TERMINATOR)

    # ------------------------------------------------------------- handlers

    def _cmd_user(self, command: Command) -> Action:
        (name,) = expect_args(command, 1)
        self._login_allowed()
        try:
            self._pending_user = name.decode("utf-8")
        except UnicodeDecodeError:
            raise BadArguments("Invalid user name.") from None
        return Send(responses.ok(""))

    def _cmd_pass(self, command: Command) -> Action:
        (password,) = expect_args(command, 1)
        if self._pending_user is None:
            raise BadArguments("No USER given.")
        user, self._pending_user = self._pending_user, None
        self._login_allowed()
        return self._await("login", Authenticate("USER", user, password))

    def _cmd_apop(self, command: Command) -> Action:
        name, digest = expect_args(command, 2)
        self._pending_user = None
        if not self.options.apop_timestamp:
            raise UnknownCommand("APOP is not offered.")
        try:
            user = name.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthFailed() from None
        return self._await("login", Authenticate("APOP", user, digest))

    def _cmd_auth(self, command: Command) -> Action:
        self._pending_user = None
        if not command.args:
            # Non-standard but widely used (Outlook): list the mechanisms,
            # exactly those CAPA's SASL line offers.
            sasl = next((c for c in self.capabilities() if c.startswith("SASL ")), "SASL")
            return self._multiline(responses.ok(""), sasl.split()[1:])
        args = expect_args(command, 1, 2)
        mechanism = args[0].decode("ascii", "replace").upper()
        if mechanism not in self.options.sasl_mechanisms:
            raise BadArguments("Unsupported authentication mechanism.")
        if mechanism == "PLAIN":
            self._login_allowed()
        if len(args) == 1:
            self._sasl_mechanism = mechanism
            self._lines.max_line = MAX_SASL_LINE
            return Send(responses.continuation())
        return self._sasl_decode(mechanism, args[1])

    def _sasl_response(self, line: bytes | object) -> Action:
        """The client's line inside an AUTH exchange (RFC 5034 §4)."""
        mechanism, self._sasl_mechanism = self._sasl_mechanism, None
        self._lines.max_line = MAX_COMMAND_LINE
        assert mechanism is not None
        if line is LINE_TOO_LONG:
            return Send(responses.error_line(AuthFailed("SASL response too long.")))
        assert isinstance(line, bytes)
        if line == b"*":
            return Send(responses.err("Authentication cancelled.", "AUTH"))
        try:
            return self._sasl_decode(mechanism, line)
        except Pop3Error as error:
            return Send(responses.error_line(error))

    def _sasl_decode(self, mechanism: str, payload: bytes) -> Action:
        if payload == b"=":  # RFC 5034 §4: "=" is an empty initial response
            payload = b""
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise BadArguments("Invalid base64 data.") from None
        if mechanism != "PLAIN":
            raise BadArguments("Unsupported authentication mechanism.")
        try:
            authzid, authcid, password = sasl_plain_split(data)
        except MalformedResponse:
            raise AuthFailed() from None
        return self._await("login", Authenticate("PLAIN", authcid, password, authzid))

    def _cmd_stls(self, command: Command) -> Action:
        expect_args(command, 0)
        if self.options.tls_active:
            raise BadArguments("TLS is already active.")
        if not self.options.stls_available:
            raise UnknownCommand("STLS is not available.")
        self._pending_user = None
        return self._await("tls", StartTLS(responses.ok("Begin TLS negotiation now.")))

    def _cmd_capa(self, command: Command) -> Action:
        expect_args(command, 0)
        return self._multiline(responses.ok("Capability list follows."), self.capabilities())

    def _cmd_quit(self, command: Command) -> Action:
        expect_args(command, 0)
        if self.state is State.TRANSACTION:
            self.state = State.UPDATE
            return self._await("update", Update(tuple(sorted(self._deleted))))
        self.state = State.CLOSED
        return Close(responses.ok("Logging out."))

    def _cmd_noop(self, command: Command) -> Action:
        expect_args(command, 0)
        return Send(responses.ok(""))

    def _cmd_stat(self, command: Command) -> Action:
        expect_args(command, 0)
        return Send(responses.ok(f"{len(self._listing) - len(self._deleted)} {self._live_size}"))

    def _cmd_list(self, command: Command) -> Action:
        args = expect_args(command, 0, 1)
        if args:
            number = self._message(args[0])
            return Send(responses.ok(f"{number} {self._listing[number - 1].size}"))
        live = self._live()
        first = responses.ok(f"{len(live)} messages ({sum(m.size for _, m in live)} octets)")
        return self._multiline(first, [f"{i} {m.size}" for i, m in live])

    def _cmd_uidl(self, command: Command) -> Action:
        args = expect_args(command, 0, 1)
        if args:
            number = self._message(args[0])
            return Send(responses.ok(f"{number} {self._listing[number - 1].uid}"))
        return self._multiline(responses.ok(""), [f"{i} {m.uid}" for i, m in self._live()])

    def _cmd_retr(self, command: Command) -> Action:
        (arg,) = expect_args(command, 1)
        number = self._message(arg)
        size = self._listing[number - 1].size
        return Retrieve(number, responses.ok(f"{size} octets"))

    def _cmd_top(self, command: Command) -> Action:
        arg, lines = expect_args(command, 2)
        count = line_count(lines)
        number = self._message(arg)
        return Retrieve(number, responses.ok(""), top_lines=count)

    def _cmd_dele(self, command: Command) -> Action:
        (arg,) = expect_args(command, 1)
        number = self._message(arg)
        self._deleted.add(number)
        self._live_size -= self._listing[number - 1].size
        return Send(responses.ok(f"Message {number} deleted."))

    def _cmd_rset(self, command: Command) -> Action:
        expect_args(command, 0)
        self._deleted.clear()
        self._live_size = sum(m.size for m in self._listing)
        return Send(responses.ok(f"{len(self._listing)} messages."))


_AUTH = frozenset({State.AUTHORIZATION})
_TRANS = frozenset({State.TRANSACTION})
_BOTH = _AUTH | _TRANS

#: The one table of which command runs in which state (RFC 1939 §§4-7,
#: RFC 2449 §5, RFC 2595 §4, RFC 5034 §4).  A command missing here is
#: unknown; a command used outside its states gets ``-ERR``.
COMMANDS: dict[str, CommandSpec] = {
    "USER": CommandSpec(_AUTH, ServerSession._cmd_user),
    "PASS": CommandSpec(_AUTH, ServerSession._cmd_pass),
    "APOP": CommandSpec(_AUTH, ServerSession._cmd_apop),
    "AUTH": CommandSpec(_AUTH, ServerSession._cmd_auth),
    "STLS": CommandSpec(_AUTH, ServerSession._cmd_stls),
    "CAPA": CommandSpec(_BOTH, ServerSession._cmd_capa),
    "QUIT": CommandSpec(_BOTH, ServerSession._cmd_quit),
    "NOOP": CommandSpec(_TRANS, ServerSession._cmd_noop),
    "STAT": CommandSpec(_TRANS, ServerSession._cmd_stat),
    "LIST": CommandSpec(_TRANS, ServerSession._cmd_list),
    "UIDL": CommandSpec(_TRANS, ServerSession._cmd_uidl),
    "RETR": CommandSpec(_TRANS, ServerSession._cmd_retr),
    "TOP": CommandSpec(_TRANS, ServerSession._cmd_top),
    "DELE": CommandSpec(_TRANS, ServerSession._cmd_dele),
    "RSET": CommandSpec(_TRANS, ServerSession._cmd_rset),
}

__all__ = [
    "COMMANDS",
    "CRLF",
    "Action",
    "Authenticate",
    "Close",
    "CommandSpec",
    "MessageInfo",
    "Retrieve",
    "Send",
    "ServerSession",
    "SessionOptions",
    "StartTLS",
    "State",
    "Update",
]
