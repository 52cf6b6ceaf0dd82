"""How a served copy of a fixture is judged (pop3suite.target.fixtures.matches):
byte-exact, or with a delivery agent's trace lines prepended and its
Message-ID:/Date: appended to a header block that lacked them (Cyrus lmtpd);
any other change fails."""

from __future__ import annotations

from pop3suite.target.fixtures import all_fixtures, matches

FIXTURES = all_fixtures(include_big=False)
PLAIN = FIXTURES["dot-lines"]


def _with_added(fields: bytes) -> bytes:
    head, _, body = PLAIN.wire.partition(b"\r\n\r\n")
    return head + b"\r\n" + fields + b"\r\n" + body


def test_exact_and_trace_prefixed_copies_match() -> None:
    assert matches(PLAIN.wire, PLAIN)
    assert matches(b"Return-Path: <a@b>\r\nReceived: by x; now\r\n" + PLAIN.wire, PLAIN)


def test_appended_message_id_and_date_match_when_the_fixture_lacks_them() -> None:
    """As Cyrus lmtpd serves it: trace lines before, Message-ID:/Date: after.
    (Appended fields without a trace prefix do not match today: see
    ``_trace_prefixed``, which wants a non-empty prefix.)"""
    added = b"Message-ID: <1@lmtpd>\r\nDate: Mon, 7 Dec 2026 18:00:00 +0000\r\n"
    assert b"message-id:" not in PLAIN.wire.lower()
    assert matches(b"Received: by x; now\r\n" + _with_added(added), PLAIN)
    assert not matches(b"Received: x\r\n" + _with_added(b"Message-ID: <1@x>\r\nX-Other: 1\r\n"), PLAIN)


def test_other_changes_do_not_match() -> None:
    assert not matches(_with_added(b"X-Other: 1\r\n"), PLAIN)
    assert not matches(PLAIN.wire.replace(b"\r\n..", b"\r\n.", 1), PLAIN)
    assert not matches(PLAIN.wire + b"extra\r\n", PLAIN)
    assert not matches(PLAIN.wire.partition(b"\r\n\r\n")[2], PLAIN)  # header block lost


def test_body_lines_are_the_lines_after_the_blank_line() -> None:
    for fixture in FIXTURES.values():
        assert b"".join(fixture.body_lines) == fixture.wire.partition(b"\r\n\r\n")[2]
