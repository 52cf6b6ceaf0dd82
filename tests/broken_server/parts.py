"""The broken parts the faults are made of: subclasses of the reference
server's own classes, and the one place that swaps them in.

Every fault installs itself by replacing a name where the reference server
looks it up (``pop3suite.server.server.Pop3Session``,
``pop3suite.server.session.ServerSession``, an entry of the core's command
table ...).  That happens in the broken server's own process, before the
server starts, and never in the product's source.

The subclasses carry switches (class attributes) so one class serves
several faults; a fault sets the switch it needs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import pop3suite.proto.server as core_module
import pop3suite.server.server as server_module
import pop3suite.server.session as session_module
from pop3suite.proto import MessageInfo, Send, ServerSession, State, responses
from pop3suite.proto.auth import apop_digest
from pop3suite.proto.errors import MailboxInUse, Pop3Error
from pop3suite.proto.framing import LineBuffer, LineTooLongMarker
from pop3suite.proto.server import Action, Authenticate, CommandSpec
from pop3suite.server import passwords
from pop3suite.server.accounts import Authenticator
from pop3suite.server.relay import RelayWindow
from pop3suite.server.server import ReferenceServer
from pop3suite.server.session import Pop3Session, ServerContext
from pop3suite.server.storage import StorageError

Handler = Callable[[ServerSession, Any], Action]


# ------------------------------------------------------------------ installing


def override_command(
    keyword: str, handler: Handler | None = None, states: frozenset[State] | None = None
) -> None:
    """Replace one row of the core's command table (this process only)."""
    spec = core_module.COMMANDS[keyword]
    core_module.COMMANDS[keyword] = CommandSpec(states or spec.states, handler or spec.handler)


def use_core() -> type[BrokenCore]:
    """Sessions build :class:`BrokenCore` instead of ``ServerSession``."""
    session_module.ServerSession = BrokenCore  # type: ignore[misc]
    return BrokenCore


def use_session() -> type[BrokenSession]:
    """The server runs :class:`BrokenSession` for every connection."""
    server_module.Pop3Session = BrokenSession  # type: ignore[misc]
    return BrokenSession


def use_authenticator() -> type[BrokenAuthenticator]:
    server_module.Authenticator = BrokenAuthenticator  # type: ignore[misc]
    return BrokenAuthenticator


def use_relay() -> type[BrokenRelayWindow]:
    server_module.RelayWindow = BrokenRelayWindow  # type: ignore[misc]
    return BrokenRelayWindow


def use_context() -> type[BrokenContext]:
    server_module.ServerContext = BrokenContext  # type: ignore[misc]
    return BrokenContext


def use_server() -> type[BrokenServer]:
    """``pop3suite serve`` imports ReferenceServer when it runs: give it ours."""
    server_module.ReferenceServer = BrokenServer  # type: ignore[misc]
    return BrokenServer


# ------------------------------------------------------------------ the protocol core


