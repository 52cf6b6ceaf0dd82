"""How the interop matrix judges served bytes (``pop3suite.interop.served``
and ``runner.verify``), on the real fixture set and the server rewrites seen
on real peers: Cyrus's trace headers, GNU Mailutils' mailbox-state headers
(``Status:`` changes once read, ``X-UIDL:`` appears once UIDL was asked),
Courier's RFC 6856 wrapping with a per-session MIME boundary.  Only those
are accepted, and only their per-session variation is masked; any other
alteration, a lost fixture or a message the server never served fails.
"""

from __future__ import annotations

from pop3suite.interop.curl import Curl
from pop3suite.interop.fetchmail import Fetchmail
from pop3suite.interop.fixtureset import fixture_set
from pop3suite.interop.getmail import Getmail
from pop3suite.interop.runner import verify
from pop3suite.interop.served import STATE, TRACE, WRAPPED, classify, server_rewrite, session_form
from pop3suite.target.fixtures import Fixture

FIXTURES = fixture_set(("utf8-headers", "bare-lf", "dot-lines"))
BY_NAME = {fixture.name: fixture for fixture in FIXTURES}


def _trace(fixture: Fixture) -> bytes:
    return b"Return-Path: <seed@x>\r\nReceived: from x by y; now\r\n" + fixture.wire


def _state(fixture: Fixture, status: bytes = b"O", uidl: bool = False) -> bytes:
    head, _, body = fixture.wire.partition(b"\r\n\r\n")
    extra = b"\r\nX-IMAPbase: 1795868976 7\r\nX-UID: 1\r\nStatus: " + status
    extra += b"\r\nX-UIDL: abc123" if uidl else b""
    return head + extra + b"\r\n\r\n" + body


def _wrapped(fixture: Fixture, boundary: bytes) -> bytes:
    return (
        b"From: Mail Delivery Subsystem <postmaster>\r\nSubject: Cannot display Unicode content\r\n"
        b'Mime-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
        b"--" + boundary + b"\r\nContent-Type: text/plain\r\n\r\nnotice\r\n\r\n--" + boundary + b"\r\n"
        b"Content-Type: message/global\r\n\r\n" + fixture.wire + b"\r\n--" + boundary + b"--\r\n"
    )


def test_known_rewrites_are_recognised_and_others_are_not():
    dots = BY_NAME["dot-lines"]
    assert server_rewrite(dots.wire, dots) == ""
    assert server_rewrite(_trace(dots), dots) == TRACE
    assert server_rewrite(_state(dots), dots) == STATE
    assert server_rewrite(_wrapped(BY_NAME["utf8-headers"], b"=_1-2"), BY_NAME["utf8-headers"]) == WRAPPED
    assert server_rewrite(dots.wire.replace(b"..\r\n", b".,\r\n", 1), dots) is None
    assert server_rewrite(_state(dots).replace(b"X-UID: 1", b"X-Spam: 1"), dots) is None


def test_session_variations_are_masked_only_where_the_server_showed_them():
    dots = BY_NAME["dot-lines"]
    first, later = _state(dots, b"O"), _state(dots, b"OR", uidl=True)
    assert session_form(first, {STATE}) == session_form(later, {STATE})
    assert session_form(first, set()) != session_form(later, set())
    utf8 = BY_NAME["utf8-headers"]
    one, two = _wrapped(utf8, b"=_18940-1795868974"), _wrapped(utf8, b"=_18942-1795868975")
    assert session_form(one, {WRAPPED}) == session_form(two, {WRAPPED})
    assert session_form(one, {STATE}) != session_form(two, {STATE})


def test_client_is_judged_against_what_the_server_served():
    """Mailutils-like server: a client storing the later session's bytes
    (Status: OR, an X-UIDL:) in its LF form passes; notes name the rewrite."""
    served = [_state(fixture) for fixture in FIXTURES]
    shot = classify(served, FIXTURES)
    assert shot.rewrites == {name: STATE for name in BY_NAME} and not shot.altered
    stored = [Fetchmail().stored_form(_state(fixture, b"OR", uidl=True)) for fixture in FIXTURES]
    assert verify(Fetchmail(), FIXTURES, shot, stored) == []
    [note] = shot.notes()
    assert note.startswith("server (not the client): utf8-headers, bare-lf, dot-lines served with mailbox")


def test_extra_message_is_listed_and_a_never_served_one_fails():
    notice = b"From: MAILER-DAEMON\r\nSubject: Delivery notice\r\n\r\nhello\r\n"
    shot = classify([fixture.wire for fixture in FIXTURES] + [notice], FIXTURES)
    stored = [fixture.wire for fixture in FIXTURES]
    assert verify(Curl(), FIXTURES, shot, stored) == []  # the notice may be left behind
    assert verify(Curl(), FIXTURES, shot, [*stored, notice]) == []  # or retrieved
    assert "message 4 in the maildrop is no fixture" in shot.notes()[0]
    assert "Subject: Delivery notice" in shot.notes()[0]
    forged = b"From: nobody\r\n\r\nnever served\r\n"
    [problem] = verify(Curl(), FIXTURES, shot, [*stored, forged])
    assert problem.startswith("a stored message the server never served")


def test_missing_altered_or_doubled_fixtures_fail():
    dots = BY_NAME["dot-lines"]
    broken = dots.wire.replace(b"..\r\n", b".,\r\n", 1)
    shot = classify([BY_NAME["utf8-headers"].wire, broken], FIXTURES)
    problems = verify(Curl(), FIXTURES, shot, [BY_NAME["utf8-headers"].wire, broken])
    assert problems[0] == "bare-lf: the server does not serve it after delivery"
    assert problems[1].startswith("dot-lines: differs at byte") and "no known server rewrite" in problems[1]
    doubled = verify(Curl(), FIXTURES, shot, [BY_NAME["utf8-headers"].wire] * 2 + [broken])
    assert "utf8-headers: stored twice" in doubled
    shot = classify([fixture.wire for fixture in FIXTURES], FIXTURES)
    changed = verify(Curl(), FIXTURES, shot, [FIXTURES[0].wire, FIXTURES[1].wire, broken])
    assert len(changed) == 1 and changed[0].startswith("dot-lines: differs at byte")


def test_getmail_stored_form_drops_a_served_return_path():
    """getmail writes its own Return-Path: first (stripped by the driver) and
    drops the one Cyrus delivered with the message."""
    served = _trace(BY_NAME["bare-lf"])
    stored = served.replace(b"\r\n", b"\n").split(b"\n", 1)[1]  # what getmail leaves after its own line
    assert Getmail().stored_form(served) == stored
