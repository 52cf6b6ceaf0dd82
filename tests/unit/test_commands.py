"""Unit tests for pop3suite.proto.commands: splitting command lines, numbers."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pop3suite.proto.commands import expect_args, line_count, message_number, parse_command
from pop3suite.proto.errors import BadArguments, LineTooLong, PeerError
from pop3suite.proto.limits import MAX_COMMAND_LINE


@pytest.mark.parametrize("line", [b"stat", b"STAT", b"Stat", b"sTaT"])
def test_keyword_is_case_insensitive(line):
    """Keywords are case-insensitive and come out upper-cased (RFC 1939 §3)."""
    command = parse_command(line)
    assert command.keyword == "STAT"
    assert command.args == ()
    assert command.raw == line


def test_arguments_split_on_single_space():
    """Keyword and arguments are separated by a single SP (RFC 1939 §3)."""
    command = parse_command(b"top 1 10")
    assert command.keyword == "TOP"
    assert command.args == (b"1", b"10")
    assert parse_command(b"LIST 1").args == (b"1",)


def test_double_space_gives_empty_argument_that_expect_args_rejects():
    """Two SPs in a row are not one separator: the empty argument makes the command invalid."""
    command = parse_command(b"LIST  1")
    assert command.args == (b"", b"1")
    with pytest.raises(BadArguments):
        expect_args(command, 0, 1)
    trailing = parse_command(b"STAT ")
    assert trailing.args == (b"",)
    with pytest.raises(BadArguments):
        expect_args(trailing, 0)


def test_pass_keeps_spaces_in_password():
    """PASS takes the rest of the line, spaces included, as the password (RFC 1939 §7)."""
    assert parse_command(b"PASS my secret  pass ").args == (b"my secret  pass ",)
    assert parse_command(b"pass  leading").args == (b" leading",)
    assert parse_command(b"PASS").args == ()


def test_repr_hides_secrets():
    """A Command's repr never shows a password, APOP digest or SASL response."""
    for line in (b"PASS hunter2", b"APOP alice hunter2", b"AUTH PLAIN hunter2"):
        assert "hunter2" not in repr(parse_command(line))
    assert "alice" in repr(parse_command(b"USER alice"))


@pytest.mark.parametrize(
    "line",
    [
        b"NOOP\x00",
        b"LIST\t1",
        b"USER a\rb",
        b"PASS a\x00b",
        b"PASS a\tb",
        b"STAT\x7f",
        b"\x1bSTAT",
        b"USER a\nb",
    ],
)
def test_control_characters_rejected(line):
    """Keywords and arguments are printable ASCII (RFC 1939 §3): NUL, TAB, CR etc. are BadArguments."""
    with pytest.raises(BadArguments):
        parse_command(line)


@pytest.mark.parametrize("line", [b"", b" STAT", b"1STAT", b"-", b"ST@T", b"K" * 41, "STÄT".encode()])
def test_malformed_keyword_rejected(line):
    """An empty line or a keyword that is not letters/digits/hyphen starting with a letter is BadArguments."""
    with pytest.raises(BadArguments):
        parse_command(line)


def test_forty_octet_keyword_accepted():
    """A 40-octet keyword is within the RFC 2449 §4 limit: an unknown command, not a syntax error."""
    assert parse_command(b"X" * 40).keyword == "X" * 40


def test_command_line_length_limit():
    """A command line of 255 octets including CRLF parses; 256 raises LineTooLong (RFC 2449 §4)."""
    longest = b"USER " + b"a" * (MAX_COMMAND_LINE - 2 - 5)
    assert len(longest) + 2 == MAX_COMMAND_LINE
    assert parse_command(longest).args == (b"a" * (MAX_COMMAND_LINE - 7),)
    with pytest.raises(LineTooLong):
        parse_command(longest + b"a")
    assert issubclass(LineTooLong, PeerError)


def test_custom_max_line():
    """A caller can set another limit (a SASL response line may be longer)."""
    with pytest.raises(LineTooLong):
        parse_command(b"NOOP", max_line=5)
    assert parse_command(b"NOOP", max_line=6).keyword == "NOOP"


@pytest.mark.parametrize(("arg", "number"), [(b"1", 1), (b"0", 0), (b"007", 7), (b"42", 42)])
def test_message_number_accepts_digits(arg, number):
    """A message number is one or more decimal digits; 0 parses (the caller answers "no such message")."""
    assert message_number(arg) == number


def test_message_number_accepts_20_digits():
    """A 20-digit number parses to an int, so a huge number is answered "no such message", not a crash."""
    assert message_number(b"9" * 20) == int("9" * 20)


@pytest.mark.parametrize(
    "arg", [b"-1", b"1.5", b"0x1", b"", b" 1", b"+1", b"1 ", b"1\n", "\u0661".encode(), b"1e3", b"one"]
)
def test_message_number_rejects_non_digits(arg):
    """Signs, dots, hex, spaces, non-ASCII digits and empty strings are not message numbers (RFC 1939 §5)."""
    with pytest.raises(BadArguments):
        message_number(arg)


@pytest.mark.parametrize("arg", [b"-1", b"1.5", b"", b"x"])
def test_line_count_rejects_non_digits(arg):
    """TOP's line count is a non-negative decimal number (RFC 1939 §7)."""
    with pytest.raises(BadArguments):
        line_count(arg)
    assert line_count(b"0") == 0


def test_expect_args_counts():
    """expect_args enforces the argument count range and returns the arguments."""
    assert expect_args(parse_command(b"TOP 1 2"), 2) == (b"1", b"2")
    assert expect_args(parse_command(b"LIST"), 0, 1) == ()
    with pytest.raises(BadArguments):
        expect_args(parse_command(b"RETR"), 1)
    with pytest.raises(BadArguments):
        expect_args(parse_command(b"RETR 1 2"), 1)


KEYWORDS = [b"USER", b"PASS", b"APOP", b"AUTH", b"LIST", b"TOP", b"STAT", b"quit", b"X"]


@settings(max_examples=300, deadline=None)
@given(
    line=st.one_of(
        st.binary(max_size=300),
        st.tuples(st.sampled_from(KEYWORDS), st.binary(max_size=60)).map(lambda t: t[0] + b" " + t[1]),
    )
)
def test_parse_command_only_raises_peer_errors(line):
    """parse_command never crashes on any bytes: it returns a Command or raises a PeerError subclass."""
    try:
        command = parse_command(line)
    except PeerError:
        return
    assert command.keyword == command.keyword.upper()
    assert command.keyword.isascii()
    assert command.raw == line
    for arg in command.args:
        for arg_number in (message_number, line_count):
            with contextlib.suppress(PeerError):
                arg_number(arg)