class BrokenCore(ServerSession):
    """The protocol core with switchable faults."""

    #: Greeting padded beyond RFC 1939 §3's 512 octets.
    long_greeting: ClassVar[bool] = False
    #: A USER given before STLS survives the handshake.
    keep_user_over_tls: ClassVar[bool] = False
    #: ``*`` inside AUTH gets another challenge instead of -ERR.
    sasl_star_continues: ClassVar[bool] = False
    #: Extra capability lines advertised (commands not implemented).
    extra_capabilities: ClassVar[tuple[str, ...]] = ()
    #: Tags dropped from the TRANSACTION-state CAPA.
    drop_after_login: ClassVar[tuple[str, ...]] = ()
    #: STLS stays in the CAPA list after TLS is up.
    stls_after_tls: ClassVar[bool] = False
    #: Command line limit (RFC 2449 §4 asks for 255).
    max_line: ClassVar[int | None] = None
    #: An over-long line is cut to the limit and executed.
    truncate_long_lines: ClassVar[bool] = False
    #: No limit on bad commands.
    unlimited_bad_commands: ClassVar[bool] = False
    #: A bare CR ends a command line too.
    split_on_cr: ClassVar[bool] = False
    #: Failed logins answered without their response code.
    strip_login_codes: ClassVar[bool] = False
    #: Failed logins answered with a malformed response code.
    broken_login_codes: ClassVar[bool] = False
    #: Per-login rewrite of the listing (sizes, UIDs), set by the shell.
    listing_hook: Callable[[Sequence[MessageInfo]], Sequence[MessageInfo]] | None = None
    #: Account PASS falls back to when no USER was given, set by the shell.
    default_user: str | None = None

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.ever_deleted: set[int] = set()
        self.user_given = False
        self._user_before: str | None = None
        if self.max_line is not None:
            self._lines.max_line = self.max_line
        if self.truncate_long_lines:
            self._lines = TruncatingLineBuffer(self._lines.max_line)
        if self.unlimited_bad_commands:
            self.options.max_bad_commands = 10**9

    def next_action(self) -> Action | None:
        # The core forgets a pending USER before it runs any other command;
        # faults about "after USER" look here.
        self.user_given = self._pending_user is not None
        self._user_before = self._pending_user
        action = super().next_action()
        self.ever_deleted |= self._deleted  # what RSET unmarked, remembered
        return action

    def greeting(self) -> bytes:
        line = super().greeting()
        if self.long_greeting:
            line = line[:-2] + b" " + b"x" * 600 + b"\r\n"
        return line

    def receive_data(self, data: bytes) -> None:
        if self.split_on_cr:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        super().receive_data(data)

    def accept_login(self, username: str, listing: Sequence[MessageInfo]) -> bytes:
        if self.listing_hook is not None:
            listing = self.listing_hook(listing)
        return super().accept_login(username, listing)

    def reject_login(self, error: Pop3Error) -> bytes:
        line = super().reject_login(error)
        if self.strip_login_codes and error.code:
            return responses.err(error.text)
        if self.broken_login_codes and error.code:
            return f"-ERR [{error.code} {error.text}\r\n".encode()
        return line

    def tls_started(self) -> None:
        super().tls_started()
        if self.keep_user_over_tls:
            self._pending_user = self._user_before  # the USER before STLS

    def capabilities(self) -> list[str]:
        caps = super().capabilities()
        caps[-1:-1] = list(self.extra_capabilities)
        if self.state is State.TRANSACTION and self.drop_after_login:
            caps = [c for c in caps if c.split()[0] not in self.drop_after_login]
        if self.stls_after_tls and self.options.tls_active and "STLS" not in caps:
            caps.insert(-1, "STLS")
        return caps

    def _sasl_response(self, line: bytes | object) -> Action:
        if self.sasl_star_continues and line == b"*":
            return Send(responses.continuation())  # still inside the exchange
        return super()._sasl_response(line)


class TruncatingLineBuffer(LineBuffer):
    """A line buffer that cuts an over-long line to its first ``max_line``
    - 2 octets and hands that on as the command (the rest is dropped)."""

    def next_line(self) -> bytes | LineTooLongMarker | None:
        newline = self._buf.find(b"\n")
        too_long = newline + 1 > self.max_line if newline >= 0 else len(self._buf) >= self.max_line
        if not too_long:
            return super().next_line()
        line = bytes(self._buf[: self.max_line - 2])
        if newline >= 0:
            del self._buf[: newline + 1]
        else:
            self._buf.clear()
            self._discarding = True
        return line


# ------------------------------------------------------------------ the session shell


