"""Unit tests for the sans-I/O ServerSession: whole sessions, every state and command.

The tests play the shell's part by hand: they feed bytes, take actions and
answer Authenticate / StartTLS / Update.  Every action is checked for a
well-formed status line (helper ``check_action``), so the RFC 1939 §3 rules on
status lines are tested on every reply, not only where a test looks.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pop3suite.proto.errors import AuthFailed, MailboxInUse, SystemTemporary
from pop3suite.proto.limits import MAX_COMMAND_LINE, MAX_RESPONSE_LINE
from pop3suite.proto.server import (
    COMMANDS,
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

# ------------------------------------------------------------------ helpers


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


# ------------------------------------------------------------ whole sessions


def test_whole_session_user_pass_to_update():
    """A full session: USER/PASS, TRANSACTION commands, QUIT → UPDATE of the marked ones (RFC 1939 §§4-6)."""
    session = new_session()
    assert session.state is AUTHORIZATION
    assert reply(session, b"USER alice") == b"+OK\r\n"
    assert step(session, b"PASS secret") == Authenticate("USER", "alice", b"secret")
    assert session.accept_login("alice", LISTING).startswith(b"+OK")
    assert session.state is TRANSACTION
    assert session.username == "alice"
    assert session.listing == LISTING
    assert reply(session, b"STAT") == b"+OK 3 400\r\n"
    assert reply(session, b"LIST").startswith(b"+OK")
    assert reply(session, b"UIDL").startswith(b"+OK")
    assert step(session, b"RETR 1") == Retrieve(1, b"+OK 120 octets\r\n", None)
    assert step(session, b"TOP 2 5") == Retrieve(2, b"+OK\r\n", 5)
    assert reply(session, b"DELE 1").startswith(b"+OK")
    assert reply(session, b"RSET").startswith(b"+OK")
    assert reply(session, b"DELE 3").startswith(b"+OK")
    assert reply(session, b"DELE 1").startswith(b"+OK")
    assert reply(session, b"NOOP") == b"+OK\r\n"
    assert step(session, b"QUIT") == Update((1, 3))
    assert session.state is State.UPDATE
    final = session.update_finished()
    assert final.startswith(b"+OK")
    check_reply(final)
    assert session.state is State.CLOSED
    assert session.next_action() is None


def test_update_failure_reported_with_err():
    """If UPDATE could not remove everything, the QUIT reply is -ERR with the error's code (RFC 1939 §6)."""
    session = logged_in()
    reply(session, b"DELE 2")
    assert step(session, b"QUIT") == Update((2,))
    final = session.update_finished(SystemTemporary())
    assert final.startswith(b"-ERR [SYS/TEMP]")
    check_reply(final)
    assert session.state is State.CLOSED


def test_quit_without_deletions_updates_nothing():
    """QUIT in TRANSACTION with nothing marked asks the shell to remove nothing (RFC 1939 §6)."""
    session = logged_in()
    assert step(session, b"QUIT") == Update(())


def test_commands_after_quit_are_not_processed():
    """Commands pipelined after QUIT are never executed: the session ends with UPDATE (RFC 1939 §6)."""
    session = logged_in()
    session.receive_data(b"QUIT\r\nDELE 1\r\nNOOP\r\n")
    assert session.next_action() == Update(())
    session.update_finished()
    assert session.next_action() is None
    assert session.deleted == frozenset()


# ------------------------------------------------------- STAT / LIST / UIDL


def test_stat_exact_bytes():
    """STAT is exactly "+OK n size" with single spaces (RFC 1939 §5)."""
    assert reply(logged_in(), b"STAT") == b"+OK 3 400\r\n"


def test_list_exact_bytes():
    """LIST is +OK then "n size" lines and ".", LIST n one line "+OK n size" (RFC 1939 §5)."""
    session = logged_in()
    assert reply(session, b"LIST") == b"+OK 3 messages (400 octets)\r\n1 120\r\n2 250\r\n3 30\r\n.\r\n"
    assert reply(session, b"LIST 2") == b"+OK 2 250\r\n"
    assert reply(session, b"list 3") == b"+OK 3 30\r\n"


