"""Drives :class:`pop3suite.proto.ServerSession` for one connection.

The read loop feeds the core and carries out the actions it returns; all
protocol decisions stay in the core, all policy (credentials, lock, TLS,
timeouts) in small objects this shell consults.  Foreign exceptions (OSError,
ssl, timeouts, storage errors) are translated here, once.

A session that ends any way other than QUIT in TRANSACTION -- EOF, reset,
TLS failure, idle timeout, server shutdown -- never reaches
:meth:`Maildrop.remove`, so it removes nothing (RFC 1939 §6).

No session waits for another: storage work that can take long (opening a
big mailbox, an UPDATE rewrite, a write-lock wait) runs in a worker thread,
never on the event loop.  A session cancelled while such work runs (server
stop) leaves the thread to finish and closes the maildrop -- releasing its
lock -- only after it, so a rewrite is never cut off by its own cleanup.

Operations (docs/operations.md): each session ends with one ``session end``
record (:mod:`pop3suite.server.eventlog`) and feeds the server's
:class:`~pop3suite.server.metrics.ServerMetrics` when there is one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pop3suite import __version__
from pop3suite.proto import (
    Authenticate,
    Close,
    MessageInfo,
    Retrieve,
    Send,
    ServerSession,
    SessionOptions,
    StartTLS,
    State,
    Update,
    responses,
)
from pop3suite.proto.errors import AuthFailed, LoginDelay, MailboxInUse, SystemTemporary
from pop3suite.proto.framing import BodyEncoder

from . import eventlog
from .accounts import Authenticator
from .config import Settings
from .connection import Connection
from .metrics import ServerMetrics
from .policy import LoginTracker
from .storage import Maildrop, MaildropLocked, MailStore, StorageError

log = logging.getLogger("pop3suite.server")

#: Worker threads for storage work (made on demand; they mostly wait on I/O
#: and locks, so more threads than cores is right).
STORAGE_THREADS = 32


def storage_executor() -> ThreadPoolExecutor:
    """The thread pool of one server's storage work."""
    return ThreadPoolExecutor(STORAGE_THREADS, thread_name_prefix="pop3suite-storage")


#: Called after every successful login: (account, client address, listener
#: name, TLS active).  The SMTP side uses it for POP-before-SMTP.
LoginHook = Callable[[str, str, str, bool], None]


@dataclass
class ServerContext:
    """What all sessions of one server share."""

    settings: Settings
    store: MailStore
    authenticator: Authenticator
    tls_context: ssl.SSLContext | None = None
    login_hooks: list[LoginHook] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic
    last_login: dict[str, float] = field(default_factory=dict)
    active_sessions: int = 0
    _timestamp_counter: int = 0
    #: Mailbox/polling policy and login log (None when both are off).
    logins: LoginTracker | None = None
    #: Prometheus families (None: ``serve`` without a metrics port).
    metrics: ServerMetrics | None = None
    #: Storage work running in worker threads; the server's stop waits for it.
    storage_work: set[asyncio.Future] = field(default_factory=set)
    #: Threads for storage work, apart from the loop's default executor
    #: (6 threads on 2 cores, shared with scrypt checks): a few mbox UPDATEs
    #: waiting on a write lock must not hold up every other login.
    storage_threads: ThreadPoolExecutor = field(default_factory=storage_executor)

    def __post_init__(self) -> None:
        if self.logins is None and (self.settings.policy or self.settings.policy_log):
            self.logins = LoginTracker(
                self.settings.policy,
                self.settings.policy_log,
                max_bytes=int(self.settings.policy_log_max_mb * 1024 * 1024),
            )
            for account, age in self.logins.recent_logins().items():  # survive a restart
                self.last_login[account] = self.clock() - age

    def apop_timestamp(self) -> str | None:
        """A fresh RFC 822 msg-id for the greeting, unique on every
        connection, or None when no account uses APOP."""
        if not self.authenticator.any_apop:
            return None
        self._timestamp_counter += 1
        return f"<{os.getpid()}.{self._timestamp_counter}.{time.time_ns()}.{secrets.token_hex(4)}@{_HOST}>"


