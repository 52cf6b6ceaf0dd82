"""Helpers shared by the conformance cases.

Each helper here was written more than once across the RFC folders; this
module holds the one copy.  They are plain functions over the ``pop``
fixture (``pop(mode=None, login=True, ...)`` from ``conftest.py``), a
:class:`~pop3suite.client.Pop3Client` or a :class:`~pop3suite.target.model.Target`.
They judge nothing: the cases keep their own ``expect`` calls, so a failure
always points at the case that made it.  A helper that cannot go on (no
APOP account, an empty maildrop, scratch mail that never arrived) makes the
case UNIMPLEMENTED, never FAILED.

Connection modes: ``pop(login=False)`` with no mode connects in the *home
mode* (``conftest.home_mode``: plain if cleartext USER is offered before
TLS, else STLS), which is where a case logs in when it does not care how.
:func:`capa_mode` is the other fixed point: the connection the
``capabilities`` fixture was read on (plain port, else implicit TLS).
"""

from __future__ import annotations

import hashlib
import secrets
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pop3suite.client import ConnectionClosed, ErrResponse, Pop3Client, apop_timestamp
from pop3suite.proto import MalformedResponse, Response, apop_digest, capability_arguments
from pop3suite.target.model import Credentials, Target

from .case import expect, unimplemented
from .mailbox import MailboxIndex

#: The ``pop`` fixture: ``pop(mode=None, login=True, user=None, ...)``.
Connect = Callable[..., Pop3Client]

Parsed = TypeVar("Parsed")

#: What a real close by the server looks like on our side: EOF
#: (:class:`ConnectionClosed`), a reset, an abort or a broken pipe, or a TLS
#: session that ended (with or without close_notify).  Nothing else is a
#: close: silence is a TimeoutError, a reply that is not a status line a
#: MalformedResponse, and our own errors stay ours (graded ERROR).
SERVER_CLOSED = (ConnectionClosed, ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError)


# ------------------------------------------------------------------ modes and names


def capa_mode(target: Target) -> str:
    """The connection the ``capabilities`` fixture and the maildrop survey
    use: the plain port, else implicit TLS.

    Exists for cases whose expectations come from ``capabilities`` as read
    there, or that only look at the greeting (APOP timestamps); cases that
    log in use the home mode instead (``pop()`` without a mode).
    """
    return "plain" if target.pop3 else "implicit"


def wrong_password() -> str:
    """A password no account has (random, so no server can cache a verdict).

    Exists because several cases provoke a credential failure on purpose.
    """
    return "wrong-" + secrets.token_hex(4)


def unknown_user() -> str:
    """A user name no server knows (random, 18 characters).

    Exists because user-enumeration and response-code cases compare replies
    for an unknown user with replies for a known one.
    """
    return "pop3suite-" + secrets.token_hex(4)


# ------------------------------------------------------------------ sessions and the lock


def login_when_unlocked(pop: Connect, target: Target, wait: float = 10.0) -> Pop3Client:
    """Log in as ``target.user`` in the home mode, retrying while the server
    still holds the lock of a session that has just ended.

    Exists because a server may release the maildrop lock a moment after
    the QUIT reply or the close (RFC 1939 §6 says nothing on timing), and
    every case that checks the maildrop after ending a session needs a new
    one.  Raises ``ErrResponse`` if PASS is still refused after ``wait`` s.
    """
    deadline = time.monotonic() + wait
    while True:
        client = pop(login=False)
        client.user(target.user.user)
        response = client.pass_(target.user.password, check=False)
        if response.ok:
            return client
        client.close()
        if time.monotonic() > deadline:
            raise ErrResponse(response, "PASS")
        time.sleep(0.25)


@dataclass
class BusyLogin:
    """A USER/PASS attempt made while another session holds the maildrop.

    Attributes:
        holder: the logged-in session that holds the maildrop.
        client: the second session (in AUTHORIZATION unless ``reply`` is +OK).
        user: the reply to USER.
        reply: the reply to PASS, or the USER reply if USER was refused.
    """

    holder: Pop3Client
    client: Pop3Client
    user: Response
    reply: Response