def test_uidl_exact_bytes():
    """UIDL is +OK then "n uid" lines and ".", UIDL n one line "+OK n uid" (RFC 1939 §7)."""
    session = logged_in()
    assert reply(session, b"UIDL") == b"+OK\r\n1 uid-1\r\n2 uid-2\r\n3 uid-3\r\n.\r\n"
    assert reply(session, b"UIDL 3") == b"+OK 3 uid-3\r\n"


def test_empty_maildrop():
    """An empty maildrop gives STAT "+OK 0 0", LIST/UIDL with just ".", and -ERR for RETR 1 (RFC 1939 §5)."""
    session = logged_in(listing=())
    assert reply(session, b"STAT") == b"+OK 0 0\r\n"
    assert reply(session, b"LIST") == b"+OK 0 messages (0 octets)\r\n.\r\n"
    assert reply(session, b"UIDL") == b"+OK\r\n.\r\n"
    assert reply(session, b"RETR 1").startswith(b"-ERR")
    assert step(session, b"QUIT") == Update(())


def test_retr_and_top_give_retrieve_actions():
    """RETR n / TOP n m hand the shell the 1-based number, +OK line and line count (RFC 1939 §§5, 7)."""
    session = logged_in()
    assert step(session, b"RETR 2") == Retrieve(2, b"+OK 250 octets\r\n", None)
    assert step(session, b"TOP 1 0") == Retrieve(1, b"+OK\r\n", 0)
    assert step(session, b"top 3 10") == Retrieve(3, b"+OK\r\n", 10)


# --------------------------------------------------------------- DELE/RSET


def test_deleted_message_is_gone_until_update():
    """After DELE n, LIST/UIDL/RETR/TOP/DELE n are -ERR and STAT/LIST/UIDL exclude n (RFC 1939 §5)."""
    session = logged_in()
    assert reply(session, b"DELE 2").startswith(b"+OK")
    for line in (b"LIST 2", b"UIDL 2", b"RETR 2", b"TOP 2 0", b"DELE 2"):
        assert reply(session, line).startswith(b"-ERR"), line
    assert reply(session, b"STAT") == b"+OK 2 150\r\n"
    assert reply(session, b"LIST") == b"+OK 2 messages (150 octets)\r\n1 120\r\n3 30\r\n.\r\n"
    assert reply(session, b"UIDL") == b"+OK\r\n1 uid-1\r\n3 uid-3\r\n.\r\n"
    assert reply(session, b"LIST 3") == b"+OK 3 30\r\n"
    assert session.deleted == frozenset({2})


def test_rset_unmarks_all_deletions():
    """RSET unmarks every message marked deleted (RFC 1939 §5)."""
    session = logged_in()
    reply(session, b"DELE 1")
    reply(session, b"DELE 2")
    assert reply(session, b"STAT") == b"+OK 1 30\r\n"
    assert reply(session, b"RSET").startswith(b"+OK")
    assert reply(session, b"STAT") == b"+OK 3 400\r\n"
    assert reply(session, b"LIST 1") == b"+OK 1 120\r\n"
    assert step(session, b"RETR 2") == Retrieve(2, b"+OK 250 octets\r\n", None)
    assert step(session, b"QUIT") == Update(())


# ----------------------------------------------------------- AUTHORIZATION


def test_quit_in_authorization_closes_without_update():
    """QUIT in AUTHORIZATION answers +OK and closes; nothing is removed (RFC 1939 §4)."""
    session = new_session()
    reply(session, b"USER alice")
    action = step(session, b"QUIT")
    assert isinstance(action, Close)
    assert action.reply.startswith(b"+OK")
    assert session.state is State.CLOSED
    session.receive_data(b"STAT\r\n")
    assert session.next_action() is None


def test_reject_login_keeps_authorization_and_retry_works():
    """A failed PASS is -ERR; the session stays in AUTHORIZATION and a retry works (RFC 1939 §§4, 7)."""
    session = new_session()
    reply(session, b"USER alice")
    assert isinstance(step(session, b"PASS wrong"), Authenticate)
    failure = session.reject_login(AuthFailed())
    assert failure == b"-ERR [AUTH] Authentication failed.\r\n"
    assert session.state is AUTHORIZATION
    assert reply(session, b"STAT").startswith(b"-ERR")
    reply(session, b"USER alice")
    assert step(session, b"PASS secret") == Authenticate("USER", "alice", b"secret")
    session.accept_login("alice", LISTING)
    assert session.state is TRANSACTION


