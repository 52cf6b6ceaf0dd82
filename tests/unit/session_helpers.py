"""Shared helpers of the ServerSession unit tests: they play the shell's
part (feed bytes, take actions, answer Authenticate / StartTLS / Update) and
check every action for a well-formed status line (RFC 1939 §3), so the
status-line rules are tested on every reply, not only where a test looks.
"""

from __future__ import annotations

import base64

from pop3suite.proto.errors import AuthFailed
from pop3suite.proto.limits import MAX_RESPONSE_LINE
from pop3suite.proto.server import (
    Action,
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
)

AUTHORIZATION = State.AUTHORIZATION
TRANSACTION = State.TRANSACTION
ACTION_TYPES = (Send, Authenticate, Retrieve, StartTLS, Update, Close)

LISTING = (MessageInfo(120, "uid-1"), MessageInfo(250, "uid-2"), MessageInfo(30, "uid-3"))
TIMESTAMP = "<1896.697170952@dbc.mtview.ca.us>"
PLAIN_IR = base64.b64encode(b"\0alice\0secret")


def check_reply(data: bytes) -> None:
    """A reply starts with one status line ("+OK", "-ERR" or a "+ " challenge) of
    at most 512 octets (RFC 1939 §3); a multi-line body uses CRLF only and ends
    in ".CRLF"."""
    first, sep, rest = data.partition(b"\r\n")
    assert sep, f"reply without CRLF: {data!r}"
    assert first.startswith((b"+OK", b"-ERR", b"+ ")), f"bad status line: {first!r}"
    if first.startswith(b"+OK"):
        assert first == b"+OK" or first.startswith(b"+OK "), f"no SP after +OK: {first!r}"
    if first.startswith(b"-ERR"):
        assert first == b"-ERR" or first.startswith(b"-ERR "), f"no SP after -ERR: {first!r}"
    assert len(first) + 2 <= MAX_RESPONSE_LINE
    assert b"\r" not in first and b"\n" not in first
    if rest:
        assert first.startswith(b"+OK"), "multi-line body after a non-+OK status"
        assert rest.endswith(b".\r\n")
        assert rest == b".\r\n" or rest.endswith(b"\r\n.\r\n")
        assert rest.count(b"\n") == rest.count(b"\r\n") == rest.count(b"\r")


def check_action(action: Action | None) -> None:
    """The action is one of the documented types and its reply bytes are well formed."""
    assert isinstance(action, ACTION_TYPES), f"not an action: {action!r}"
    if isinstance(action, Send):
        check_reply(action.data)
    elif isinstance(action, Close):
        check_reply(action.reply)
        assert b"\r\n" not in action.reply[:-2]
    elif isinstance(action, StartTLS):
        assert action.reply.startswith(b"+OK")
        check_reply(action.reply)
    elif isinstance(action, Retrieve):
        assert action.status_line.startswith(b"+OK")
        assert action.status_line.endswith(b"\r\n")
        check_reply(action.status_line)
        assert action.number >= 1


def step(session: ServerSession, line: bytes) -> Action:
    """Send one command line and return the one action it produces."""
    session.receive_data(line + b"\r\n")
    action = session.next_action()
    check_action(action)
    assert action is not None
    return action


def reply(session: ServerSession, line: bytes) -> bytes:
    """Send one command line that the core answers itself; return the reply bytes."""
    action = step(session, line)
    assert isinstance(action, Send), f"expected Send, got {action!r}"
    return action.data


def all_actions(session: ServerSession) -> list[Action]:
    """Every action available now (stopping where the shell owes an answer)."""
    actions = []
    while (action := session.next_action()) is not None:
        check_action(action)
        actions.append(action)
        if isinstance(action, (Authenticate, StartTLS, Update)):
            break
    return actions


def new_session(**options: object) -> ServerSession:
    session = ServerSession(SessionOptions(**options))  # type: ignore[arg-type]
    greeting = session.greeting()
    check_reply(greeting)
    assert greeting.startswith(b"+OK")
    return session


def login(session: ServerSession, listing=LISTING) -> ServerSession:
    """Drive USER/PASS (or APOP where cleartext login is off) into TRANSACTION."""
    if session.options.cleartext_login or session.options.tls_active:
        assert reply(session, b"USER alice").startswith(b"+OK")
        action = step(session, b"PASS secret")
    else:
        action = step(session, b"APOP alice c4c9334bac560ecc979e58001b3e22fb")
    assert isinstance(action, Authenticate)
    check_reply(session.accept_login("alice", listing))
    assert session.state is TRANSACTION
    return session


def logged_in(listing=LISTING, **options: object) -> ServerSession:
    return login(new_session(**options), listing)


def capa(session: ServerSession) -> list[bytes]:
    """The capability lines of a CAPA reply."""
    data = reply(session, b"CAPA")
    assert data.startswith(b"+OK")
    return data.split(b"\r\n")[1:-2]


def settle(session: ServerSession, action: Action, accept: bool = False) -> None:
    """Complete whatever the shell owes the core (login, TLS, update, SASL
    exchange) so that next_action can be called again."""
    if isinstance(action, Authenticate):
        if accept:
            check_reply(session.accept_login(action.username, LISTING))
        else:
            check_reply(session.reject_login(AuthFailed()))
    elif isinstance(action, StartTLS):
        session.start_tls_discard()
        session.tls_started()
    elif isinstance(action, Update):
        check_reply(session.update_finished())
    elif isinstance(action, Send) and action.data.startswith(b"+ "):
        cancel = step(session, b"*")
        assert isinstance(cancel, Send)
        assert cancel.data.startswith(b"-ERR")