def login_while_busy(pop: Connect, target: Target, password: str) -> BusyLogin:
    """Hold the maildrop in one session (home mode) and send USER/PASS with
    ``password`` for the same user in a second one.

    Exists for the ``[IN-USE]`` cases (RFC 2449 §8.1.2, RFC 1939 §4): the
    code may only follow correct credentials, so they all need a second
    login to a busy maildrop, with a wrong or with the right password.
    """
    holder = pop()
    client = pop(login=False)
    user = client.command(f"USER {target.user.user}", check=False)
    reply = client.pass_(password, check=False) if user.ok else user
    return BusyLogin(holder, client, user, reply)


def bytes_until_close(client: Pop3Client, timeout: float = 10.0) -> bytes | None:
    """Everything the server sends until it closes the connection, or None
    if it is still open after ``timeout`` seconds.

    Exists because several rules are about the close itself: after QUIT
    (RFC 1939 §6), on the idle timer (§3), before a new login may take the
    lock.  A reset or the end of the TLS session counts as closed.
    ``timeout`` is a silence limit: a server still sending is waited for.
    """
    received, closed = client.read_until_close_or_idle(timeout)
    return received if closed else None


def quit_and_wait(client: Pop3Client, timeout: float = 10.0) -> None:
    """QUIT, wait until the server closes (so its maildrop lock is gone),
    close our end.  The QUIT reply is not judged.

    Exists for cases that log in again right after a session, with a
    different method or account, and must not race the lock release.
    """
    client.command("QUIT", check=False)
    bytes_until_close(client, timeout)
    client.close()


def cleartext_to_pop3s(target: Target, timeout: float = 10.0) -> Pop3Client:
    """A TCP connection to the implicit-TLS port without TLS, nothing read
    yet; UNIMPLEMENTED without that port.

    Exists for the probes of what the POP3S port does with cleartext: a
    greeting in clear, plaintext POP3, half a ClientHello that stalls.
    """
    if target.pop3s is None:
        unimplemented("no implicit-TLS endpoint (give --pop3s URL; pytest: --pop3-pop3s)")
    client = Pop3Client(target.pop3s.host, target.pop3s.port, timeout=timeout)
    client.connect_without_greeting()
    return client


def reply_unless_closed(client: Pop3Client, command: str) -> Response | None:
    """The reply to ``command``, or None if the server has closed the
    connection (:data:`SERVER_CLOSED`) instead of answering.

    Exists because RFC 1939 §4 lets a server close after a failed
    authentication command, and idle-timer cases expect a close: the cases
    then decide whether a missing reply is acceptable.
    """
    try:
        return client.command(command, check=False)
    except SERVER_CLOSED:
        return None


# ------------------------------------------------------------------ the maildrop


def identities(client: Pop3Client, mailbox: MailboxIndex) -> dict[int, str]:
    """message-number -> a name for the message that holds across sessions:
    its UIDL, or (without UIDL) a digest of its header block.

    Exists because message numbers change between sessions (RFC 1939 §4),
    and the no-loss cases compare maildrops across sessions.
    """
    if mailbox.use_uidl:
        return client.uidl()
    return {n: hashlib.sha256(head).hexdigest() for n, head in mailbox.scan(client).items()}


def inventory(client: Pop3Client, mailbox: MailboxIndex) -> Counter[str]:
    """The maildrop as a multiset of :func:`identities` (identical copies count twice).

    Exists so "nothing was removed" is ``before - after`` being empty.
    """
    return Counter(identities(client, mailbox).values())


def find_scratch(
    pop: Connect, target: Target, mailbox: MailboxIndex, nonces: list[str], wait: float = 30.0
) -> tuple[Pop3Client, dict[str, int]]:
    """A logged-in client and nonce -> message-number, once every scratch
    message has arrived; UNIMPLEMENTED if some never do.

    Exists because destructive cases only touch the suite's own scratch
    messages, and SMTP delivery of them may lag behind the ``scratch`` call.
    """
    deadline = time.monotonic() + wait
    while True:
        client = login_when_unlocked(pop, target)
        found = mailbox.locate_scratch(client, nonces)
        if len(found) == len(nonces):
            return client, found
        client.quit()
        if time.monotonic() > deadline:
            unimplemented(f"{len(nonces) - len(found)} scratch messages did not arrive within {wait:g} s")
        time.sleep(0.5)


