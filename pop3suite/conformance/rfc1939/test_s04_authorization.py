"""RFC 1939 §4 "The AUTHORIZATION State": message numbering after login, the
exclusive-access lock (with RFC 2449 §8.1.2 ``[IN-USE]``), retrying after a
failed login, and QUIT before login."""

from __future__ import annotations

import pytest

from pop3suite.conformance.case import (
    INFO,
    MAY,
    MUST,
    SHOULD,
    case,
    expect,
    expect_equal,
    expect_err,
    expect_ok,
    observe,
    unimplemented,
)
from pop3suite.conformance.conftest import login_error
from pop3suite.conformance.helpers import (
    SERVER_CLOSED,
    bytes_until_close,
    expect_parses,
    login_when_unlocked,
    login_while_busy,
    wrong_password,
)
from pop3suite.proto import parse_scan_line


def _listing(client, capabilities):
    """What a session sees: LIST, and UIDL where advertised."""
    return client.list(), client.uidl() if "UIDL" in capabilities else None


@case(
    "rfc1939/4/numbering",
    MUST,
    "1939",
    "4",
    "The POP3 session now enters the TRANSACTION state, with no messages marked as deleted. [...] "
    'The first message in the maildrop is assigned a message-number of "1", the second is assigned '
    '"2", and so on, so that the nth message in a maildrop is assigned a message-number of "n". In '
    "POP3 commands and responses, all message-numbers and message sizes are expressed in base-10 "
    "(i.e., decimal).",
    ref="rfc1939/4/1",
)
def test_messages_numbered_one_to_n_in_decimal(pop, mailbox, mode):
    """Right after login LIST numbers the messages 1..n with decimal sizes, and none is marked deleted."""
    client = pop(mode)
    count, total = client.stat()
    numbers, sizes = [], []
    for line in client.multiline("LIST").lines():
        number, size = expect_parses(
            parse_scan_line, line, "scan listing in decimal", expected="<message-number> <octets>"
        )
        numbers.append(number)
        sizes.append(size)
    expect_equal(
        "message-numbers are exactly 1..n (n from STAT)",
        expected=list(range(1, count + 1)),
        actual=sorted(numbers),
    )
    expect_equal("sizes add up to the STAT size", expected=total, actual=sum(sizes))
    for number in range(1, min(count, 20) + 1):
        response = client.command(f"LIST {number}", check=False)
        expect_ok(response, f"message {number} is not marked deleted after login")


@case(
    "rfc1939/4/exclusive-lock",
    SHOULD,
    "1939",
    "4",
    "Once the POP3 server has determined through the use of any authentication command that the "
    "client should be given access to the appropriate maildrop, the POP3 server then acquires an "
    "exclusive-access lock on the maildrop, as necessary to prevent messages from being modified or "
    "removed before the session enters the UPDATE state. [...] If the maildrop cannot be opened for "
    "some reason (for example, a lock can not be acquired [...]), the POP3 server responds with a "
    "negative status indicator.",
    ref="rfc1939/4/2",
)
def test_second_session_refused_or_listing_stable(pop, target, mailbox, capabilities):
    """A second login to an open maildrop gets ``-ERR``, or both sessions see one unchanged listing."""
    first = pop()
    listing = _listing(first, capabilities)
    second = pop(login=False)
    second.user(target.user.user)
    response = second.pass_(target.user.password, check=False)
    if response.ok:
        expect_equal(
            "second session sees the first one's listing",
            expected=listing,
            actual=_listing(second, capabilities),
        )
        second.quit()  # nothing marked: nothing removed
    expect_equal(
        "first session's numbering after the second login",
        expected=listing,
        actual=_listing(first, capabilities),
    )
    noop = first.command("NOOP", check=False)
    expect_ok(noop, "first session still usable")
    first.quit()
    login_when_unlocked(pop, target)


@case(
    "rfc1939/4/exclusive-lock-concurrent-dele",
    SHOULD,
    "1939",
    "4",
    "[...] the POP3 server then acquires an exclusive-access lock on the maildrop, as necessary to "
    "prevent messages from being modified or removed before the session enters the UPDATE state.",
    ref="rfc1939/4/2",
    destructive=True,
)
def test_concurrent_session_cannot_remove_messages_under_another(pop, target, mailbox, scratch):
    """If two sessions are allowed, one deleting a message does not change what the other sees."""
    (nonce,) = scratch(1)
    first = login_when_unlocked(pop, target, wait=30.0)
    found = mailbox.locate_scratch(first, [nonce])
    if nonce not in found:
        unimplemented("the scratch message did not show up in the maildrop")
    number = found[nonce]
    listing = first.list()
    message = first.retr(number)
    second = pop(login=False)
    second.user(target.user.user)
    response = second.pass_(target.user.password, check=False)
    if not response.ok:
        first.dele(number)  # clean up the scratch message
        first.quit()
        unimplemented(f"the maildrop is locked: a second session is refused ({response.raw!r})")
    theirs = mailbox.locate_scratch(second, [nonce])
    if nonce in theirs:
        second.dele(theirs[nonce])
    second.quit()
    expect_equal(
        "first session's listing after another session removed a message",
        expected=listing,
        actual=first.list(),
    )
    again = first.multiline(f"RETR {number}", check=False)
    expect(
        again.response.ok and again.data == message,
        f"RETR {number} in the first session after another session deleted that message",
        expected="+OK and the same message",
        actual=again.response.raw,
    )
    first.quit()