class BrokenSession(Pop3Session):
    """The connection shell with switchable faults."""

    #: RETR/TOP bodies are not dot-stuffed.
    no_dot_stuffing: ClassVar[bool] = False
    #: Stored line ends go out as stored (bare LF stays bare LF).
    no_crlf_normalizing: ClassVar[bool] = False
    #: A RETR body ends by closing the connection instead of ``.CRLF``.
    drop_terminator: ClassVar[bool] = False
    #: UPDATE runs however the session ends (EOF, reset, timeout).
    update_on_any_end: ClassVar[bool] = False
    #: QUIT answers +OK and removes nothing.
    quit_removes_nothing: ClassVar[bool] = False
    #: QUIT removes every message marked at any time, RSET or not.
    quit_ignores_rset: ClassVar[bool] = False
    #: The maildrop lock is kept this long after QUIT.
    hold_lock_after_quit: ClassVar[float] = 0.0
    #: +OK to STLS, then no handshake: the session goes on in cleartext.
    stls_without_tls: ClassVar[bool] = False
    #: Plaintext pipelined after STLS is executed after the handshake.
    keep_plaintext_after_stls: ClassVar[bool] = False
    #: On the idle timer: an -ERR line before the close.
    timeout_reply: ClassVar[bool] = False
    #: Commands do not restart the idle timer (a fixed deadline from login).
    timer_not_reset: ClassVar[bool] = False
    #: LIST/STAT sizes are the stored octets, not the wire octets.
    stored_sizes: ClassVar[bool] = False
    #: UIDs differ in every session.
    session_uids: ClassVar[bool] = False
    #: PASS without USER logs in the first account.
    pass_defaults_user: ClassVar[bool] = False
    #: [IN-USE] for a busy maildrop before the password is checked.
    in_use_before_password: ClassVar[bool] = False
    #: A failed login opens the POP-before-SMTP window too.
    failed_login_opens_relay: ClassVar[bool] = False

    #: Accounts some session of this process has logged in (for in_use_before_password).
    _busy: ClassVar[set[str]] = set()

    def __init__(self, ctx: ServerContext, conn: Any, listener: str) -> None:
        super().__init__(ctx, conn, listener)
        self._session_started = asyncio.get_running_loop().time()
        core = self.core
        if isinstance(core, BrokenCore):
            if self.stored_sizes:
                core.listing_hook = self._stored_listing
            elif self.session_uids:
                nonce = os.urandom(4).hex()
                core.listing_hook = lambda listing: [
                    MessageInfo(m.size, f"{m.uid[:50]}.{nonce}") for m in listing
                ]
            if self.pass_defaults_user:
                core.default_user = next(iter(ctx.settings.accounts))

    def _stored_listing(self, listing: Sequence[MessageInfo]) -> list[MessageInfo]:
        assert self.maildrop is not None
        return [
            MessageInfo(os.path.getsize(m.path), i.uid)
            for m, i in zip(self.maildrop.messages, listing, strict=True)
        ]

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            if self.core.username:
                self._busy.discard(self.core.username)

    async def _loop(self) -> None:
        try:
            await super()._loop()
        except TimeoutError:
            if self.timeout_reply:
                self.conn.write(responses.err("Autologout; idle for too long."))
            self._update_anyway()
            raise
        except (ConnectionError, OSError):
            self._update_anyway()
            raise
        self._update_anyway()

    def _update_anyway(self) -> None:
        """update_on_any_end: remove what is marked although no QUIT came."""
        if self.update_on_any_end and self.maildrop is not None and self.core.state is State.TRANSACTION:
            self.maildrop.remove(sorted(self.core.deleted))

    def _read_timeout(self, deadline: float) -> float:
        timeout = super()._read_timeout(deadline)
        if self.timer_not_reset and self.core.state is State.TRANSACTION:
            left = (
                self._session_started
                + 1.5 * self.ctx.settings.idle_timeout
                - asyncio.get_running_loop().time()
            )
            if left <= 0:
                raise TimeoutError("session deadline")
            timeout = min(timeout, left)
        return timeout

    async def _login(self, request: Authenticate) -> bytes:
        if self.in_use_before_password and request.username in self._busy:
            return self.core.reject_login(MailboxInUse())
        reply = await super()._login(request)
        if self.core.username:
            self._busy.add(self.core.username)
        elif self.failed_login_opens_relay:
            for hook in self.ctx.login_hooks:
                hook(request.username, self.conn.peer[0], self.listener, self.conn.tls_active)
        return reply

    async def _retrieve(self, action: Any) -> None:
        if not (self.no_dot_stuffing or self.no_crlf_normalizing or self.drop_terminator):
            await super()._retrieve(action)
            return
        assert self.maildrop is not None
        data = b"".join(self.maildrop.read_chunks(action.number))
        if not self.no_crlf_normalizing:
            normalizer = session_module.CrlfNormalizer()
            data = normalizer.feed(data) + normalizer.finish()
        if action.top_lines is not None:
            data = session_module.TopFilter(action.top_lines).feed(data)
        self.conn.write(action.status_line)
        if self.no_dot_stuffing:
            self.conn.write(data if data.endswith(b"\n") or not data else data + b"\r\n")
            self.conn.write(b".\r\n")
            return
        stuffer = session_module.DotStuffer()
        body = stuffer.feed(data)
        if self.drop_terminator and action.top_lines is None:
            self.conn.write(body)
            await self._drain()
            raise ConnectionResetError("body sent without its terminator")
        self.conn.write(body + stuffer.finish())

    async def _start_tls(self, action: Any) -> None:
        if self.stls_without_tls:
            self.conn.write(action.reply)
            self.core.tls_started()  # the core believes it; the wire stays clear
            return
        if not self.keep_plaintext_after_stls:
            await super()._start_tls(action)
            return
        # What the reference server drops here (CVE-2011-0411) stays in
        # the buffers and is executed as if it had come inside TLS.
        assert self.ctx.tls_context is not None
        self.conn.write(action.reply)
        await self._drain()
        await self.conn.start_tls(self.ctx.tls_context, self.ctx.settings.idle_timeout)
        self.core.tls_started()

    async def _update(self, action: Any) -> bytes:
        if self.quit_removes_nothing:
            return self.core.update_finished()
        if self.quit_ignores_rset:
            marked = getattr(self.core, "ever_deleted", set()) | set(action.numbers)
            action = dataclasses.replace(action, numbers=tuple(sorted(marked)))
        reply = await super()._update(action)
        if self.hold_lock_after_quit and self.maildrop is not None:
            held, self.maildrop = self.maildrop, None
            asyncio.get_running_loop().call_later(self.hold_lock_after_quit, held.close)
        return reply


