"""Unit tests for pop3suite.proto.responses: formatting and parsing status lines."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pop3suite.proto.errors import (
    AuthFailed,
    CleartextDisallowed,
    LoginDelay,
    MailboxInUse,
    MalformedResponse,
    NoSuchMessage,
    SystemPermanent,
    SystemTemporary,
)
from pop3suite.proto.limits import MAX_RESPONSE_LINE
from pop3suite.proto.responses import continuation, err, error_line, ok, parse_status_line

# RFC 2449 §8: resp-level = 1*rchar; rchar = %x21-2E / %x30-5C / %x5E-7F.
RCHARS = "".join(chr(c) for c in [*range(0x21, 0x2F), *range(0x30, 0x5D), *range(0x5E, 0x80)])
resp_levels = st.text(alphabet=RCHARS, min_size=1, max_size=12)
resp_codes = st.lists(resp_levels, min_size=1, max_size=3).map("/".join)


def assert_one_status_line(line: bytes) -> None:
    """The line is one well-formed status line: one CRLF at the end, within 512 octets."""
    assert line.startswith((b"+OK", b"-ERR"))
    assert line.endswith(b"\r\n")
    assert line.count(b"\r") == 1
    assert line.count(b"\n") == 1
    assert b"\x00" not in line
    assert len(line) <= MAX_RESPONSE_LINE


# --------------------------------------------------------------- formatting


def test_ok_formatting():
    """A positive reply is "+OK", a single SP before any text, and CRLF (RFC 1939 §3)."""
    assert ok() == b"+OK\r\n"
    assert ok("") == b"+OK\r\n"
    assert ok("2 320") == b"+OK 2 320\r\n"


def test_err_formatting():
    """A negative reply is "-ERR", a single SP before any text, and CRLF (RFC 1939 §3)."""
    assert err("") == b"-ERR\r\n"
    assert err("No such message.") == b"-ERR No such message.\r\n"


def test_response_code_follows_status_in_brackets():
    """A response code sits in brackets right after the status indicator (RFC 2449 §8)."""
    assert err("Mailbox locked.", "IN-USE") == b"-ERR [IN-USE] Mailbox locked.\r\n"
    assert err("Try later.", "SYS/TEMP") == b"-ERR [SYS/TEMP] Try later.\r\n"
    assert ok("", "X-CODE") == b"+OK [X-CODE]\r\n"
    assert err("", "AUTH") == b"-ERR [AUTH]\r\n"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (AuthFailed(), b"-ERR [AUTH] Authentication failed.\r\n"),
        (CleartextDisallowed(), b"-ERR [AUTH] "),
        (MailboxInUse(), b"-ERR [IN-USE] "),
        (LoginDelay(), b"-ERR [LOGIN-DELAY] "),
        (SystemTemporary(), b"-ERR [SYS/TEMP] "),
        (SystemPermanent(), b"-ERR [SYS/PERM] "),
        (NoSuchMessage(), b"-ERR No such message.\r\n"),
    ],
)
def test_error_line_carries_response_code(error, expected):
    """Each error maps to its -ERR text and RFC 2449/3206 response code."""
    line = error_line(error)
    assert line.startswith(expected)
    assert_one_status_line(line)


def test_error_line_uses_custom_text():
    """An error raised with its own text and code puts exactly those on the wire."""
    assert error_line(AuthFailed("Go away.", "AUTH/X")) == b"-ERR [AUTH/X] Go away.\r\n"


def test_continuation_formatting():
    """A SASL challenge is "+ " and base64 data, then CRLF (RFC 5034 §4)."""
    assert continuation() == b"+ \r\n"
    assert continuation(b"dGVzdA==") == b"+ dGVzdA==\r\n"


@pytest.mark.parametrize(
    "text", ["a\r\nb", "a\rb", "a\nb", "a\x00b", "\r\n+OK injected", "tab\there", "\x7f"]
)
def test_control_characters_never_reach_the_wire(text):
    """CR, LF and NUL in reply text are neutralised: one reply never becomes two (response splitting)."""
    for line in (ok(text), err(text), err(text, "SYS/TEMP")):
        assert_one_status_line(line)
        assert b"\t" not in line
        assert b"\x7f" not in line


def test_long_text_is_capped_at_512_octets():
    """A status line is at most 512 octets including CRLF (RFC 1939 §3, RFC 2449 §4)."""
    for line in (ok("x" * 1000), err("y" * 1000), err("é" * 1000, "SYS/TEMP")):
        assert len(line) == MAX_RESPONSE_LINE
        assert_one_status_line(line)
    exact = err("z" * (MAX_RESPONSE_LINE - len(b"-ERR \r\n")))
    assert len(exact) == MAX_RESPONSE_LINE
    assert exact.endswith(b"z\r\n")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=700), code=st.one_of(st.none(), resp_codes))
def test_any_text_gives_one_bounded_status_line(text, code):
    """Whatever the text, ok() and err() produce exactly one CRLF-terminated line of at most 512 octets."""
    assert_one_status_line(ok(text, code))
    assert_one_status_line(err(text, code))


# ------------------------------------------------------------------ parsing


def test_parse_ok():
    """A "+OK text" line parses as positive with the text after the SP."""
    response = parse_status_line(b"+OK 2 320\r\n")
    assert response.ok
    assert response.code is None
    assert response.text == "2 320"
    assert response.raw == b"+OK 2 320\r\n"
    assert not response.continuation


def test_parse_ok_alone():
    """A bare "+OK" with no text is valid (RFC 1939 §3: text is optional)."""
    response = parse_status_line(b"+OK\r\n")
    assert response.ok
    assert response.text == ""
    assert response.code is None


def test_parse_err():
    """A "-ERR text" line parses as negative."""
    response = parse_status_line(b"-ERR No such message\r\n")
    assert not response.ok
    assert response.text == "No such message"
    assert response.code is None
    assert parse_status_line(b"-ERR\r\n").ok is False


@pytest.mark.parametrize(
    ("line", "ok_", "code", "code_str", "text"),
    [
        (b"-ERR [SYS/TEMP] Try later\r\n", False, ("SYS", "TEMP"), "SYS/TEMP", "Try later"),
        (b"-ERR [IN-USE] Locked\r\n", False, ("IN-USE",), "IN-USE", "Locked"),
        (b"-ERR [AUTH]\r\n", False, ("AUTH",), "AUTH", ""),
        (b"+OK [X-FOO/BAR/BAZ] hi\r\n", True, ("X-FOO", "BAR", "BAZ"), "X-FOO/BAR/BAZ", "hi"),
        (b"-ERR [] empty brackets\r\n", False, None, None, "[] empty brackets"),
    ],
)
def test_parse_response_codes(line, ok_, code, code_str, text):
    """Response codes in brackets after the status are split on "/" (RFC 2449 §8)."""
    response = parse_status_line(line)
    assert response.ok is ok_
    assert response.code == code
    assert response.code_str == code_str
    assert response.text == text


def test_parse_continuation():
    """A "+ " line is a SASL continuation whose text is the base64 payload (RFC 5034 §4)."""
    response = parse_status_line(b"+ dGVzdA==\r\n")
    assert response.continuation
    assert response.ok
    assert response.text == "dGVzdA=="
    empty = parse_status_line(b"+ \r\n")
    assert empty.continuation
    assert empty.text == ""
    assert parse_status_line(b"+\r\n").continuation


@pytest.mark.parametrize(
    "line",
    [
        b"+ok\r\n",
        b"OK\r\n",
        b"-ERRx\r\n",
        b"+OKAY\r\n",
        b"-err nope\r\n",
        b"garbage\r\n",
        b"\r\n",
        b"",
        b"* OK\r\n",
    ],
)
def test_parse_rejects_malformed_status(line):
    """Anything but upper-case "+OK"/"-ERR" followed by SP or CRLF is malformed (RFC 1939 §3)."""
    with pytest.raises(MalformedResponse):
        parse_status_line(line)


def test_malformed_message_says_what_arrived():
    """A MalformedResponse names the offending bytes so a conformance report can show Actual."""
    with pytest.raises(MalformedResponse, match="garbage"):
        parse_status_line(b"garbage\r\n")


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=600), code=st.one_of(st.none(), resp_codes))
@example(text="[IN-USE] busy", code=None)
def test_err_and_ok_round_trip_through_parser(text, code):
    """parse_status_line(err(text, code)) gives back the status and exactly the code sent, for any text."""
    for line, positive in ((err(text, code), False), (ok(text, code), True)):
        response = parse_status_line(line)
        assert response.ok is positive
        assert not response.continuation
        assert response.code_str == code
