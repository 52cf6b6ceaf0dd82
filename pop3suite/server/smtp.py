"""The SMTP side of the reference server: aiosmtpd with the provider's policy.

Theory of operation
-------------------
aiosmtpd speaks SMTP; every decision is made in :class:`SmtpHandler`'s hooks
(``handle_RCPT``, ``handle_DATA``, ``handle_EHLO``) and AUTH mechanisms, which
consult small policy objects: :class:`~pop3suite.server.relay.RelayWindow`
(POP-before-SMTP), :class:`~pop3suite.server.quota.QuotaPolicy` and the
storage.  Three listeners share one handler class, each with its role:

==============  ==============================================================
``smtp``        port-25 role: inbound mail for the hosted domains from anyone;
                relaying elsewhere only inside the POP-before-SMTP window of
                the client's address, else ``550 Relaying denied.``.  STARTTLS
                offered when a certificate is configured; no AUTH.
``submission``  587 role: STARTTLS first (``530`` before it), then SMTP AUTH
                to relay (``530 5.7.0`` without).  Ignores the window.
``smtps``       465 role: implicit TLS (RFC 8314), SMTP AUTH to relay.
==============  ==============================================================

Mail to an existing account at a hosted domain is accepted on every listener
(after STARTTLS on ``submission``) and delivered with
:meth:`MailStore.deliver`, the code path ``pop3suite deliver`` uses, so both
produce the same mailbox file.  No trace header is added for that reason.
Accepted relayed mail goes to the spool directory and nowhere else.

A recipient is *local* only if it is ``plain-local-part@hosted-domain``; every
other form -- percent hack, bang path, quoted local part, IP literal, no domain
-- is treated as relaying, so none of the classic open-relay tricks (nmap
``smtp-open-relay``) gets through without the window.  Source routes are
dropped by aiosmtpd's parser (RFC 5321 §3.6.1 lets a server ignore them), so
``<@hosted:r@ext>`` is just ``r@ext``.

SMTP smuggling: aiosmtpd (1.4.6) ends DATA only at ``CRLF.CRLF`` -- it reads
lines with ``readuntil(b"\\r\\n")`` -- so ``\\n.\\n``, ``\\r.\\r`` and friends never
end a message early.  The bytes that followed them would still be stored as
body text, and a downstream MTA that does honour ``\\n.\\n`` would split them
into a second message; so, like Postfix's ``smtpd_forbid_bare_newline``,
:meth:`SmtpHandler.handle_DATA` rejects bodies with a bare CR or LF (RFC 5321
§2.3.8) or a NUL octet.  STARTTLS injection (CVE-2011-0411) is handled by
aiosmtpd: it clears its read buffer when the TLS handshake completes.

Quotas are checked before the final DATA reply, for every local recipient,
under a per-mailbox lock, and nothing is delivered to anyone if one of them is
over quota (SMTP has one DATA reply for all recipients).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import json
import logging
import os
import re
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from pop3suite.proto.auth import sasl_plain_decode, sasl_plain_split
from pop3suite.proto.errors import MalformedResponse

from . import eventlog, passwords
from .config import AccountSettings, Settings, bind_port
from .metrics import ServerMetrics
from .quota import QuotaPolicy
from .relay import RelayWindow, normalize_address
from .storage import MailStore, StorageError

log = logging.getLogger("pop3suite.smtp")

# aiosmtpd logs every command at INFO on "mail.log"; keep `serve` readable.
if logging.getLogger("mail.log").level == logging.NOTSET:
    logging.getLogger("mail.log").setLevel(logging.WARNING)

ROLES = ("smtp", "submission", "smtps")

#: The provider's text, exactly (provider-pop-service.md §6).
RELAY_DENIED = "550 Relaying denied."
AUTH_REQUIRED = "530 5.7.0 Authentication required"
BARE_NEWLINE = "550 5.5.2 Message rejected: bare CR or LF in DATA (RFC 5321 section 2.3.8)"
NUL_OCTET = "550 5.6.0 Message rejected: NUL octet in DATA (RFC 2045 section 2.8)"
TEMP_FAILURE = "451 4.3.0 Local error in processing; try again later"
#: The mail root is full (RFC 5321 §4.2.2 452; RFC 3463 4.3.1 "Mail system full").
NO_STORAGE = "452 4.3.1 Insufficient system storage"

#: RFC 5321 §4.5.3.2.7: a server should wait at least 5 minutes for a command.
COMMAND_TIMEOUT_SECONDS = 300
#: Largest message accepted (advertised with SIZE, RFC 1870).
MAX_MESSAGE_SIZE = 32 * 2**20

_HOST = socket.gethostname() or "localhost"
# A local part that names a mailbox and nothing else: no %, !, @, quotes or
# routes (every relay trick needs one of them).  Same alphabet as account names.
_LOCAL_ADDRESS = re.compile(r"([A-Za-z0-9_][A-Za-z0-9._+-]{0,63})@([A-Za-z0-9.-]+)")
_BARE_CR_OR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def local_part(address: str, domains: tuple[str, ...]) -> str | None:
    """The local part if ``address`` is ``plain-local@hosted-domain``, else None
    (the address is somewhere else, or a relay trick: relaying rules apply)."""
    match = _LOCAL_ADDRESS.fullmatch(address)
    if match is None or match.group(2).lower().rstrip(".") not in domains:
        return None
    return match.group(1)


def peer_address(session: Session) -> str:
    """The client's IP address, canonical (for logs and the relay window)."""
    peer = session.peer
    return normalize_address(peer[0] if isinstance(peer, tuple) else str(peer))


