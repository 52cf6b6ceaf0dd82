"""The whole sans-I/O session against a model of RFC 1939 (Hypothesis stateful).

tests/unit/test_server_session.py's ``UpdateModel`` checks the UPDATE
invariant inside one TRANSACTION.  This machine covers the rest of the
session: AUTHORIZATION (USER/PASS ordering, failed logins, wrong-state
commands), TRANSACTION (STAT/LIST/UIDL/RETR/TOP/DELE/RSET/NOOP against the
listing and the marks), unknown commands and the bad-command limit, QUIT in
both states -- with every command fed to the core in random fragments, as
TCP may deliver it.  Bounded (max_examples) so it runs in the normal test run.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pop3suite.proto.errors import AuthFailed
from pop3suite.proto.server import (
    Authenticate,
    Close,
    MessageInfo,
    Retrieve,
    Send,
    ServerSession,
    SessionOptions,
    State,
    Update,
)
from tests.unit.session_helpers import check_action

MAX_BAD = 5
NUMBERS = st.integers(min_value=0, max_value=7)
CUTS = st.lists(st.integers(min_value=1, max_value=12), max_size=4)


class Pop3Model(RuleBasedStateMachine):
    """Model: state, the pending USER, the listing, the marks, bad commands."""

    @initialize(sizes=st.lists(st.integers(min_value=0, max_value=5000), max_size=6))
    def start(self, sizes):
        self.listing = tuple(MessageInfo(size, f"u{i}") for i, size in enumerate(sizes, 1))
        self.fresh_session()

    def fresh_session(self) -> None:
        self.session = ServerSession(SessionOptions(max_bad_commands=MAX_BAD))
        self.state = State.AUTHORIZATION
        self.pending: str | None = None
        self.marked: set[int] = set()
        self.bad = 0

    # ------------------------------------------------------------ plumbing

    def send(self, line: bytes, cuts: list[int]):
        """Feed ``line`` CRLF in fragments; the one action it produces."""
        data, position = line + b"\r\n", 0
        for cut in cuts:
            chunk = data[position : position + cut]
            if chunk:
                self.session.receive_data(chunk)
                position += len(chunk)
                if position < len(data):
                    assert self.session.next_action() is None  # no CRLF yet: nothing to do
        self.session.receive_data(data[position:])
        action = self.session.next_action()
        check_action(action)
        assert action is not None
        if isinstance(action, (Send, Close)):
            assert self.session.next_action() is None  # one command, one action
        return action

    def expect_err(self, action) -> None:
        assert isinstance(action, Send) and action.data.startswith(b"-ERR"), action

    def live(self) -> list[int]:
        return [n for n in range(1, len(self.listing) + 1) if n not in self.marked]

    def restart_if_closed(self) -> None:
        if self.state is State.CLOSED:
            self.fresh_session()

    # --------------------------------------------------------------- rules

    @rule(name=st.sampled_from(["alice", "bob", "nobody"]), cuts=CUTS)
    def user(self, name, cuts):
        self.restart_if_closed()
        action = self.send(b"USER " + name.encode(), cuts)
        if self.state is State.AUTHORIZATION:
            assert isinstance(action, Send) and action.data.startswith(b"+OK")
            self.pending = name
        else:
            self.expect_err(action)

    @rule(correct=st.booleans(), cuts=CUTS)
    def password(self, correct, cuts):
        self.restart_if_closed()
        action = self.send(b"PASS " + (b"right pass" if correct else b"wrong"), cuts)
        if self.state is not State.AUTHORIZATION or self.pending is None:
            self.expect_err(action)
            self.pending = None if self.state is State.AUTHORIZATION else self.pending
            return
        assert isinstance(action, Authenticate) and action.username == self.pending
        assert action.secret == (b"right pass" if correct else b"wrong")
        if correct and self.pending == "alice":
            assert self.session.accept_login("alice", self.listing).startswith(b"+OK")
            self.state = State.TRANSACTION
        else:
            assert self.session.reject_login(AuthFailed()).startswith(b"-ERR [AUTH]")
        self.pending = None

    @rule(
        command=st.sampled_from(["STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP"]),
        number=NUMBERS,
        lines=st.integers(min_value=0, max_value=3),
        cuts=CUTS,
    )
    def transaction_command(self, command, number, lines, cuts):
        self.restart_if_closed()
        takes = {"LIST": b" %d" % number, "UIDL": b" %d" % number, "RETR": b" %d" % number}
        takes |= {"DELE": b" %d" % number, "TOP": b" %d %d" % (number, lines)}
        argument = takes.get(command, b"") if (command not in ("LIST", "UIDL") or number) else b""
        action = self.send(command.encode() + argument, cuts)
        self.pending = None  # RFC 1939 §7: PASS only right after USER
        if self.state is not State.TRANSACTION:
            self.expect_err(action)
            return
        live = self.live()
        if command == "STAT":
            size = sum(self.listing[n - 1].size for n in live)
            assert action == Send(b"+OK %d %d\r\n" % (len(live), size))
        elif command in ("LIST", "UIDL") and not argument:
            assert isinstance(action, Send) and action.data.startswith(b"+OK")
            body = action.data.split(b"\r\n")[1:-2]
            value = (lambda n: b"%d" % self.listing[n - 1].size) if command == "LIST" else None
            expected = [b"%d %s" % (n, value(n) if value else self.listing[n - 1].uid.encode()) for n in live]
            assert body == expected
        elif command in ("LIST", "UIDL", "RETR", "TOP", "DELE"):
            if number not in live:
                self.expect_err(action)
            elif command == "RETR":
                assert isinstance(action, Retrieve) and action.number == number and action.top_lines is None
            elif command == "TOP":
                assert isinstance(action, Retrieve) and action.number == number and action.top_lines == lines
            elif command == "DELE":
                assert isinstance(action, Send) and action.data.startswith(b"+OK")
                self.marked.add(number)
            else:
                assert isinstance(action, Send) and action.data.startswith(b"+OK %d " % number)
        elif command == "RSET":
            assert isinstance(action, Send) and action.data.startswith(b"+OK")
            self.marked.clear()
        else:
            assert action == Send(b"+OK\r\n")

    @rule(
        junk=st.sampled_from([b"XYZZY", b"123", b"\x00NOOP", b"NO\tOP", b"%s%n", b"", b"RETR\x7f1"]),
        cuts=CUTS,
    )
    def bad_command(self, junk, cuts):
        self.restart_if_closed()
        action = self.send(junk, cuts)
        self.pending = None
        self.bad += 1
        if self.bad >= MAX_BAD:
            assert isinstance(action, Close) and action.reply.startswith(b"-ERR")
            self.state = State.CLOSED  # closed without UPDATE: nothing removed
        else:
            self.expect_err(action)

    @rule(cuts=CUTS)
    def quit(self, cuts):
        self.restart_if_closed()
        action = self.send(b"QUIT", cuts)
        if self.state is State.TRANSACTION:
            assert action == Update(tuple(sorted(self.marked)))
            assert self.session.update_finished().startswith(b"+OK")
        else:
            assert isinstance(action, Close) and action.reply.startswith(b"+OK")
        self.state = State.CLOSED

    # ----------------------------------------------------------- invariants

    @invariant()
    def agrees_with_model(self):
        if not hasattr(self, "session"):
            return
        assert self.session.state is self.state
        if self.state is State.TRANSACTION:
            assert self.session.deleted == frozenset(self.marked)
            assert self.session.username == "alice"
        if self.state is State.AUTHORIZATION:
            assert self.session.username is None


class TestSessionFollowsTheRfc1939Model(Pop3Model.TestCase):
    """Any sequence of commands, fed in any fragments, follows the RFC 1939 model (§§3-7)."""

    settings = settings(max_examples=80, stateful_step_count=30, deadline=None)