def test_reject_login_with_in_use_code():
    """Good credentials on a locked maildrop give -ERR [IN-USE] (RFC 2449 §8.1.2) and AUTHORIZATION stays."""
    session = new_session()
    reply(session, b"USER alice")
    step(session, b"PASS secret")
    assert session.reject_login(MailboxInUse()).startswith(b"-ERR [IN-USE]")
    assert session.state is AUTHORIZATION


def test_pass_without_user_is_err():
    """PASS without a preceding successful USER is -ERR (RFC 1939 §7)."""
    session = new_session()
    assert reply(session, b"PASS secret").startswith(b"-ERR")
    reply(session, b"USER alice")
    step(session, b"PASS wrong")
    session.reject_login(AuthFailed())
    assert reply(session, b"PASS secret").startswith(b"-ERR")
    assert session.state is AUTHORIZATION


def test_pass_not_immediately_after_user_is_err():
    """PASS is valid only right after a successful USER: USER, NOOP, PASS → -ERR (RFC 1939 §7)."""
    session = new_session()
    reply(session, b"USER alice")
    assert reply(session, b"NOOP").startswith(b"-ERR")
    action = step(session, b"PASS secret")
    assert isinstance(action, Send), f"PASS after USER, NOOP was accepted: {action!r}"
    assert action.data.startswith(b"-ERR")


def test_pipelined_login_waits_for_the_shell():
    """Commands pipelined behind PASS wait until the shell answers, then run in order (RFC 2449 §6.6)."""
    session = new_session()
    session.receive_data(b"USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n")
    actions = all_actions(session)
    assert actions == [Send(b"+OK\r\n"), Authenticate("USER", "alice", b"secret")]
    with pytest.raises(RuntimeError):
        session.next_action()
    session.accept_login("alice", LISTING)
    assert all_actions(session) == [Send(b"+OK 3 400\r\n"), Update(())]


def test_pipelined_transaction_commands_in_order():
    """Commands sent in one segment are processed in order, one action each (RFC 2449 §6.6)."""
    session = logged_in()
    session.receive_data(b"STAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nNOOP\r\n")
    actions = all_actions(session)
    assert actions == [
        Send(b"+OK 3 400\r\n"),
        Send(b"+OK 3 messages (400 octets)\r\n1 120\r\n2 250\r\n3 30\r\n.\r\n"),
        Send(b"+OK\r\n1 uid-1\r\n2 uid-2\r\n3 uid-3\r\n.\r\n"),
        Retrieve(1, b"+OK 120 octets\r\n", None),
        Send(b"+OK\r\n"),
    ]
    assert session.next_action() is None


def test_shell_answers_without_a_pending_request_raise():
    """The shell cannot accept a login, finish TLS or finish UPDATE that the core did not ask for."""
    session = new_session()
    with pytest.raises(RuntimeError):
        session.accept_login("alice", LISTING)
    with pytest.raises(RuntimeError):
        session.tls_started()
    with pytest.raises(RuntimeError):
        session.update_finished()


# -------------------------------------------------------------- wrong state


@pytest.mark.parametrize(
    "line",
    [b"STAT", b"LIST", b"LIST 1", b"UIDL", b"UIDL 1", b"RETR 1", b"TOP 1 0", b"DELE 1", b"RSET", b"NOOP"],
)
def test_transaction_commands_in_authorization_are_err(line):
    """TRANSACTION commands before login get -ERR; AUTHORIZATION stays usable (RFC 1939 §3)."""
    session = new_session()
    assert reply(session, line).startswith(b"-ERR")
    assert session.state is AUTHORIZATION
    assert reply(session, b"USER alice") == b"+OK\r\n"


@pytest.mark.parametrize(
    "line",
    [
        b"USER alice",
        b"PASS secret",
        b"APOP alice c4c9334bac560ecc979e58001b3e22fb",
        b"AUTH",
        b"AUTH PLAIN",
        b"AUTH PLAIN " + PLAIN_IR,
        b"STLS",
    ],
)
def test_authorization_commands_in_transaction_are_err(line):
    """USER/PASS/APOP/AUTH/STLS after login get -ERR; TRANSACTION goes on (RFC 1939 §3, 2595 §4, 5034 §4)."""
    session = logged_in(stls_available=True, apop_timestamp=TIMESTAMP)
    assert reply(session, line).startswith(b"-ERR")
    assert session.state is TRANSACTION
    assert reply(session, b"NOOP") == b"+OK\r\n"


