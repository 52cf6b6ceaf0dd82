"""RFC 1939 §3 "Basic Operation": the inactivity autologout timer.

The cases read the server's timer T from ``--idle-timeout`` (the embedded
server runs with T = 3 s under ``--fast``).  The 10-minute floor is a slow
case on its own.  Against a real server with a long T, the cases that wait
for T are skipped as UNIMPLEMENTED under ``--fast``.
"""

from __future__ import annotations

import time

import pytest

from pop3suite.conformance.case import MUST, SHOULD, case, expect, expect_ok, unimplemented
from pop3suite.conformance.helpers import (
    bytes_until_close,
    inventory,
    login_when_unlocked,
    reply_unless_closed,
)

RFC_MINIMUM = 600.0  # "at least 10 minutes' duration"
FAST_LIMIT = 30.0  # longest T the --fast run waits for

_SENTENCE = (
    "A POP3 server MAY have an inactivity autologout timer. Such a timer MUST be of at least 10 "
    "minutes' duration. The receipt of any command from the client during that interval should "
    "suffice to reset the autologout timer. When the timer expires, the session does NOT enter the "
    "UPDATE state--the server should close the TCP connection without removing any messages or "
    "sending any response to the client."
)


def _idle_timeout(target) -> float:
    """T, or UNIMPLEMENTED when it is unknown or too long for this run."""
    timeout = target.idle_timeout
    if timeout is None:
        unimplemented(
            "the server's idle timeout is not known "
            "(give --idle-timeout SECONDS; pytest: --pop3-idle-timeout)"
        )
    if target.fast and timeout > FAST_LIMIT:
        unimplemented(f"idle timeout {timeout:g} s is too long for --fast")
    return timeout


def _margin(timeout: float) -> float:
    return max(2.0, 0.1 * timeout)


def _noop_after(client, seconds: float):
    """Stay idle for ``seconds``, then NOOP: the response, or None if the
    server had closed the connection."""
    time.sleep(seconds)
    return reply_unless_closed(client, "NOOP")


@pytest.mark.timeout(900)
@case("rfc1939/3/timer-minimum", MUST, "1939", "3", _SENTENCE, ref="rfc1939/3/9", slow=True, probes=["D2"])
def test_session_survives_nine_minutes_fifty_idle(pop):
    """Idle 9 min 50 s after login, then NOOP still gets ``+OK`` (timer at least 10 minutes)."""
    client = pop()
    response = _noop_after(client, RFC_MINIMUM - 10)
    expect(
        response is not None,
        "session open after 590 s idle",
        expected="+OK to NOOP",
        actual="connection closed",
    )
    assert response is not None
    expect_ok(response, "NOOP after 590 s idle")


@pytest.mark.timeout(7200)
@case("rfc1939/3/timer-not-early", MUST, "1939", "3", _SENTENCE, ref="rfc1939/3/9", probes=["D2"])
def test_session_survives_most_of_the_timeout(pop, target):
    """Idle 0.8·T after login, then NOOP still gets ``+OK`` (the server does not close before T)."""
    timeout = _idle_timeout(target)
    client = pop()
    response = _noop_after(client, 0.8 * timeout)
    expect(
        response is not None,
        f"session open after {0.8 * timeout:g} s idle",
        expected="+OK",
        actual="connection closed",
    )
    assert response is not None
    expect_ok(response, "NOOP after 0.8·T idle")


@pytest.mark.timeout(7200)
@case("rfc1939/3/timer-reset", SHOULD, "1939", "3", _SENTENCE, ref="rfc1939/3/10", probes=["D2"])
def test_any_command_resets_the_timer(pop, target):
    """NOOP every 0.6·T for 2·T: the session stays open the whole time."""
    timeout = _idle_timeout(target)
    client = pop()
    start = time.monotonic()
    while time.monotonic() - start < 2 * timeout:
        response = _noop_after(client, 0.6 * timeout)
        elapsed = time.monotonic() - start
        expect(
            response is not None,
            f"session open after {elapsed:.1f} s of NOOPs",
            expected="+OK",
            actual="connection closed",
        )
        assert response is not None
        expect_ok(response, f"NOOP at {elapsed:.1f} s")


@pytest.mark.timeout(7200)
@case("rfc1939/3/timer-no-update", MUST, "1939", "3", _SENTENCE, ref="rfc1939/3/11", probes=["D2"])
def test_timeout_does_not_enter_update(pop, target, mailbox):
    """DELE 1, stay idle until the server closes: the message is still there afterwards."""
    timeout = _idle_timeout(target)
    client = pop()
    before = inventory(client, mailbox)
    count, _ = client.stat()
    if count == 0:
        unimplemented("maildrop is empty")
    client.dele(1)
    if bytes_until_close(client, timeout + _margin(timeout)) is None:
        unimplemented(f"the server did not close the idle session within {timeout + _margin(timeout):g} s")
    client.close()
    after_client = login_when_unlocked(pop, target)
    after = inventory(after_client, mailbox)
    missing = before - after
    expect(
        not missing,
        "nothing removed when the idle timer expired",
        expected="every message",
        actual=dict(missing),
    )
    expect(
        after_client.stat()[0] >= count,
        "message count not lower",
        expected=f">= {count}",
        actual=after_client.stat()[0],
    )


@pytest.mark.timeout(7200)
@case("rfc1939/3/timer-silent-close", SHOULD, "1939", "3", _SENTENCE, ref="rfc1939/3/11")
def test_timeout_closes_without_a_response(pop, target):
    """When the idle timer expires the server closes the connection without sending anything."""
    timeout = _idle_timeout(target)
    client = pop()
    sent = bytes_until_close(client, timeout + _margin(timeout))
    if sent is None:
        unimplemented(f"the server did not close the idle session within {timeout + _margin(timeout):g} s")
    expect(sent == b"", "nothing sent before the close", expected="EOF only", actual=sent)