@case(
    "rfc1939/4/in-use-code",
    INFO,
    "2449",
    "8.1.2",
    "IN-USE: This occurs on an -ERR response to an AUTH, APOP, or PASS command. It indicates the "
    "authentication was successful, but the user's maildrop is currently in use (probably by "
    "another POP3 client).",
    ref="rfc2449/8.1.2/1",
)
def test_locked_maildrop_refusal_carries_in_use(pop, target, request):
    """A login refused because the maildrop is open elsewhere says ``[IN-USE]``."""
    busy = login_while_busy(pop, target, target.user.password)
    response = busy.reply
    observe(request, f"right password while the maildrop is open: {response.raw!r}")
    if response.ok:
        busy.client.quit()
        busy.holder.quit()
        unimplemented("the server allows concurrent sessions; no lock refusal to inspect")
    expect_equal("response code of the refusal", expected="IN-USE", actual=response.code_str)
    busy.holder.quit()


@case(
    "rfc1939/4/in-use-needs-credentials",
    SHOULD,
    "2449",
    "8.1.2",
    "IN-USE: This occurs on an -ERR response to an AUTH, APOP, or PASS command. It indicates the "
    "authentication was successful, but the user's maildrop is currently in use (probably by "
    "another POP3 client).",
    ref="rfc2449/8.1.2/1",
    probes=["A8"],
)
def test_wrong_password_on_locked_maildrop_is_not_in_use(pop, target):
    """While the maildrop is open, a wrong password gets ``-ERR`` without ``[IN-USE]`` (no oracle)."""
    # The same attempt as rfc2449/8.1.2/in-use-after-auth-only, which also
    # checks USER and AUTH; this case holds servers without RESP-CODES to it.
    busy = login_while_busy(pop, target, wrong_password())
    response = busy.reply
    expect_err(response, "wrong password is refused")
    expect(
        response.code_str != "IN-USE",
        "[IN-USE] only after correct credentials",
        expected="-ERR [AUTH] or -ERR",
        actual=response.raw,
    )
    busy.holder.quit()


@case(
    "rfc1939/4/retry-after-failure",
    MAY,
    "1939",
    "4",
    "After returning a negative status indicator, the server may close the connection. If the "
    "server does not close the connection, the client may either issue a new authentication "
    "command and start again, or the client may issue the QUIT command.",
    ref="rfc1939/4/3",
)
def test_retry_on_same_connection_after_failed_pass(pop, target, request):
    """After a failed PASS the connection stays open and USER/PASS with the right password works."""
    client = pop(login=False)
    failed = login_error(client, target.user.user, target.user.password + "-wrong")
    expect_err(failed, "wrong password is refused")
    try:
        client.user(target.user.user)
        response = client.pass_(target.user.password, check=False)
    except SERVER_CLOSED as error:
        observe(request, f"the server closed the connection after a failed login (allowed): {error!r}")
        return
    observe(request, f"the connection stayed open; USER/PASS again: {response.raw!r}")
    expect_ok(response, "second attempt on the same connection")


@pytest.mark.parametrize("when", ["after-greeting", "after-user", "after-failed-pass"])
@case(
    "rfc1939/4/quit",
    MUST,
    "1939",
    "4, 6",
    "QUIT [...] Possible Responses: +OK [...] (Note that if the client issues the QUIT command from "
    "the AUTHORIZATION state, the POP3 session terminates but does NOT enter the UPDATE state.)",
    ref="rfc1939/4/4",
)
def test_quit_in_authorization(pop, target, mailbox, capabilities, when):
    """QUIT before login gets ``+OK``, the server closes the connection, and the maildrop is unchanged."""
    before = pop()
    listing = _listing(before, capabilities)
    before.quit()
    client = pop(login=False)
    if when == "after-user":
        client.user(target.user.user)
    elif when == "after-failed-pass":
        failed = login_error(client, target.user.user, target.user.password + "-wrong")
        expect_err(failed, "wrong password is refused")
    try:
        response = client.command("QUIT", check=False)
    except SERVER_CLOSED:
        if when == "after-failed-pass":
            response = None  # the server closed after the failed login (RFC 1939 §4 allows it)
        else:
            raise
    if response is not None:
        expect_ok(response, "QUIT in AUTHORIZATION")
        rest = bytes_until_close(client)
        expect(
            rest is not None,
            "server closes the connection after QUIT",
            expected="EOF",
            actual="still open after 10 s",
        )
    client.close()
    after = login_when_unlocked(pop, target)
    expect_equal(
        "maildrop after QUIT in AUTHORIZATION", expected=listing, actual=_listing(after, capabilities)
    )