# ---------------------------------------------------- invalid message numbers

BAD_NUMBERS = [b"0", b"-1", b"1.5", b"99999999999999999999", b"1 junk", b"", b"4", b"0x1", b"+1", b" 1"]


@pytest.mark.parametrize("template", [b"LIST %s", b"UIDL %s", b"RETR %s", b"DELE %s", b"TOP %s 1"])
@pytest.mark.parametrize("number", BAD_NUMBERS)
def test_invalid_message_number_is_err_and_session_usable(template, number):
    """A zero, negative, non-decimal, huge or missing message number is -ERR; NOOP works (RFC 1939 §3)."""
    session = logged_in()
    assert reply(session, template % number).startswith(b"-ERR")
    assert session.state is TRANSACTION
    assert reply(session, b"NOOP") == b"+OK\r\n"
    assert session.deleted == frozenset()
    assert reply(session, b"STAT") == b"+OK 3 400\r\n"


@pytest.mark.parametrize(
    "line", [b"TOP 1 -1", b"TOP 1 x", b"TOP 1", b"TOP", b"RETR", b"DELE", b"RETR 1 2", b"STAT 1"]
)
def test_invalid_arguments_are_err_and_session_usable(line):
    """Missing, extra or malformed arguments get -ERR without dropping the session (RFC 1939 §3, §7)."""
    session = logged_in()
    assert reply(session, line).startswith(b"-ERR")
    assert reply(session, b"NOOP") == b"+OK\r\n"


@pytest.mark.parametrize("line", [b"FOO", b"XTND XMIT", b"", b"STAT\x00", b"NOOP\rDELE 1", b"\xff\xfe"])
def test_unknown_or_malformed_command_is_err_and_session_usable(line):
    """Unknown or syntactically invalid commands get -ERR and the session stays usable (RFC 1939 §3)."""
    for session in (new_session(), logged_in()):
        state = session.state
        assert reply(session, line).startswith(b"-ERR")
        assert session.state is state
        assert reply(session, b"CAPA").startswith(b"+OK")
        assert session.deleted == frozenset()


def test_over_long_command_line_is_err_and_session_usable():
    """A command line over 255 octets gets one -ERR and the next command works (RFC 2449 §4)."""
    session = logged_in()
    session.receive_data(b"DELE " + b"1" * MAX_COMMAND_LINE + b"\r\nNOOP\r\n")
    actions = all_actions(session)
    assert len(actions) == 2
    assert isinstance(actions[0], Send)
    assert actions[0].data.startswith(b"-ERR")
    assert actions[1] == Send(b"+OK\r\n")
    assert session.deleted == frozenset()


def test_too_many_bad_commands_close_the_connection():
    """After max_bad_commands unknown or over-long commands the server answers -ERR and closes."""
    session = new_session(max_bad_commands=3)
    session.receive_data(b"FOO\r\nBAR\r\n" + b"x" * 300 + b"\r\nUSER alice\r\n")
    actions = all_actions(session)
    assert len(actions) == 3
    assert all(isinstance(a, Send) and a.data.startswith(b"-ERR") for a in actions[:2])
    assert isinstance(actions[2], Close)
    assert actions[2].reply.startswith(b"-ERR")
    assert session.state is State.CLOSED
    assert session.next_action() is None


# --------------------------------------------------------------------- CAPA


def test_capa_in_both_states():
    """CAPA works in both states; what was announced before login stays announced (RFC 2449 §5)."""
    session = new_session()
    before = capa(session)
    for tag in (b"TOP", b"UIDL", b"USER", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"SASL PLAIN"):
        assert tag in before
    assert b"IMPLEMENTATION pop3suite-reference" in before
    login(session)
    after = capa(session)
    assert set(before) <= set(after)


