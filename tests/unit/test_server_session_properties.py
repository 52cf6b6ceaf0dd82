"""ServerSession against its command table and against a model of UPDATE,
driven by Hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pop3suite.proto.server import (
    COMMANDS,
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
from tests.unit.session_helpers import (
    AUTHORIZATION,
    PLAIN_IR,
    TIMESTAMP,
    TRANSACTION,
    check_action,
    logged_in,
    login,
    reply,
    settle,
    step,
)

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