def smallest_message(client: Pop3Client) -> int:
    """The number of the smallest message (UNIMPLEMENTED if the maildrop is empty).

    Exists for cases that need some message to RETR or TOP and want the
    cheapest one.
    """
    sizes = client.list()
    if not sizes:
        unimplemented("the maildrop is empty")
    return min(sizes, key=lambda number: sizes[number])


# ------------------------------------------------------------------ CAPA and response codes


def capa(client: Pop3Client) -> dict[str, str] | None:
    """CAPA on this connection: tag (upper case) -> arguments as sent
    (:func:`pop3suite.proto.capability_arguments`, the form of the
    ``capabilities`` fixture); None if answered ``-ERR``.

    Exists because cases re-read CAPA in another state or after TLS, where
    the session-wide ``capabilities`` fixture does not apply.
    """
    body = client.multiline("CAPA", check=False)
    return capability_arguments(body.lines()) if body.response.ok else None


def sasl_mechanisms(capabilities: dict[str, str] | None) -> list[str]:
    """The mechanisms of the SASL capability, upper case (RFC 2449 §6.3).

    Exists because several cases add an AUTH PLAIN probe only where PLAIN
    is advertised.
    """
    return (capabilities or {}).get("SASL", "").upper().split()


def response_code(response: Response) -> str | None:
    """The first level of the response code, upper case (``SYS`` for
    ``[SYS/TEMP]``), or None.

    Exists because RFC 3206 §4 makes the case of a code insignificant, so
    every comparison must fold it.
    """
    return response.code[0].upper() if response.code else None


def bracket_is_code(response: Response) -> bool:
    """RFC 2449 §6.4: with RESP-CODES, text that begins with "[" is a
    response code; False if it begins with "[" but does not parse as one.

    Exists for every case that checks response-code syntax.
    """
    status = b"+OK" if response.ok else b"-ERR"
    rest = response.raw[len(status) + 1 :]
    return not rest.startswith(b"[") or response.code is not None


def expect_parses(parse: Callable[[bytes], Parsed], data: bytes, message: str, *, expected: str) -> Parsed:
    """``parse(data)`` with a :mod:`pop3suite.proto` parser, or the case
    fails with ``message``, ``expected`` and ``data`` as what came.

    Exists because the syntax cases judge a reply with the one parser in
    proto and report a mismatch as their own failed check, naming the bytes.
    """
    try:
        return parse(data)
    except MalformedResponse:
        expect(False, message, expected=expected, actual=data)
        raise  # not reached: expect(False, ...) raises


# ------------------------------------------------------------------ APOP


def apop_account(target: Target) -> Credentials:
    """The account given for APOP (``--apop-user``), or UNIMPLEMENTED.

    Exists because APOP is off for ordinary accounts on most servers.
    """
    if target.apop_user is None:
        unimplemented("no APOP account given (--apop-user USER:PASS; pytest: --pop3-apop-user)")
    return target.apop_user


def apop_greeting(
    pop: Connect, target: Target, missing: str = "the greeting carries no APOP timestamp"
) -> tuple[Pop3Client, str]:
    """A connected client (not logged in, :func:`capa_mode`) and its
    greeting's APOP timestamp; UNIMPLEMENTED with ``missing`` if there is none.

    Exists because every APOP case starts from a fresh greeting.
    """
    client = pop(capa_mode(target), login=False)
    timestamp = apop_timestamp(client.greeting)
    if timestamp is None:
        unimplemented(missing)
    return client, timestamp


def apop_login(
    pop: Connect,
    target: Target,
    account: Credentials,
    missing: str = "the greeting carries no APOP timestamp",
) -> tuple[Pop3Client, str, Response]:
    """On a fresh connection (:func:`apop_greeting`), APOP as
    ``account`` with the right digest: the client, the digest sent and the
    reply, not judged.

    Exists because the APOP cases (login, replay, one method per user, the
    provider's APOP-off rule) all start with this one attempt.
    """
    client, timestamp = apop_greeting(pop, target, missing)
    digest = apop_digest(timestamp, account.password)
    return client, digest, client.command(f"APOP {account.user} {digest}", check=False)