def test_capa_advertises_login_delay_and_expire():
    """LOGIN-DELAY and EXPIRE are announced with their configured values (RFC 2449 §§6.5, 6.7)."""
    caps = capa(new_session(login_delay=900, expire="NEVER"))
    assert b"LOGIN-DELAY 900" in caps
    assert b"EXPIRE NEVER" in caps


# --------------------------------------------------------------------- STLS


def test_stls_gives_starttls_action():
    """STLS answers +OK through a StartTLS action and the session stays in AUTHORIZATION (RFC 2595 §4)."""
    session = new_session(stls_available=True)
    action = step(session, b"STLS")
    assert isinstance(action, StartTLS)
    assert action.reply.startswith(b"+OK")
    session.start_tls_discard()
    session.tls_started()
    assert session.options.tls_active
    assert session.state is AUTHORIZATION


def test_stls_discards_pipelined_plaintext():
    """Plaintext pipelined after STLS is dropped, never executed inside TLS (RFC 2595 §4, CVE-2011-0411)."""
    session = new_session(stls_available=True)
    session.receive_data(b"STLS\r\nCAPA\r\n")
    assert isinstance(session.next_action(), StartTLS)
    assert session.start_tls_discard() == len(b"CAPA\r\n")
    session.tls_started()
    assert session.next_action() is None
    assert reply(session, b"CAPA").startswith(b"+OK")  # the first command inside TLS runs normally


def test_user_before_stls_is_forgotten():
    """A USER given before STLS is forgotten once TLS starts, so PASS is -ERR (RFC 2595 §4)."""
    session = new_session(stls_available=True)
    reply(session, b"USER alice")
    assert isinstance(step(session, b"STLS"), StartTLS)
    session.start_tls_discard()
    session.tls_started()
    assert reply(session, b"PASS secret").startswith(b"-ERR")
    assert session.state is AUTHORIZATION


def test_capa_lists_stls_only_before_tls():
    """STLS is advertised before TLS and no longer after it (RFC 2595 §4) nor after login."""
    session = new_session(stls_available=True)
    assert b"STLS" in capa(session)
    step(session, b"STLS")
    session.start_tls_discard()
    session.tls_started()
    assert b"STLS" not in capa(session)
    assert b"STLS" not in capa(logged_in(stls_available=True))


def test_stls_with_tls_active_is_err():
    """STLS when TLS is already active (implicit TLS, or a second STLS) is -ERR (RFC 2595 §4)."""
    implicit = new_session(stls_available=True, tls_active=True)
    assert reply(implicit, b"STLS").startswith(b"-ERR")
    assert b"STLS" not in capa(implicit)
    upgraded = new_session(stls_available=True)
    step(upgraded, b"STLS")
    upgraded.start_tls_discard()
    upgraded.tls_started()
    assert reply(upgraded, b"STLS").startswith(b"-ERR")
    assert upgraded.state is AUTHORIZATION


def test_stls_not_offered_is_err():
    """Without a certificate STLS is neither advertised nor accepted."""
    session = new_session()
    assert b"STLS" not in capa(session)
    assert reply(session, b"STLS").startswith(b"-ERR")


def test_cleartext_login_disallowed_until_tls():
    """Cleartext login off: USER, AUTH PLAIN get -ERR [AUTH] and CAPA omits them until TLS (RFC 2595 §2.3)."""
    session = new_session(cleartext_login=False, stls_available=True)
    assert reply(session, b"USER alice").startswith(b"-ERR [AUTH]")
    assert reply(session, b"AUTH PLAIN " + PLAIN_IR).startswith(b"-ERR [AUTH]")
    assert reply(session, b"PASS secret").startswith(b"-ERR")
    caps = capa(session)
    assert b"USER" not in caps
    assert not any(cap.startswith(b"SASL") and b"PLAIN" in cap for cap in caps)
    step(session, b"STLS")
    session.start_tls_discard()
    session.tls_started()
    caps = capa(session)
    assert b"USER" in caps
    assert b"SASL PLAIN" in caps
    assert reply(session, b"USER alice") == b"+OK\r\n"
    assert isinstance(step(session, b"PASS secret"), Authenticate)


# --------------------------------------------------------------- AUTH PLAIN


def test_auth_plain_initial_response():
    """AUTH PLAIN with an initial response asks the shell to check the credentials (RFC 5034 §4, RFC 4616)."""
    session = new_session()
    assert step(session, b"AUTH PLAIN " + PLAIN_IR) == Authenticate("PLAIN", "alice", b"secret", "")
    session.accept_login("alice", LISTING)
    assert session.state is TRANSACTION


