"""RFC 1939 §7 "Optional POP3 Commands": TOP, UIDL, USER/PASS and APOP."""

from __future__ import annotations

import re

import pytest

from pop3suite.conformance.case import (
    INFO,
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
    apop_account,
    apop_greeting,
    apop_login,
    capa_mode,
    expect_parses,
    find_scratch,
    login_when_unlocked,
    quit_and_wait,
    reply_unless_closed,
    unknown_user,
)
from pop3suite.proto import apop_digest, listing_reply, parse_uid_line, split_message
from pop3suite.proto.errors import MalformedResponse
from pop3suite.target.fixtures import SERVER_BOUNDARY, matches

_MSG_ID = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")


# ------------------------------------------------------------------ TOP


def _body_lines(body: bytes) -> list[bytes]:
    parts = body.split(b"\r\n")
    lines = [part + b"\r\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _top_expected(message: bytes, lines: int) -> bytes:
    """The headers, the blank line and the first ``lines`` body lines."""
    _, body = split_message(message)
    return message[: len(message) - len(body)] + b"".join(_body_lines(body)[:lines])


_TOP_COUNTS = {
    "top-lines": [0, 1, 2, 3, 19, 20, 21, 1000],  # 20 body lines, line 2 starts with a dot
    "dot-lines": [0, 1, 2, 3, 5, 6, 7, 8, 100],  # 7 body lines, lines 1 and 6 are a lone dot
    "empty-body": [0, 1, 5],
    "no-final-newline": [0, 1, 2],
}


@pytest.mark.parametrize("name", list(_TOP_COUNTS))
@case(
    "rfc1939/7/top-lines",
    MUST,
    "1939",
    "7",
    "If the POP3 server issues a positive response, then the response given is multi-line. After the "
    "initial +OK, the POP3 server sends the headers of the message, the blank line separating the "
    "headers from the body, and then the number of lines of the indicated message's body, being "
    "careful to byte-stuff the termination character (as with all multi-line responses). Note that "
    "if the number of lines requested by the POP3 client is greater than than the number of lines in "
    "the body, then the POP3 server sends the entire message.",
    ref="rfc1939/7/1",
    probes=["P10"],
)
def test_top_sends_headers_blank_line_and_n_lines(pop, need, mailbox, fixture_number, name):
    """``TOP m n`` for n = 0, 1, ..., more than the body: headers, blank line, n body lines, stuffed."""
    need("TOP")
    client = pop()
    number = fixture_number(client, name)
    fixture = mailbox.fixtures[name]
    retrieved = client.retr(number)
    message = retrieved if matches(retrieved, fixture) else fixture.wire
    for lines in _TOP_COUNTS[name]:
        body = client.multiline(f"TOP {number} {lines}")
        expected = _top_expected(message, lines)
        expect(body.data == expected, f"TOP {number} {lines} ({name})", expected=expected, actual=body.data)
        expect_equal(
            f"TOP {number} {lines}: lines starting with '.' byte-stuffed",
            expected=0,
            actual=body.unstuffed_dot_lines,
        )


@case(
    "rfc1939/7/top-errors",
    MUST,
    "1939",
    "7",
    "TOP msg n Arguments: a message-number (required) which may NOT refer to to a message marked as "
    "deleted, and a non-negative number of lines (required) [...] Possible Responses: +OK top of "
    "message follows -ERR no such message",
    ref="rfc1939/7/1",
)
def test_top_refuses_bad_message_or_line_count(pop, need, mailbox):
    """TOP of a nonexistent or deleted message, a negative count or a missing count gets ``-ERR``."""
    need("TOP")
    client = pop()
    count, _ = client.stat()
    if count == 0:
        unimplemented("maildrop is empty")
    for command in (f"TOP {count + 1} 0", "TOP 0 0", "TOP 1 -1", "TOP 1", "TOP"):
        response = client.command(command, check=False)
        expect_err(response, f"{command!r} must be refused")
    client.dele(1)
    response = client.command("TOP 1 0", check=False)
    expect_err(response, "TOP of a message marked deleted")
    client.rset()
    noop = client.command("NOOP", check=False)
    expect_ok(noop, "session still usable")


# ------------------------------------------------------------------ UIDL


@case(
    "rfc1939/7/uidl-format",
    MUST,
    "1939",
    "7",
    "A unique-id listing consists of the message-number of the message, followed by a single space "
    "and the unique-id of the message. No information follows the unique-id in the unique-id "
    "listing. The unique-id of a message is an arbitrary server-determined string, consisting of one "
    "to 70 characters in the range 0x21 to 0x7E [...]",
    ref="rfc1939/7/2",
    probes=["P11"],
)
def test_uidl_listing_format(pop, need, mailbox, mode):
    """Every UIDL line is ``n uid``: uid 1-70 octets in 0x21-0x7E, nothing after it; one line per message."""
    need("UIDL")
    client = pop(mode)
    count, _ = client.stat()
    numbers = []
    for line in client.multiline("UIDL").lines():
        number, _ = expect_parses(
            parse_uid_line, line, "unique-id listing syntax", expected="<n> <1-70 chars 0x21-0x7E>"
        )
        numbers.append(number)
    expect_equal(
        "one unique-id listing per message, 1..n", expected=list(range(1, count + 1)), actual=sorted(numbers)
    )


@case(
    "rfc1939/7/uidl-unique",
    MUST,
    "1939",
    "7",
    "The unique-id of a message is an arbitrary server-determined string [...] which uniquely "
    "identifies a message within a maildrop [...]. Clients should be able to handle a situation "
    "where two identical copies of a message in a maildrop have the same unique-id.",
    ref="rfc1939/7/2",
    probes=["P11"],
)
def test_uidl_unique_within_maildrop(pop, need, mailbox):
    """No two different messages share a unique-id (identical copies may)."""
    need("UIDL")
    client = pop()
    by_uid: dict[str, list[int]] = {}
    for number, uid in client.uidl().items():
        by_uid.setdefault(uid, []).append(number)
    for uid, numbers in by_uid.items():
        if len(numbers) > 1:
            first = client.retr(numbers[0])
            for other in numbers[1:]:
                expect(
                    client.retr(other) == first,
                    f"messages {numbers} share {uid!r}",
                    expected="identical",
                    actual="differ",
                )


@case(
    "rfc1939/7/uidl-single",
    MUST,
    "1939",
    "7",
    "If an argument was given and the POP3 server issues a positive response with a line containing "
    'information for that message. This line is called a "unique-id listing" for that message.',
    ref="rfc1939/7/2",
)
def test_uidl_with_argument_is_one_line(pop, need, mailbox):
    """``UIDL n`` answers ``+OK n uid`` on one line, the same uid as in the listing; nonexistent: ``-ERR``."""
    need("UIDL")
    client = pop()
    listing = client.uidl()
    if not listing:
        unimplemented("maildrop is empty")
    for number in [*sorted(listing)[:3], max(listing)]:
        raw = client.command(f"UIDL {number}").raw
        expect_parses(
            lambda line: parse_uid_line(listing_reply(line)),
            raw,
            f"UIDL {number} syntax",
            expected="+OK <n> <uid>CRLF",
        )
        expect_equal(
            f"UIDL {number} agrees with UIDL",
            expected=f"+OK {number} {listing[number]}\r\n".encode(),
            actual=raw,
        )
        try:
            noop = client.command("NOOP", check=False)
        except MalformedResponse as error:
            expect(
                False, f"UIDL {number} must be a single line", expected="+OK to the next NOOP", actual=error
            )
        expect_ok(noop, f"nothing follows the UIDL {number} line")
    response = client.command(f"UIDL {max(listing) + 1}", check=False)
    expect_err(response, "UIDL of a nonexistent message")


@case(
    "rfc1939/7/uidl-deleted-excluded",
    MUST,
    "1939",
    "7",
    "UIDL [msg] Arguments: a message-number (optional), which, if present, may NOT refer to a "
    "message marked as deleted [...] Note that messages marked as deleted are not listed.",
    ref="rfc1939/7/2",
)
def test_uidl_excludes_deleted(pop, need, mailbox):
    """After ``DELE 1`` UIDL omits message 1, keeps the others' numbers and uids; ``UIDL 1`` fails."""
    need("UIDL")
    client = pop()
    listing = client.uidl()
    if not listing:
        unimplemented("maildrop is empty")
    client.dele(1)
    expected = {n: uid for n, uid in listing.items() if n != 1}
    expect_equal("UIDL after DELE 1", expected=expected, actual=client.uidl())
    response = client.command("UIDL 1", check=False)
    expect_err(response, "UIDL 1 after DELE 1")
    client.rset()
    expect_equal("UIDL after RSET", expected=listing, actual=client.uidl())


def _uid_heads(client, mailbox):
    """unique-id -> header block of that message (generated MIME boundaries masked)."""
    uids = client.uidl()
    heads = mailbox.scan(client)
    return {uid: SERVER_BOUNDARY.sub(rb"\1*", heads[number]) for number, uid in uids.items()}


@case(
    "rfc1939/7/uidl-persist",
    MUST,
    "1939",
    "7",
    "The unique-id of a message is an arbitrary server-determined string [...] which persists across "
    "sessions. This persistence is required even if a session ends without entering the UPDATE state.",
    ref="rfc1939/7/3",
    probes=["P11"],
)
def test_uidl_persists_across_sessions(pop, need, target, mailbox):
    """Each unique-id names the same message after a QUIT and after a session dropped with a DELE pending."""
    need("UIDL")
    first = pop()
    original = _uid_heads(first, mailbox)
    first.quit()
    for label in ("after QUIT", "after a session ended without QUIT"):
        client = login_when_unlocked(pop, target)
        now = _uid_heads(client, mailbox)
        for uid, head in original.items():
            expect(uid in now, f"unique-id {uid!r} still there {label}", expected=uid, actual="missing")
            expect(
                now[uid] == head,
                f"unique-id {uid!r} names the same message {label}",
                expected=head,
                actual=now[uid],
            )
        if client.stat()[0]:
            client.dele(1)
        client.close()  # no QUIT: the DELE is not carried out


@case(
    "rfc1939/7/uidl-no-reuse",
    SHOULD,
    "1939",
    "7",
    "The server should never reuse an unique-id in a given maildrop, for as long as the entity using "
    "the unique-id exists.",
    ref="rfc1939/7/3",
    destructive=True,
    probes=["P11"],
)
def test_uidl_not_reused_after_delete(pop, need, target, mailbox, scratch):
    """Deliver, note the uid, delete, deliver again (twice): a new message never gets an old uid."""
    need("UIDL")
    seen: set[str] = set()
    previous = None
    for _ in range(3):
        (nonce,) = scratch(1)
        client, found = find_scratch(pop, target, mailbox, [nonce])
        uids = client.uidl()
        uid = uids[found[nonce]]
        if previous is not None:
            expect(
                uid not in seen,
                "a new message gets a unique-id never used before",
                expected=f"not {previous}",
                actual=uid,
            )
        seen.update(uids.values())
        previous = uid
        client.dele(found[nonce])
        response = client.command("QUIT", check=False)
        expect_ok(response, "QUIT after DELE of the scratch message")
        client.close()


# ------------------------------------------------------------------ USER / PASS


@case(
    "rfc1939/7/pass-needs-user",
    MUST,
    "1939",
    "7",
    "PASS string [...] Restrictions: may only be given in the AUTHORIZATION state immediately after "
    "a successful USER command",
    ref="rfc1939/7/4",
    probes=["A4"],
)
def test_pass_without_user_is_refused(pop, target):
    """``PASS`` with the right password but no USER gets ``-ERR`` and does not log in."""
    client = pop(login=False)
    response = client.pass_(target.user.password, check=False)
    expect_err(response, "PASS before any USER")
    stat = reply_unless_closed(client, "STAT")
    if stat is None:
        return  # RFC 1939 §4: the server may close after a failed authentication command
    expect(
        not stat.ok, "still in AUTHORIZATION after a refused PASS", expected="-ERR to STAT", actual=stat.raw
    )


@case(
    "rfc1939/7/pass-only-right-after-user",
    INFO,
    "1939",
    "7",
    "PASS string [...] Restrictions: may only be given in the AUTHORIZATION state immediately after "
    "a successful USER command",
    ref="rfc1939/7/4",
    probes=["A4"],
)
def test_pass_after_intervening_command_or_failed_pass(pop, target, request):
    """PASS after a failed PASS (no new USER) or after ``USER, NOOP`` is refused."""
    client = pop(login=False)
    failed = login_error(client, target.user.user, target.user.password + "-wrong")
    expect_err(failed, "wrong password is refused")
    # None: RFC 1939 §4 lets the server close after a failed authentication command.
    second = reply_unless_closed(client, f"PASS {target.user.password}")
    observe(request, f"PASS after a failed PASS: {second.raw if second else 'connection closed'!r}")
    if second is not None:
        expect_err(second, "PASS again after a failed PASS without a new USER")
    other = pop(login=False)
    other.user(target.user.user)
    other.command("NOOP", check=False)
    response = other.pass_(target.user.password, check=False)
    observe(request, f"PASS after USER, NOOP: {response.raw!r}")
    expect_err(response, "PASS after USER and another command")


@case(
    "rfc1939/7/failed-pass-stays-authorization",
    MUST,
    "1939",
    "4, 7",
    "USER name [...] Restrictions: may only be given in the AUTHORIZATION state after the POP3 "
    "greeting or after an unsuccessful USER or PASS command [...] After returning a negative status "
    "indicator, the server may close the connection. If the server does not close the connection, "
    "the client may either issue a new authentication command and start again, or the client may "
    "issue the QUIT command.",
    ref="rfc1939/7/5",
)
def test_failed_pass_keeps_authorization_state(pop, target):
    """A wrong password gets ``-ERR``; the session is not logged in, and a correct USER/PASS then works."""
    client = pop(login=False)
    failed = login_error(client, target.user.user, target.user.password + "-wrong")
    expect_err(failed, "wrong password is refused")
    stat = reply_unless_closed(client, "STAT")
    if stat is None:
        return  # RFC 1939 §4: the server may close after a failed login
    expect(not stat.ok, "not in TRANSACTION after a failed PASS", expected="-ERR to STAT", actual=stat.raw)
    client.user(target.user.user)
    response = client.pass_(target.user.password, check=False)
    expect_ok(response, "correct USER/PASS after a failed one")
    stat = client.command("STAT", check=False)
    expect(stat.ok, "in TRANSACTION now", expected="+OK to STAT", actual=stat.raw)


@case(
    "rfc1939/7/auth-failure-same-reply",
    INFO,
    "1939",
    "7, 13",
    "Servers that answer -ERR to the USER command are giving potential attackers clues about which "
    "names are valid.",
    ref="rfc1939/7/5",
    probes=["A2"],
)
def test_unknown_user_and_wrong_password_look_alike(pop, target, request):
    """USER and PASS replies for an unknown user and for a wrong password have the same shape."""
    replies = []
    for user in (target.user.user, unknown_user()):
        client = pop(login=False)
        user_reply = client.command(f"USER {user}", check=False)
        pass_reply = client.pass_(target.user.password + "-wrong", check=False) if user_reply.ok else None
        replies.append(
            (
                user_reply.ok,
                pass_reply and pass_reply.ok,
                pass_reply and pass_reply.code_str,
                pass_reply and pass_reply.text,
            )
        )
        client.close()
    known, unknown = replies
    observe(request, f"wrong password (USER ok, PASS ok, code, text): {known}; unknown user: {unknown}")
    expect(
        known == unknown,
        "same replies for a wrong password and an unknown user",
        expected=known,
        actual=unknown,
    )


# ------------------------------------------------------------------ APOP


@case(
    "rfc1939/7/apop-timestamp",
    MUST,
    "1939",
    "7",
    "A POP3 server which implements the APOP command will include a timestamp in its banner greeting. "
    "The syntax of the timestamp corresponds to the `msg-id' in [RFC822], and MUST be different each "
    "time the POP3 server issues a banner greeting.",
    ref="rfc1939/7/6",
    probes=["A10"],
)
def test_apop_timestamp_well_formed_and_unique(pop, target):
    """50 greetings in a row: each carries one ``<...@...>`` timestamp, and no two are the same."""
    client, _ = apop_greeting(pop, target)
    client.quit()
    seen: dict[str, int] = {}
    for attempt in range(50):
        client = pop(capa_mode(target), login=False)
        text = client.greeting.text
        stamps = re.findall(r"<[^<>]*>", text)
        expect(
            len(stamps) == 1, f"greeting {attempt + 1} has one timestamp", expected="<...@...>", actual=text
        )
        expect(
            _MSG_ID.fullmatch(stamps[0]) is not None,
            "timestamp in msg-id syntax",
            expected="<local@domain>",
            actual=stamps[0],
        )
        expect(
            stamps[0] not in seen,
            "timestamp differs on every greeting",
            expected="a new one",
            actual=f"{stamps[0]} again",
        )
        seen[stamps[0]] = attempt
        client.quit()


@case(
    "rfc1939/7/apop-digest",
    MUST,
    "1939",
    "7",
    "When the POP3 server receives the APOP command, it verifies the digest provided. If the digest "
    "is correct, the POP3 server issues a positive response, and the POP3 session enters the "
    "TRANSACTION state. Otherwise, a negative response is issued and the POP3 session remains in the "
    "AUTHORIZATION state.",
    ref="rfc1939/7/7",
)
def test_apop_right_digest_logs_in_wrong_digest_does_not(pop, target):
    """APOP with MD5(timestamp + secret) in lower-case hex logs in; a wrong digest gets ``-ERR``."""
    account = apop_account(target)
    client, timestamp = apop_greeting(pop, target)
    wrong = apop_digest(timestamp, account.password + "-wrong")
    response = client.command(f"APOP {account.user} {wrong}", check=False)
    expect_err(response, "APOP with a wrong digest")
    stat = reply_unless_closed(client, "STAT")  # None: RFC 1939 §4 lets the server close
    if stat is not None:
        expect(
            not stat.ok,
            "still in AUTHORIZATION after a wrong digest",
            expected="-ERR to STAT",
            actual=stat.raw,
        )
    client.close()
    client, _, response = apop_login(pop, target, account)
    expect_ok(response, "APOP with the right digest")
    stat = client.command("STAT", check=False)
    expect(stat.ok, "in TRANSACTION after APOP", expected="+OK to STAT", actual=stat.raw)
    client.quit()


@case(
    "rfc1939/7/apop-replay",
    MUST,
    "1939",
    "7",
    "The syntax of the timestamp corresponds to the `msg-id' in [RFC822], and MUST be different each "
    "time the POP3 server issues a banner greeting. [...] The `digest' parameter is calculated by "
    "applying the MD5 algorithm [RFC1321] to a string consisting of the timestamp (including "
    "angle-brackets) followed by a shared secret.",
    ref="rfc1939/7/7",
    probes=["A11"],
)
def test_apop_digest_from_previous_greeting_is_refused(pop, target):
    """A digest that logged in once is refused on the next connection (replay)."""
    account = apop_account(target)
    client, digest, response = apop_login(pop, target, account)
    expect_ok(response, "APOP with the right digest")
    quit_and_wait(client)
    replay, _ = apop_greeting(pop, target)
    response = replay.command(f"APOP {account.user} {digest}", check=False)
    expect(
        not response.ok and response.code_str != "IN-USE",
        "APOP with the digest of a previous greeting ([IN-USE] would mean it authenticated)",
        expected="-ERR",
        actual=response.raw,
    )


@case(
    "rfc1939/7/apop-upper-case-hex",
    INFO,
    "1939",
    "7",
    "The `digest' parameter itself is a 16-octet value which is sent in hexadecimal format, using "
    "lower-case ASCII characters.",
    ref="rfc1939/7/7",
    probes=["A12"],
)
def test_apop_upper_case_digest(pop, target, request):
    """Whether an upper-case hex digest is accepted (RFC 1939 specifies lower case; accepting is lenient)."""
    account = apop_account(target)
    client, timestamp = apop_greeting(pop, target)
    digest = apop_digest(timestamp, account.password).upper()
    response = client.command(f"APOP {account.user} {digest}", check=False)
    observe(request, f"APOP with an upper-case hex digest: {response.raw!r}")
    expect_err(response, "upper-case hex digest (lenient if accepted)")