def check_body(content: bytes) -> str | None:
    """The rejection reply for a DATA body with bare CR/LF or NUL, else None."""
    if _BARE_CR_OR_LF.search(content):
        return BARE_NEWLINE
    if b"\x00" in content:
        return NUL_OCTET
    return None


class RelaySpool:
    """The relay sink: accepted relayed mail is written here, never sent.

    Each message is ``<id>.eml`` (the bytes as received) plus ``<id>.json``
    (envelope and client), each written to a temporary name and renamed, the
    ``.eml`` first: a ``.json`` means the message is complete.
    """

    def __init__(self, directory: Path, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.fsync = fsync

    def _write(self, final: Path, data: bytes) -> None:
        tmp = final.with_name(f".{final.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)

    def store(self, mail_from: str, recipients: list[str], data: bytes, meta: dict[str, Any]) -> str:
        """Spool one message; return its id.

        Raises:
            StorageError: the spool could not be written.
        """
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        spool_id = f"{int(time.time())}.{os.getpid()}.{secrets.token_hex(6)}"
        envelope = {"mail_from": mail_from, "rcpt_to": recipients, "size": len(data), **meta}
        try:
            self._write(self.directory / f"{spool_id}.eml", data)
            self._write(self.directory / f"{spool_id}.json", json.dumps(envelope, indent=1).encode())
        except OSError as error:
            raise StorageError(f"cannot spool relayed mail: {error.strerror}") from error
        return spool_id

    def ids(self) -> list[str]:
        """Ids of the complete messages in the spool."""
        if not self.directory.is_dir():
            return []
        return sorted(p.stem for p in self.directory.glob("*.json"))


class SmtpHandler:
    """aiosmtpd handler for one listener role (``smtp``, ``submission``, ``smtps``)."""

    def __init__(self, service: SmtpService, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown SMTP role {role!r}")
        self.service = service
        self.role = role

    # ----------------------------------------------------------- greeting

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # the 5-argument hook must set it itself
        if self.role == "smtp":
            # Port 25 relays by POP-before-SMTP only; AUTH lives on 587/465.
            responses = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        return responses

    # --------------------------------------------------------------- AUTH

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        """RFC 4616 PLAIN, initial response or after an empty challenge, read
        by the parser the POP3 AUTH PLAIN uses (:mod:`pop3suite.proto.auth`).
        A malformed message (not base64, not three parts, an empty user or
        password, an identity that is not UTF-8) is a 501 (RFC 4954 §4), not a
        failed login."""
        try:
            if len(args) == 1:
                blob = await server.challenge_auth("")  # aiosmtpd has decoded the base64
                if blob is MISSING:
                    return AuthResult(success=False, handled=True)
                assert isinstance(blob, bytes)
                authzid, login, password = sasl_plain_split(blob)
            else:
                authzid, login, password = sasl_plain_decode(args[1])
        except MalformedResponse as error:
            await server.push(f"501 5.5.2 {error}")
            return AuthResult(success=False, handled=True)
        if authzid and authzid != login:
            login = ""  # no proxy logins: fail like a wrong password
        return await self._verify(login.encode(), password)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        """The common LOGIN mechanism (user name, then password)."""
        if len(args) == 1:
            login = await server.challenge_auth(SMTP.AuthLoginUsernameChallenge)
            if login is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                login = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Cannot decode base64")
                return AuthResult(success=False, handled=True)
        password = await server.challenge_auth(SMTP.AuthLoginPasswordChallenge)
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        assert isinstance(login, bytes) and isinstance(password, bytes)
        return await self._verify(login, password)

    async def _verify(self, login: bytes, password: bytes) -> AuthResult:
        loop = asyncio.get_running_loop()
        account = await loop.run_in_executor(None, self.service.check_password, login, password)
        if account is None:
            await asyncio.sleep(self.service.settings.login_failure_delay)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=account)

    # --------------------------------------------------------------- RCPT

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        service = self.service
        user = service.local_account(address)
        if user is not None:
            if user == "":
                return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
            refusal = await service.quota_refusal(user, address, _declared_size(envelope))
            if refusal is not None:
                return refusal
        elif self.role == "smtp":
            peer = peer_address(session)
            if not service.relay.allowed(peer):
                service.relay_decision(peer, self.role, address, "denied")
                return RELAY_DENIED
            service.relay_decision(peer, self.role, address, "allowed-pop-before-smtp")
        elif not session.authenticated:
            service.relay_decision(peer_address(session), self.role, address, "auth-required")
            return AUTH_REQUIRED
        else:
            service.relay_decision(peer_address(session), self.role, address, "allowed-authenticated")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    # --------------------------------------------------------------- DATA

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        rejection = check_body(content)
        if rejection is not None:
            log.info("DATA rejected from %s: %s", session.peer, rejection)
            return rejection
        meta = {
            "client": peer_address(session),
            "listener": self.role,
            "helo": session.host_name,
            "auth": session.auth_data if session.authenticated else None,
        }
        return await self.service.accept(envelope.mail_from or "", list(envelope.rcpt_tos), content, meta)

    async def handle_exception(self, error: Exception) -> str:
        # Python exception text never reaches the wire (STYLE.md, principle 3).
        log.error("SMTP session error", exc_info=error)
        return TEMP_FAILURE


def _declared_size(envelope: Envelope) -> int:
    """The RFC 1870 SIZE= the client declared in MAIL FROM (0 if none)."""
    for option in envelope.mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


@dataclass
class _Listener:
    role: str
    server: asyncio.Server


class _Session(Session):
    """aiosmtpd's Session without the deprecation warning aiosmtpd itself
    triggers on every successful AUTH (it sets ``login_data``)."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _TrackedSMTP(SMTP):
    """aiosmtpd's protocol, remembered by the service so stop() can end it."""

    def _create_session(self) -> Session:
        return _Session(self.loop)

    def __init__(self, service: SmtpService, handler: SmtpHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._service = service
        self._raw_transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._raw_transport is None:  # a second call comes after STARTTLS
            self._raw_transport = transport
            self._service.connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._service.connections.discard(self)
        super().connection_lost(error)

    def abort(self) -> None:
        if self._raw_transport is not None:
            self._raw_transport.abort()


class SmtpService:
    """The SMTP listeners of one reference server, and what they share.

    Args:
        settings: the server settings (ports, domains, accounts, spool).
        store: the mailbox storage (same object as the POP3 side).
        relay: the POP-before-SMTP window the POP3 login hook fills.
        tls_context: server TLS context (needed for submission and smtps).
    """

    def __init__(
        self,
        settings: Settings,
        store: MailStore,
        relay: RelayWindow,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.relay = relay
        self.tls_context = tls_context
        self.quota = QuotaPolicy(store, settings.accounts, settings.quota_tempfail)
        self.spool = RelaySpool(settings.spool_dir, fsync=settings.fsync)
        self.connections: set[_TrackedSMTP] = set()
        self._listeners: list[_Listener] = []
        self._locks: dict[str, asyncio.Lock] = {}
        self._accounts_folded = {name.lower(): name for name in settings.accounts}
        #: The server's Prometheus families (None without a metrics endpoint).
        self.metrics: ServerMetrics | None = None

    def relay_decision(self, client: str, listener: str, recipient: str, decision: str) -> None:
        """One record (and count) per relay decision on a non-local RCPT."""
        if self.metrics is not None:
            self.metrics.relay_decisions.labels(decision).inc()
        fields = {
            "address": client,
            "listener": listener,
            "recipient": eventlog.client_text(recipient),
            "decision": decision,
        }
        eventlog.emit(log, logging.INFO, "relay_decision", fields)

    # ---------------------------------------------------------- lifecycle

    async def start(self) -> list[tuple[str, str, int]]:
        """Bind every configured SMTP listener; returns (role, host, port)."""
        plan = [
            ("smtp", self.settings.smtp_port),
            ("submission", self.settings.submission_port),
            ("smtps", self.settings.smtps_port),
        ]
        loop = asyncio.get_running_loop()
        bound = []
        for role, port in plan:
            if not port:
                continue
            implicit = role == "smtps"
            server = await loop.create_server(
                lambda role=role: self._protocol(role),
                self.settings.listen,
                bind_port(port),
                ssl=self.tls_context if implicit else None,
                ssl_handshake_timeout=self.settings.idle_timeout if implicit else None,
                reuse_address=True,
                backlog=1024,
            )
            self._listeners.append(_Listener(role, server))
            host, actual = server.sockets[0].getsockname()[:2]
            bound.append((role, host, actual))
        return bound

    def _protocol(self, role: str) -> _TrackedSMTP:
        kwargs: dict[str, Any] = {
            "hostname": _HOST,
            "ident": "pop3suite-reference ESMTP",
            "data_size_limit": MAX_MESSAGE_SIZE,
            "timeout": COMMAND_TIMEOUT_SECONDS,
            "loop": asyncio.get_running_loop(),
        }
        if role == "smtp":
            kwargs.update(tls_context=self.tls_context, auth_exclude_mechanism=["PLAIN", "LOGIN"])
        elif role == "submission":
            kwargs.update(tls_context=self.tls_context, require_starttls=True, auth_require_tls=True)
        else:
            # The transport is TLS from the first byte; aiosmtpd only knows
            # about TLS it started itself (STARTTLS), so don't ask it to check.
            kwargs.update(tls_context=None, auth_require_tls=False)
        return _TrackedSMTP(self, SmtpHandler(self, role), **kwargs)

    async def stop(self) -> None:
        """Stop listening and drop every SMTP session (no half delivery:
        a message is stored only by a completed DATA)."""
        for listener in self._listeners:
            listener.server.close()
        for conn in list(self.connections):
            conn.abort()
        for listener in self._listeners:
            await listener.server.wait_closed()
        self._listeners.clear()

    # ------------------------------------------------------------- policy

    def local_account(self, address: str) -> str | None:
        """For ``plain-local@hosted-domain``: the account name, or "" if
        there is no such account.  None for any other address (relaying)."""
        local = local_part(address, self.settings.domains)
        if local is None:
            return None
        return self._accounts_folded.get(local.lower(), "")

    def check_password(self, login: bytes, password: bytes) -> str | None:
        """The account name for good SMTP AUTH credentials, else None.

        ``alice`` and ``alice@<hosted domain>`` both name the account.  An
        unknown user costs one hash verification too (no user enumeration by
        timing).  Blocking (scrypt): call it in a worker thread.
        """
        try:
            name = login.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        local = local_part(name, self.settings.domains)
        account: AccountSettings | None = self.settings.accounts.get(local if local is not None else name)
        if account is None:
            passwords.verify_password(
                passwords.dummy_hash(a.password for a in self.settings.accounts.values()), password
            )
            return None
        return account.name if passwords.verify_password(account.password, password) else None

    async def quota_refusal(self, user: str, address: str, incoming: int) -> str | None:
        """At RCPT: a refusal if ``user``'s mailbox is already full (or would
        be by the declared SIZE), else None."""
        if self.quota.limit(user) is None:
            return None
        loop = asyncio.get_running_loop()
        exceeded = await loop.run_in_executor(None, self.quota.check, user, max(incoming, 1))
        return None if exceeded is None else exceeded.reply(address, self.quota.tempfail)

    def _lock(self, user: str) -> asyncio.Lock:
        return self._locks.setdefault(user, asyncio.Lock())

    async def accept(
        self, mail_from: str, recipients: list[str], content: bytes, meta: dict[str, Any]
    ) -> str:
        """Deliver locally and/or spool one message; the final DATA reply.

        Every local recipient's quota is checked first, under its mailbox
        lock, and nothing is stored unless all fit.
        """
        local: dict[str, str] = {}  # account -> first address naming it
        remote: list[str] = []
        for address in recipients:
            user = self.local_account(address)
            if user:
                local.setdefault(user, address)
            else:
                remote.append(address)
        loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as stack:
            for user in sorted(local):  # one order for all: no deadlock
                await stack.enter_async_context(self._lock(user))
            for user, address in local.items():
                exceeded = await loop.run_in_executor(None, self.quota.check, user, len(content))
                if exceeded is not None:
                    log.info(
                        "over quota: %s (%d + %d > %d)", user, exceeded.usage, len(content), exceeded.limit
                    )
                    return exceeded.reply(address, self.quota.tempfail)
            try:
                ids = []
                for user in local:
                    ids.append(await loop.run_in_executor(None, self.store.deliver, user, content))
                if remote:
                    spool_id = await loop.run_in_executor(
                        None, self.spool.store, mail_from, remote, content, meta
                    )
                    ids.append(spool_id)
                    log.info("relayed mail from %s to %s spooled as %s", meta["client"], remote, spool_id)
            except StorageError as error:
                log.warning("delivery failed: %s", error)
                cause = error.__cause__
                if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
                    return NO_STORAGE  # a full disk says so (RFC 3463 4.3.1), never 250-then-lost
                return TEMP_FAILURE
        return f"250 2.0.0 OK queued as {' '.join(ids)}"