def test_auth_plain_with_authzid():
    """The PLAIN authorization identity is passed on separately (RFC 4616 §2)."""
    session = new_session()
    ir = base64.b64encode(b"admin\0alice\0secret")
    assert step(session, b"auth plain " + ir) == Authenticate("PLAIN", "alice", b"secret", "admin")


def test_auth_plain_continuation():
    """AUTH PLAIN alone gets an empty "+ " challenge, then reads the response line (RFC 5034 §4)."""
    session = new_session()
    assert reply(session, b"AUTH PLAIN") == b"+ \r\n"
    assert step(session, PLAIN_IR) == Authenticate("PLAIN", "alice", b"secret", "")


def test_auth_star_cancels():
    """A "*" response cancels the exchange with -ERR and the session stays usable (RFC 5034 §4)."""
    session = new_session()
    assert reply(session, b"AUTH PLAIN") == b"+ \r\n"
    assert reply(session, b"*").startswith(b"-ERR")
    assert session.state is AUTHORIZATION
    assert reply(session, b"USER alice") == b"+OK\r\n"


@pytest.mark.parametrize("payload", [b"!!!", b"AGFsaWNl*", b"abc", b"\xff\xfe"])
def test_auth_bad_base64_is_err(payload):
    """Undecodable base64, initial or continuation response, is -ERR; session stays usable (RFC 5034 §4)."""
    session = new_session()
    assert reply(session, b"AUTH PLAIN " + payload).startswith(b"-ERR")
    assert reply(session, b"AUTH PLAIN") == b"+ \r\n"
    assert reply(session, payload).startswith(b"-ERR")
    assert session.state is AUTHORIZATION
    assert reply(session, b"USER alice") == b"+OK\r\n"


def test_auth_equals_is_empty_response():
    """A response of "=" is empty, not a challenge request: PLAIN without credentials fails (RFC 5034 §4)."""
    session = new_session()
    assert reply(session, b"AUTH PLAIN =").startswith(b"-ERR")
    assert reply(session, b"AUTH PLAIN") == b"+ \r\n"
    assert reply(session, b"=").startswith(b"-ERR")
    assert session.state is AUTHORIZATION
    assert reply(session, b"USER alice") == b"+OK\r\n"


def test_auth_unsupported_mechanism_is_err():
    """An unsupported SASL mechanism is -ERR and the session stays usable (RFC 5034 §4)."""
    session = new_session()
    assert reply(session, b"AUTH FOO").startswith(b"-ERR")
    assert reply(session, b"USER alice") == b"+OK\r\n"


def test_auth_non_ascii_mechanism_is_err():
    """A mechanism name with non-ASCII bytes is -ERR, not a crash (RFC 5034 §4)."""
    session = new_session()
    assert reply(session, b"AUTH PL\xc3\x84IN").startswith(b"-ERR")
    assert reply(session, b"USER alice") == b"+OK\r\n"


def test_auth_without_arguments_lists_mechanisms():
    """AUTH alone lists the mechanisms as a multi-line +OK reply (Outlook's non-standard probe)."""
    assert reply(new_session(), b"AUTH") == b"+OK\r\nPLAIN\r\n.\r\n"


def test_auth_long_continuation_line():
    """A continuation response longer than a command line (4 KB) is accepted (RFC 5034 §4)."""
    session = new_session()
    password = b"p" * 3000
    response = base64.b64encode(b"\0alice\0" + password)
    assert len(response) > MAX_COMMAND_LINE
    assert reply(session, b"AUTH PLAIN") == b"+ \r\n"
    assert step(session, response) == Authenticate("PLAIN", "alice", password, "")


# --------------------------------------------------------------------- APOP


def test_apop_offered_with_timestamp():
    """With a timestamp the greeting carries it and APOP asks the shell to check the digest (RFC 1939 §7)."""
    session = new_session(apop_timestamp=TIMESTAMP)
    assert TIMESTAMP.encode() in session.greeting()
    digest = b"c4c9334bac560ecc979e58001b3e22fb"
    assert step(session, b"APOP mrose " + digest) == Authenticate("APOP", "mrose", digest)