_HOST = socket.gethostname().split(".")[0] or "localhost"


class Pop3Session:
    """One client connection, from greeting to close."""

    def __init__(self, ctx: ServerContext, conn: Connection, listener: str) -> None:
        self.ctx = ctx
        self.conn = conn
        self.listener = listener
        settings = ctx.settings
        self.apop_timestamp = ctx.apop_timestamp()
        login_delay, per_user = settings.login_delay or None, False
        if ctx.logins is not None:  # with a policy: its largest value and USER (RFC 2449 §6.5)
            login_delay, per_user = ctx.logins.announced(settings.login_delay)
        self.core = ServerSession(
            SessionOptions(
                implementation=f"pop3suite-reference {__version__}",
                tls_active=conn.tls_active,
                stls_available=ctx.tls_context is not None and not conn.tls_active,
                cleartext_login=settings.cleartext_login,
                apop_timestamp=self.apop_timestamp,
                max_bad_commands=settings.max_bad_commands,
                login_delay=login_delay,
                login_delay_per_user=per_user,
                expire=settings.expire,
            )
        )
        self.maildrop: Maildrop | None = None
        # What the session-end record reports.
        self.started = time.monotonic()
        self.commands = 0
        self.octets_in = 0
        self.retrieved = 0
        self.deleted = 0
        self.login_method = ""
        self.user_given: str | None = None
        self.login_failures = 0
        self.close_reason = "reset"
        self.update_ok: bool | None = None
        #: Storage work in a worker thread; the maildrop is closed after it.
        self._storage: asyncio.Future | None = None

    async def run(self) -> None:
        self.ctx.active_sessions += 1
        metrics = self.ctx.metrics
        tls_label = "yes" if self.conn.tls_active else "no"
        if metrics is not None:
            metrics.child(metrics.sessions_active, self.listener, tls_label).inc()
        try:
            self.conn.write(self.core.greeting())
            await self._loop()
        except TimeoutError:
            self.close_reason = "login-timeout" if self.core.state is State.AUTHORIZATION else "idle-timeout"
            log.debug("%s: %s, closing without UPDATE", self.conn.peer[0], self.close_reason)
        except ssl.SSLError as error:
            self.close_reason = "tls-error"
            log.debug("%s: TLS ended: %s", self.conn.peer[0], error)
        except ConnectionError as error:
            self.close_reason = "reset"
            log.debug("%s: connection ended: %s", self.conn.peer[0], error)
        except OSError as error:
            self.close_reason = "error"
            log.debug("%s: connection ended: %s", self.conn.peer[0], error)
        except asyncio.CancelledError:
            self.close_reason = "shutdown"
            raise
        finally:
            self.ctx.active_sessions -= 1
            self._release_maildrop()
            self.conn.close()
            if metrics is not None:
                metrics.child(metrics.sessions_active, self.listener, tls_label).dec()
            self._record_end()

    def _release_maildrop(self) -> None:
        """Close the maildrop now, or when storage work still running in a
        worker thread (cancelled session) has finished with it."""
        maildrop, self.maildrop = self.maildrop, None
        storage = self._storage
        if storage is not None and not storage.done():
            storage.add_done_callback(lambda _: maildrop.close() if maildrop is not None else None)
        elif maildrop is not None:
            maildrop.close()

    @property
    def outcome(self) -> str:
        """``committed``, ``update-failed``, ``abandoned`` (logged in, no
        QUIT), ``login-failed`` or ``no-login``."""
        if self.core.username is not None:
            if self.update_ok is None:
                return "abandoned"
            return "committed" if self.update_ok else "update-failed"
        return "login-failed" if self.login_failures else "no-login"

    def _tls_fields(self) -> tuple[str | None, str | None]:
        ssl_object = self.conn.tls_object
        if ssl_object is None:
            return None, None
        cipher = ssl_object.cipher()
        return ssl_object.version(), cipher[0] if cipher else None

    def _record_end(self) -> None:
        """The session-end record and the session counters."""
        outcome = self.outcome
        metrics = self.ctx.metrics
        tls_version, cipher = self._tls_fields()
        if metrics is not None:
            tls_label = "yes" if tls_version else "no"
            metrics.child(metrics.sessions, self.listener, tls_label, outcome).inc()
            metrics.child(metrics.octets_sent, self.listener).inc(self.conn.octets_out)
            metrics.child(metrics.octets_received, self.listener).inc(self.octets_in)
            if self.close_reason in ("idle-timeout", "login-timeout"):
                metrics.idle_timeouts.inc()
        user = self.core.username or self.user_given
        fields = {
            "listener": self.listener,
            "address": self.conn.peer[0],
            "tls": tls_version,
            "cipher": cipher,
            "user": eventlog.client_text(user) if user is not None else None,
            "method": self.login_method or None,
            "outcome": outcome,
            "close": self.close_reason,
            "commands": self.commands,
            "octets_in": self.octets_in,
            "octets_out": self.conn.octets_out,
            "retrieved": self.retrieved,
            "deleted": self.deleted,
            "duration": round(time.monotonic() - self.started, 3),
        }
        eventlog.emit(log, logging.INFO, "session_end", fields)

    def _login_failed(self, request: Authenticate, reason: str) -> None:
        """One record per refused login, in the form docs/fail2ban/ matches."""
        self.login_failures += 1
        if self.ctx.metrics is not None:
            self.ctx.metrics.child(self.ctx.metrics.logins, request.mechanism, reason).inc()
            if reason == "login-delay":
                self.ctx.metrics.login_delay_refusals.inc()
        fields = {
            "address": self.conn.peer[0],
            "user": eventlog.client_text(request.username),
            "method": request.mechanism,
            "reason": reason,
            "listener": self.listener,
        }
        eventlog.emit(log, logging.INFO, "login_failed", fields)

    async def _off_loop(
        self, function: Callable, *args: object, abandoned: Callable[[object], None] | None = None
    ) -> object:
        """Run storage work in a worker thread; a cancelled session does not
        cut it short (see :meth:`_release_maildrop`).  ``abandoned`` gets the
        result the cancelled session will never see (a maildrop opened for
        it, whose lock must still be released)."""
        loop = asyncio.get_running_loop()
        storage = self._storage = loop.run_in_executor(self.ctx.storage_threads, function, *args)
        self.ctx.storage_work.add(storage)
        storage.add_done_callback(self.ctx.storage_work.discard)
        try:
            return await asyncio.shield(storage)
        except asyncio.CancelledError:
            if abandoned is not None:
                storage.add_done_callback(lambda done: _hand_over(done, abandoned))
            raise
        finally:
            if storage.done():
                self._storage = None

    async def _drain(self) -> None:
        async with asyncio.timeout(self.ctx.settings.idle_timeout):
            await self.conn.drain()

    def _read_timeout(self, deadline: float) -> float:
        """The idle timer, cut short by the absolute pre-login deadline while
        no one has logged in: bytes trickled without a login never extend it
        (slowloris; security-probes.md D1)."""
        timeout = self.ctx.settings.idle_timeout
        if self.core.state is State.AUTHORIZATION:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError("login timeout")
            timeout = min(timeout, remaining)
        return timeout

    async def _loop(self) -> None:
        core, conn = self.core, self.conn
        deadline = asyncio.get_running_loop().time() + self.ctx.settings.login_timeout
        metrics = self.ctx.metrics
        clock = time.perf_counter
        started = 0.0
        action = None
        while True:
            if action is not None:  # the previous command is answered
                self.commands += 1
                if metrics is not None:
                    metrics.commands.observe(core.last_command, clock() - started)
            if metrics is not None:
                started = clock()
            action = core.next_action()
            if action is None:
                if core.state is State.CLOSED:
                    return
                await self._drain()
                async with asyncio.timeout(self._read_timeout(deadline)):
                    data = await conn.read()
                if not data:
                    self.close_reason = "disconnect"
                    return  # EOF before QUIT: nothing is removed
                self.octets_in += len(data)
                core.receive_data(data)
            elif isinstance(action, Send):
                conn.write(action.data)
            elif isinstance(action, Retrieve):
                await self._retrieve(action)
            elif isinstance(action, Authenticate):
                conn.write(await self._login(action))
            elif isinstance(action, StartTLS):
                await self._start_tls(action)
            elif isinstance(action, Update):
                self.close_reason = "quit"
                conn.write(await self._update(action))
                self._count_last(metrics, started)
                await self._drain()
                return
            elif isinstance(action, Close):
                self.close_reason = "quit" if core.last_command == "QUIT" else "too-many-errors"
                conn.write(action.reply)
                self._count_last(metrics, started)
                await self._drain()
                return

    def _count_last(self, metrics: ServerMetrics | None, started: float) -> None:
        """Count the command that ends the session (the loop does not come back)."""
        self.commands += 1
        if metrics is not None:
            metrics.commands.observe(self.core.last_command, time.perf_counter() - started)

    async def _login(self, request: Authenticate) -> bytes:
        loop = asyncio.get_running_loop()
        authenticator = self.ctx.authenticator
        self.login_method = request.mechanism
        self.user_given = request.username
        if authenticator.is_cheap(request):  # {PLAIN}/APOP: microseconds, no thread hop
            account = authenticator.check(request, self.apop_timestamp)
        else:
            account = await loop.run_in_executor(None, authenticator.check, request, self.apop_timestamp)
        if account is None:
            self._login_failed(request, "bad-credentials")
            await asyncio.sleep(self.ctx.settings.login_failure_delay)
            return self.core.reject_login(AuthFailed())
        delay = self.ctx.settings.login_delay
        now = self.ctx.clock()
        if delay and now - self.ctx.last_login.get(account, -delay) < delay:
            # RFC 2449 §8.1.1: only after valid credentials, never on USER.
            if self.ctx.logins is not None:
                self.ctx.logins.record(account, self._connection_type, True, delay, listener=self.listener)
            self._login_failed(request, "login-delay")
            return self.core.reject_login(LoginDelay())
        opening = time.perf_counter()
        try:
            # Scanning a 10,000-message Maildir takes ~150 ms, an mbox of
            # 140 MB more: do it off the event loop so other sessions are not
            # frozen meanwhile (and an mbox write-lock wait sleeps a worker
            # thread, not the loop).  A small mailbox the store has indexed
            # opens in microseconds.
            cheap = getattr(self.ctx.store, "cheap_to_open", None)
            if cheap is not None and cheap(account):
                self.maildrop = self.ctx.store.open_maildrop(account)
            else:
                self.maildrop = await self._off_loop(  # type: ignore[assignment]
                    self.ctx.store.open_maildrop,
                    account,
                    abandoned=lambda drop: drop.close(),  # type: ignore[attr-defined]
                )
        except MaildropLocked:
            self._login_failed(request, "in-use")
            return self.core.reject_login(MailboxInUse())
        except StorageError as error:
            log.warning("cannot open maildrop of %s: %s", account, error)
            self._login_failed(request, "storage-error")
            return self.core.reject_login(SystemTemporary())
        if self.ctx.metrics is not None:
            self.ctx.metrics.mailbox_open.observe(time.perf_counter() - opening)
        if self._policy_refuses(account, now):
            self.maildrop.close()  # nothing removed, the lock released
            self.maildrop = None
            self._login_failed(request, "login-delay")
            return self.core.reject_login(LoginDelay())
        if self.ctx.metrics is not None:
            self.ctx.metrics.child(self.ctx.metrics.logins, request.mechanism, "ok").inc()
        self.ctx.last_login[account] = now
        listing = getattr(self.maildrop, "infos", None)  # Maildir: made once per message
        if listing is None:
            listing = [MessageInfo(m.size, m.uid) for m in self.maildrop.messages]
        reply = self.core.accept_login(account, listing)
        for hook in self.ctx.login_hooks:
            hook(account, self.conn.peer[0], self.listener, self.conn.tls_active)
        return reply

    @property
    def _connection_type(self) -> str:
        """``tls`` for implicit TLS and after STLS alike (docs/policy.md)."""
        return "tls" if self.conn.tls_active else "plain"

    def _policy_refuses(self, account: str, now: float) -> bool:
        """Record this login; True when the policy's per-account LOGIN-DELAY
        (mailbox size and connection type, pop3suite.server.policy) has not
        passed since the account's last login."""
        logins = self.ctx.logins
        if logins is None or self.maildrop is None:
            return False
        size = sum(m.size for m in self.maildrop.messages)
        connection = self._connection_type
        required = max(self.ctx.settings.login_delay, logins.login_delay(account, size, connection))
        last = self.ctx.last_login.get(account)
        refused = last is not None and now - last < required
        messages = len(self.maildrop.messages)
        logins.record(account, connection, refused, required, size, messages, self.listener)
        if logins.policy is not None and not refused:
            self.core.options.login_delay = required  # this user's value in TRANSACTION CAPA
        return refused

    async def _retrieve(self, action: Retrieve) -> None:
        assert self.maildrop is not None
        message = self.maildrop.message(action.number)
        if action.top_lines is None:
            self.retrieved += 1
            if self.ctx.metrics is not None:
                self.ctx.metrics.messages_retrieved.inc()
        try:
            chunks = self.maildrop.read_chunks(action.number)
            first = next(chunks, b"")
        except StorageError as error:
            log.warning("cannot read message %d: %s", action.number, error)
            self.conn.write(responses.error_line(SystemTemporary()))
            return
        self.conn.write(action.status_line)
        encoder = BodyEncoder(action.top_lines, crlf_clean=message.crlf_clean)
        chunk = first
        while chunk:
            self.conn.write(encoder.feed(chunk))
            if encoder.done:
                break
            await self._drain()
            chunk = next(chunks, b"")
        chunks.close()
        self.conn.write(encoder.finish())

    async def _start_tls(self, action: StartTLS) -> None:
        assert self.ctx.tls_context is not None
        self.conn.write(action.reply)
        await self._drain()
        # Plaintext sent after "STLS\r\n" must never be read as if it had
        # come inside TLS (CVE-2011-0411): drop what the core and the
        # connection hold.
        self.core.start_tls_discard()
        self.conn.discard_buffered()
        await self.conn.start_tls(self.ctx.tls_context, self.ctx.settings.idle_timeout)
        self.core.tls_started()

    async def _update(self, action: Update) -> bytes:
        """Remove the DELE'd messages in a worker thread: rewriting a big
        mbox takes hundreds of ms, and other sessions go on meanwhile."""
        assert self.maildrop is not None
        started = time.perf_counter()
        try:
            if action.numbers:
                await self._off_loop(self.maildrop.remove, action.numbers)
        except StorageError as error:
            log.warning("UPDATE for %s incomplete: %s", self.core.username, error)
            self.update_ok = False
            return self.core.update_finished(SystemTemporary())
        self.update_ok = True
        self.deleted = len(action.numbers)
        metrics = self.ctx.metrics
        if metrics is not None:
            metrics.update.observe(time.perf_counter() - started)
            metrics.messages_deleted.inc(self.deleted)
        return self.core.update_finished()


def _hand_over(done: asyncio.Future, receiver: Callable[[object], None]) -> None:
    """Give a finished worker's result to ``receiver`` (nothing if it failed)."""
    if not done.cancelled() and done.exception() is None:
        receiver(done.result())