# ------------------------------------------------------------------ credentials, relay, context, server


class BrokenAuthenticator(Authenticator):
    """Credential checks with switchable faults."""

    #: Mechanisms ("USER", "PLAIN", "APOP") that accept any secret for a known account.
    any_secret: ClassVar[frozenset[str]] = frozenset()

    def check(self, request: Authenticate, apop_timestamp: str | None = None) -> str | None:
        account = self.accounts.get(request.username)
        if (
            account is not None
            and request.mechanism in self.any_secret
            and (request.mechanism == "APOP" or not account.apop)
        ):
            return account.name
        if request.mechanism == "APOP" and apop_timestamp is None and account is not None and account.apop:
            secret = passwords.plain_secret(account.password) or ""
            digest = apop_digest("", secret).encode("ascii")  # no timestamp: MD5 of the secret alone
            return account.name if request.secret == digest else None
        return super().check(request, apop_timestamp)

    def is_cheap(self, request: Authenticate) -> bool:
        return False  # always through check() above


class BrokenRelayWindow(RelayWindow):
    """POP-before-SMTP with switchable faults."""

    #: Every address may relay.
    open_to_all: ClassVar[bool] = False
    #: Logins on every listener open the window (995 too).
    any_listener: ClassVar[bool] = False
    #: No login opens the window.
    never_opens: ClassVar[bool] = False

    def allowed(self, address: str) -> bool:
        return self.open_to_all or super().allowed(address)

    def login_hook(self, listeners: Any) -> Callable[[str, str, str, bool], None]:
        if self.never_opens:
            return lambda *args: None
        if self.any_listener:
            return super().login_hook(("pop3", "pop3s"))
        return super().login_hook(listeners)


class BrokenContext(ServerContext):
    """What all sessions share, with switchable faults."""

    #: The same APOP timestamp on every greeting.
    fixed_timestamp: ClassVar[bool] = False
    #: No APOP timestamp in the greeting although APOP accounts exist.
    no_timestamp: ClassVar[bool] = False

    def apop_timestamp(self) -> str | None:
        if self.no_timestamp:
            return None
        if self.fixed_timestamp:
            return "<1.fixed@pop3suite-broken>"
        return super().apop_timestamp()


class BrokenServer(ReferenceServer):
    """The server with switchable settings faults."""

    #: Multiply the configured idle timeout by this.
    idle_factor: ClassVar[float] = 1.0
    #: No exclusive maildrop lock.
    no_lock: ClassVar[bool] = False

    def __init__(self, settings: Any, store: Any = None) -> None:
        if self.idle_factor != 1.0:
            settings = dataclasses.replace(settings, idle_timeout=settings.idle_timeout * self.idle_factor)
        super().__init__(settings, store)
        if self.no_lock:
            _open_maildirs_unlocked()


def _open_maildirs_unlocked() -> None:
    """Maildir maildrops open without the session lock: a descriptor of a
    file nobody locks stands in for the flocked one (the lab is Maildir)."""
    import pop3suite.server.storage.maildir as maildir_module

    def no_lock(directory: str, user: str) -> int:
        try:
            return os.open(os.path.join(directory, ".pop3.nolock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise StorageError(str(error)) from error

    maildir_module.lock_session = no_lock  # type: ignore[assignment]