def test_apop_not_offered_without_timestamp():
    """Without a greeting timestamp APOP is -ERR and the greeting has no msg-id (RFC 1939 §7)."""
    session = new_session()
    assert b"<" not in session.greeting()
    assert reply(session, b"APOP mrose c4c9334bac560ecc979e58001b3e22fb").startswith(b"-ERR")
    assert session.state is AUTHORIZATION


# ------------------------------------------------- the table, by Hypothesis

UNKNOWN_KEYWORDS = ["FOO", "XTND", "UTF8", "LANG", "STARTTLS", "LOGIN", "X-" + "Y" * 38]
KEYWORDS = sorted(COMMANDS) + UNKNOWN_KEYWORDS

#: What a command the table allows may do besides answering with a Send
#: (which must leave the state unchanged): (action type, state afterwards).
EXTRA_OUTCOMES: dict[tuple[State, str], set[tuple[type, State]]] = {
    (AUTHORIZATION, "PASS"): {(Authenticate, AUTHORIZATION)},
    (AUTHORIZATION, "APOP"): {(Authenticate, AUTHORIZATION)},
    (AUTHORIZATION, "AUTH"): {(Authenticate, AUTHORIZATION)},
    (AUTHORIZATION, "STLS"): {(StartTLS, AUTHORIZATION)},
    (AUTHORIZATION, "QUIT"): {(Close, State.CLOSED)},
    (TRANSACTION, "RETR"): {(Retrieve, TRANSACTION)},
    (TRANSACTION, "TOP"): {(Retrieve, TRANSACTION)},
    (TRANSACTION, "QUIT"): {(Update, State.UPDATE)},
}

useful_args = st.sampled_from(
    [
        b"1",
        b"2",
        b"3",
        b"0",
        b"-1",
        b"PLAIN",
        PLAIN_IR,
        b"=",
        b"*",
        b"alice",
        b"c4c9334bac560ecc979e58001b3e22fb",
    ]
)
arg_bytes = st.one_of(useful_args, st.binary(max_size=30)).map(lambda b: b.replace(b"\n", b""))
arg_lists = st.lists(arg_bytes, max_size=3)
cases = st.sampled_from([str.upper, str.lower, str.capitalize])
# Follow-up commands use well-formed arguments: they move the session between
# states, while the arbitrary bytes go to the parametrized command, so a
# failure names the (state, keyword) pair that broke.
followups = st.tuples(st.sampled_from(KEYWORDS), cases, st.lists(useful_args, max_size=2))


def command_line(keyword: str, case, args: list[bytes]) -> bytes:
    return case(keyword).encode("ascii") + b"".join(b" " + arg for arg in args)


def check_against_table(session: ServerSession, keyword: str, line: bytes, accept: bool) -> None:
    """Send one line, check the action against COMMANDS, then settle it."""
    before = session.state
    bad_before = session.bad_commands
    session.receive_data(line + b"\r\n")
    action = session.next_action()
    check_action(action)
    assert action is not None
    spec = COMMANDS.get(keyword)
    in_table = spec is not None and before in spec.states
    if isinstance(action, Close) and action.reply.startswith(b"-ERR"):
        # Only the bad-command limit closes with -ERR.
        assert session.bad_commands == bad_before + 1 == session.options.max_bad_commands
        assert session.state is State.CLOSED
        return
    outcome = (type(action), session.state)
    allowed = {(Send, before)}
    if in_table:
        allowed |= EXTRA_OUTCOMES.get((before, keyword), set())
    assert outcome in allowed, f"{line!r} in {before}: {action!r} → {session.state}"
    if isinstance(action, Send):
        if not in_table:
            assert action.data.startswith(b"-ERR"), (
                f"{line!r} not allowed in {before} but got {action.data!r}"
            )
        if action.data.startswith(b"+ "):
            assert (before, keyword) == (AUTHORIZATION, "AUTH")
    if isinstance(action, Close):
        assert action.reply.startswith(b"+OK")
    settle(session, action, accept)
    if session.state is State.UPDATE:
        raise AssertionError("UPDATE not finished by settle()")


