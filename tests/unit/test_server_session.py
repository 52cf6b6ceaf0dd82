"""Unit tests for the sans-I/O ServerSession: whole sessions, STAT/LIST/UIDL,
DELE/RSET, AUTHORIZATION, wrong-state commands, invalid message numbers, CAPA.
(STLS/SASL/APOP: test_server_session_auth.py; the table and the UPDATE
invariant by Hypothesis: test_server_session_properties.py.)"""

from __future__ import annotations

import pytest

from pop3suite.proto.errors import AuthFailed, MailboxInUse, SystemTemporary
from pop3suite.proto.limits import MAX_COMMAND_LINE
from pop3suite.proto.server import (
    Authenticate,
    Close,
    Retrieve,
    Send,
    State,
    Update,
)
from tests.unit.session_helpers import (
    AUTHORIZATION,
    LISTING,
    PLAIN_IR,
    TIMESTAMP,
    TRANSACTION,
    all_actions,
    capa,
    check_reply,
    logged_in,
    login,
    new_session,
    reply,
    step,
)

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
