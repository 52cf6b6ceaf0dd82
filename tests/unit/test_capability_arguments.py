"""The CAPA argument grammar of ``rfc2449/6/capability-arguments``.

The case judges real servers' CAPA lines; these tests pin what it flags
(Mailutils' glued ``EXPIRENEVER``, a ``USER`` suffix after login, argument
on an argument-less tag) and, as important, what it must not flag: the
lists the five real peers send, and unknown tags.
"""

from __future__ import annotations

import pytest

from pop3suite.conformance.capa_grammar import AFTER_LOGIN, BEFORE_LOGIN, argument_problems

#: CAPA lines as the peers send them (docs/peers-*.md), before login.
PEER_LISTS = {
    "dovecot": [b"CAPA", b"TOP", b"UIDL", b"RESP-CODES", b"PIPELINING", b"AUTH-RESP-CODE", b"STLS",
                b"USER", b"SASL PLAIN"],
    "cyrus": [b"SASL PLAIN LOGIN", b"STLS", b"EXPIRE NEVER", b"LOGIN-DELAY 0", b"TOP", b"UIDL",
              b"PIPELINING", b"RESP-CODES", b"AUTH-RESP-CODE", b"USER",
              b"IMPLEMENTATION Cyrus POP3 3.6.1-4+deb12u4"],
    "courier": [b"TOP", b"USER", b"LOGIN-DELAY 10", b"PIPELINING", b"UIDL", b"UTF8 USER", b"STLS",
                b"IMPLEMENTATION Courier Mail Server"],
}  # fmt: skip


@pytest.mark.parametrize("peer", sorted(PEER_LISTS))
def test_real_lists_pass(peer):
    assert argument_problems(PEER_LISTS[peer], BEFORE_LOGIN) == []


def test_glued_expire_is_flagged_in_both_states():
    for grammar in (BEFORE_LOGIN, AFTER_LOGIN):
        (problem,) = argument_problems([b"TOP", b"EXPIRENEVER", b"USER"], grammar)
        assert "EXPIRE with its argument glued on" in problem


def test_glued_login_delay_is_flagged():
    assert argument_problems([b"LOGIN-DELAY900"], BEFORE_LOGIN)


@pytest.mark.parametrize(
    "line",
    [b"EXPIRE", b"EXPIRE SOON", b"EXPIRE 5  USER", b"LOGIN-DELAY", b"TOP 10", b"USER ", b"SASL", b"UTF8 ALL"],
)
def test_wrong_arguments_are_flagged(line):
    assert argument_problems([line], BEFORE_LOGIN)


def test_user_suffix_only_before_login():
    lines = [b"EXPIRE 30 USER", b"LOGIN-DELAY 60 USER"]
    assert argument_problems(lines, BEFORE_LOGIN) == []
    assert len(argument_problems(lines, AFTER_LOGIN)) == 2


def test_unknown_tags_are_not_judged():
    lines = [b"X-FOO bar  baz", b"CAPA", b"TOPX", b"USERNAME", b"EXPIRED soon", b"UIDL-FAST 1"]
    assert argument_problems(lines, BEFORE_LOGIN) == []


def test_case_of_tags_and_keywords_is_ignored():
    assert argument_problems([b"expire never", b"Login-Delay 10 user", b"sasl plain"], BEFORE_LOGIN) == []