@pytest.mark.parametrize("state", [AUTHORIZATION, TRANSACTION], ids=lambda s: s.value)
@pytest.mark.parametrize("keyword", KEYWORDS)
@settings(max_examples=20, deadline=None)
@given(
    case=cases,
    args=arg_lists,
    then=st.lists(followups, max_size=4),
    accepts=st.lists(st.booleans(), min_size=5, max_size=5),
    stls_available=st.booleans(),
    tls_active=st.booleans(),
    cleartext_login=st.booleans(),
    max_bad_commands=st.integers(min_value=1, max_value=4),
)
def test_every_state_and_command_follows_the_table(
    state, keyword, case, args, then, accepts, stls_available, tls_active, cleartext_login, max_bad_commands
):
    """In every state any command with any argument bytes gives a valid action and only table transitions."""
    session = ServerSession(
        SessionOptions(
            stls_available=stls_available,
            tls_active=tls_active,
            cleartext_login=cleartext_login,
            apop_timestamp=TIMESTAMP,
            max_bad_commands=max_bad_commands,
        )
    )
    if state is TRANSACTION:
        login(session)
    sequence = [(keyword, case, args), *then]
    for (word, word_case, word_args), accept in zip(sequence, accepts, strict=False):
        if session.state is State.CLOSED:
            assert session.next_action() is None
            break
        check_against_table(session, word, command_line(word, word_case, word_args), accept)
    if session.state is not State.CLOSED:
        assert reply(session, b"CAPA").startswith(b"+OK")


# ------------------------------------------- UPDATE invariant against a model


class UpdateModel(RuleBasedStateMachine):
    """Model of a TRANSACTION: the set of marked message numbers.

    QUIT checks the Update action against the model, then logs in again on the
    same listing, so a run can cover several sessions.
    """

    def __init__(self) -> None:
        super().__init__()
        self.session: ServerSession | None = None
        self.listing: tuple[MessageInfo, ...] = ()
        self.marked: set[int] = set()

    @initialize(sizes=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
    def log_in(self, sizes):
        self.listing = tuple(MessageInfo(size, f"uid-{i}") for i, size in enumerate(sizes, 1))
        self.session = logged_in(self.listing)

    def live(self) -> list[int]:
        return [n for n in range(1, len(self.listing) + 1) if n not in self.marked]

    @rule(number=st.integers(min_value=-1, max_value=10))
    def dele(self, number):
        data = reply(self.session, b"DELE %d" % number)
        if 1 <= number <= len(self.listing) and number not in self.marked:
            assert data.startswith(b"+OK")
            self.marked.add(number)
        else:
            assert data.startswith(b"-ERR")

    @rule()
    def rset(self):
        assert reply(self.session, b"RSET").startswith(b"+OK")
        self.marked.clear()

    @rule()
    def stat(self):
        live = self.live()
        size = sum(self.listing[n - 1].size for n in live)
        assert reply(self.session, b"STAT") == b"+OK %d %d\r\n" % (len(live), size)

    @rule()
    def list_all(self):
        lines = reply(self.session, b"LIST").split(b"\r\n")[1:-2]
        assert lines == [b"%d %d" % (n, self.listing[n - 1].size) for n in self.live()]

    @rule(number=st.integers(min_value=0, max_value=10))
    def list_one(self, number):
        data = reply(self.session, b"LIST %d" % number)
        if number in self.live():
            assert data == b"+OK %d %d\r\n" % (number, self.listing[number - 1].size)
        else:
            assert data.startswith(b"-ERR")

    def check_quit(self) -> None:
        action = step(self.session, b"QUIT")
        assert action == Update(tuple(sorted(self.marked)))
        assert self.session.update_finished().startswith(b"+OK")
        assert self.session.state is State.CLOSED

    @rule()
    def quit_and_log_in_again(self):
        self.check_quit()
        self.session = logged_in(self.listing)
        self.marked = set()

    @invariant()
    def core_agrees_on_marks(self):
        if self.session is not None:
            assert self.session.deleted == frozenset(self.marked)

    def teardown(self) -> None:
        if self.session is not None:
            self.check_quit()


class TestUpdateRemovesExactlyTheMarkedMessages(UpdateModel.TestCase):
    """QUIT after any DELE/RSET/LIST/STAT sequence removes exactly the marked messages (RFC 1939 §§5-6)."""

    settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
