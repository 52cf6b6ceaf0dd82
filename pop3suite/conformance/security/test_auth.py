"""§3.2 authentication probes not already in the suite.

A8 is rfc1939/4/in-use-needs-credentials + rfc2449/8.1.2/in-use-after-auth-only,
A9 rfc2449/6.5/login-delay-enforced, A10 rfc1939/7/apop-timestamp,
A11 rfc1939/7/apop-replay, A14 rfc1939/13/apop-user-no-pass, the PASS text
half of A1/A2 rfc1939/7/auth-failure-same-reply, A16's bad base64 and cancel
rfc5034/4/bad-base64 + rfc5034/4/cancel.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path

from pop3suite.client import apop_timestamp
from pop3suite.conformance.case import INFO, MUST, SHOULD, case, expect, expect_err, observe, unimplemented
from pop3suite.conformance.helpers import (
    SERVER_CLOSED,
    apop_account,
    apop_greeting,
    capa_mode,
    reply_unless_closed,
    sasl_mechanisms,
    unknown_user,
    wrong_password,
)
from pop3suite.proto import apop_digest

from .probe import forgive


def _login_reply(pop, user: bytes, password: bytes, target=None):
    """USER/PASS with raw bytes on a fresh connection: the last reply, or
    None if the server closed (a refusal).  With ``target``, a failed
    attempt is followed by :func:`forgive`."""
    client = pop(login=False)
    try:
        client.send_raw(b"USER " + user + b"\r\n")
        first = client.read_response()
        if not first.ok:
            return first
        client.send_raw(b"PASS " + password + b"\r\n")
        reply = client.read_response()
    except SERVER_CLOSED:
        reply = None
    if target is not None and not _authenticated(reply):
        forgive(pop, target)
    return reply


def _authenticated(reply) -> bool:
    return reply is not None and reply.ok


@case(
    "security/A1-user-reply-identical",
    SHOULD,
    "1939",
    "7, 13 (Dovecot)",
    "USER for an existing and for a non-existent user get byte-identical replies (no user enumeration).",
    ref="security-probes/3.2/A1",
    probes=["A1"],
)
def test_user_reply_same_for_unknown_user(pop, target):
    """USER for an existing and an unknown user gets byte-identical replies."""
    known = pop(login=False).command(f"USER {target.user.user}", check=False)
    unknown = pop(login=False).command(f"USER {unknown_user()}", check=False)
    expect(
        known.raw == unknown.raw,
        "USER replies for a known and an unknown user",
        expected=known.raw,
        actual=unknown.raw,
    )


def _mann_whitney_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of the Mann-Whitney U test (normal approximation)."""
    ranked = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(ranked)
    i = 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    r_a = sum(r for r, (_, side) in zip(ranks, ranked, strict=True) if side == 0)
    n_a, n_b = len(a), len(b)
    u = r_a - n_a * (n_a + 1) / 2
    mean, sd = n_a * n_b / 2, math.sqrt(n_a * n_b * (n_a + n_b + 1) / 12)
    z = abs(u - mean) / sd if sd else 0.0
    return math.erfc(z / math.sqrt(2))


TIMING_SAMPLES = 50


@case(
    "security/A2-timing-user-enumeration",
    SHOULD,
    "3206",
    "5 (popa3d dummy crypt)",
    "A wrong PASS for an existing and for a non-existent user take statistically indistinguishable "
    "time (>= 50 interleaved samples each); a noisy result is reported inconclusive, not failed.",
    slow=True,
    ref="security-probes/3.2/A2",
    probes=["A2"],
)
def test_failed_login_latency_does_not_reveal_users(pop, target, request):
    """A wrong PASS takes as long for an unknown user as for an existing one."""
    samples: dict[str, list[float]] = {"known": [], "unknown": []}
    client = None
    for i in range(TIMING_SAMPLES):
        order = ("known", "unknown") if i % 2 == 0 else ("unknown", "known")
        for side in order:
            user = target.user.user if side == "known" else unknown_user()
            for _attempt in range(3):
                if client is None:
                    client = pop(login=False)
                if reply_unless_closed(client, f"USER {user}") is None:
                    client = None
                    continue
                started = time.perf_counter()
                reply = reply_unless_closed(client, f"PASS {wrong_password()}")
                took = time.perf_counter() - started
                if reply is None:
                    client = None  # closed after failures: time it again on a new connection
                    continue
                expect_err(reply, "PASS with a wrong password")
                samples[side].append(took)
                break
    known, unknown = samples["known"], samples["unknown"]
    if min(len(known), len(unknown)) < TIMING_SAMPLES * 0.8:
        unimplemented("the server kept closing connections; not enough timing samples")
    p = _mann_whitney_p(known, unknown)
    diff = statistics.median(known) - statistics.median(unknown)
    quartiles = [statistics.quantiles(s, n=4) for s in (known, unknown)]
    noise = max(q[2] - q[0] for q in quartiles)
    summary = (
        f"median known {statistics.median(known) * 1000:.1f} ms, unknown "
        f"{statistics.median(unknown) * 1000:.1f} ms, Mann-Whitney p={p:.3g}, IQR {noise * 1000:.1f} ms"
    )
    observe(request, summary)
    if p >= 0.01 or abs(diff) < 0.002:
        return  # indistinguishable
    if abs(diff) <= 2 * noise:
        observe(request, "INCONCLUSIVE: the difference is within the noise of this link")
        return
    expect(
        False, "failed-login latency for known vs unknown users", expected="indistinguishable", actual=summary
    )


@case(
    "security/A3-failed-login-throttling",
    SHOULD,
    "1939",
    "4 (Dovecot auth_failure_delay / auth-penalty)",
    "20 rapid wrong PASS from one address are delayed and/or the connection is closed; the server "
    "stays alive and the correct password still works afterwards.",
    hardening=True,
    ref="security-probes/3.2/A3",
    probes=["A3"],
)
def test_rapid_failed_logins_are_throttled(pop, target, request):
    """Rapid wrong passwords are delayed or cut off; the right one still works after."""
    started = time.monotonic()
    closes = answered = 0
    client = pop(login=False)
    for _ in range(20):
        if time.monotonic() - started >= 1.0:
            break  # throttling shown; more failures would only pile up a penalty
        reply = reply_unless_closed(client, f"USER {target.user.user}")
        reply = reply_unless_closed(client, f"PASS {wrong_password()}") if reply is not None else None
        if reply is None:
            closes += 1
            client = pop(login=False)
            continue
        answered += 1
        expect_err(reply, "PASS with a wrong password")
    took = time.monotonic() - started
    observe(request, f"{answered} failures took {took:.1f} s, {closes} closes")
    expect(
        closes > 0 or took >= 1.0,
        "20 wrong passwords are slowed down (>= 50 ms each) or the connection is closed",
        expected="delay or close",
        actual=f"{took:.2f} s for {answered} failures, no close",
    )


@case(
    "security/A4-auth-sequence-errors",
    MUST,
    "1939",
    "7 (vpopmail CVE-2006-2346)",
    "PASS with no USER, USER or PASS with an empty argument, and PASS after a second USER for another "
    "name get -ERR (or a close) and never authenticate the first user.",
    ref="security-probes/3.2/A4",
    probes=["A4"],
)
def test_broken_user_pass_sequences_never_authenticate(pop, target):
    """PASS without USER, empty USER/PASS and PASS after a second USER get -ERR and never log in."""
    name, password = target.user.user.encode(), target.user.password.encode()
    sequences = {
        "PASS without USER": [b"PASS " + password],
        "USER without argument": [b"USER", b"PASS " + password],
        "USER with empty argument": [b"USER ", b"PASS " + password],
        "PASS without argument": [b"USER " + name, b"PASS"],
        "PASS with empty argument": [b"USER " + name, b"PASS "],
        "USER twice, other name last": [
            b"USER " + name,
            b"USER " + unknown_user().encode(),
            b"PASS " + password,
        ],
    }
    for label, lines in sequences.items():
        client = pop(login=False)
        last = None
        for line in lines:
            try:
                client.send_raw(line + b"\r\n")
                last = client.read_response()
            except SERVER_CLOSED:
                last = None
                break
        expect(not _authenticated(last), label, expected="-ERR or close", actual=last.raw if last else b"")
        stat = reply_unless_closed(client, "STAT") if last is not None else None
        expect(
            stat is None or not stat.ok,
            f"{label}: STAT afterwards",
            expected="-ERR",
            actual=stat.raw if stat else b"",
        )
        forgive(pop, target)


@case(
    "security/A5-password-with-spaces",
    MUST,
    "1939",
    "7",
    "The PASS argument is the whole rest of the line, spaces included: neither a prefix of the "
    "password nor the password plus more words logs in.",
    ref="security-probes/3.2/A5",
    probes=["A5"],
)
def test_password_is_the_whole_line(pop, target, request):
    """PASS takes the whole rest of the line: no prefix or extension of the password logs in."""
    name, password = target.user.user.encode(), target.user.password.encode()
    wrong = [password + b" extra"]
    if b" " in password:
        wrong.append(password.split(b" ")[0])
        observe(request, "the canary password contains a space and logs in (the ALIVE check)")
    for attempt in wrong:
        reply = _login_reply(pop, name, attempt, target)
        expect(
            not _authenticated(reply),
            f"PASS {attempt!r}",
            expected="-ERR",
            actual=reply.raw if reply else b"",
        )


@case(
    "security/A6-nul-in-credentials",
    MUST,
    "1939",
    "3 (CVE-2019-11500 class)",
    "A NUL octet in USER or PASS gets -ERR or a close; the login is never truncated to a valid user "
    "or password, and the server does not crash.",
    ref="security-probes/3.2/A6",
    probes=["A6"],
)
def test_nul_in_credentials_never_authenticates(pop, target):
    """A NUL in USER or PASS gets -ERR or a close and never truncates to valid credentials."""
    name, password = target.user.user.encode(), target.user.password.encode()
    for user, secret in (
        (name + b"\0bob", password),
        (name + b"\0", password),
        (b"\0" + name, password),
        (name, password + b"\0junk"),
        (name, password + b"\0"),
        (name, b"\0" + password),
    ):
        reply = _login_reply(pop, user, secret, target)
        expect(
            not _authenticated(reply),
            f"USER {user!r} / PASS with NUL",
            expected="-ERR or close",
            actual=reply.raw if reply else b"",
        )


@case(
    "security/A7-control-chars-in-credentials",
    MUST,
    "1939",
    "3 (CVE-2008-1218)",
    "TAB, CR and other control characters in credentials make the login fail, with no auth-protocol "
    "field injection (PASS x<TAB>master_user=root<TAB>skip_password_check=1).",
    ref="security-probes/3.2/A7",
    probes=["A7"],
)
def test_control_characters_in_credentials_never_authenticate(pop, target):
    """Control characters in credentials fail the login (no auth field injection)."""
    name, password = target.user.user.encode(), target.user.password.encode()
    for user, secret in (
        (name, b"x\tmaster_user=root\tskip_password_check=1"),
        (name + b"\tmaster_user=root", password),
        (name, password + b"\t"),
        (name, password + b"\rjunk"),
        (name + b"\x1b", password),
        (name, password + b"\x7f"),
    ):
        reply = _login_reply(pop, user, secret, target)
        expect(
            not _authenticated(reply),
            f"USER {user!r} / PASS {secret!r}",
            expected="-ERR or close",
            actual=reply.raw if reply else b"",
        )


@case(
    "security/A12-apop-malformed-digest",
    MUST,
    "1939",
    "7, 13 (CVE-2006-2346)",
    "APOP with no, a non-hex or a wrong-length digest, or for an unknown user, gets -ERR; the reply "
    "for an unknown user reads like the one for a bad digest.",
    ref="security-probes/3.2/A12",
    probes=["A12"],
)
def test_malformed_apop_is_refused(pop, target, request):
    """Malformed APOP digests and unknown APOP users get -ERR, worded like a bad digest."""
    account = apop_account(target)
    client, timestamp = apop_greeting(pop, target)
    bad = client.command(f"APOP {account.user} {'0' * 32}", check=False)
    expect_err(bad, "APOP with a wrong digest")
    good = apop_digest(timestamp, account.password)
    probes = {
        "no digest": f"APOP {account.user}",
        "non-hex digest": f"APOP {account.user} {'z' * 32}",
        "short digest": f"APOP {account.user} {good[:31]}",
        "long digest": f"APOP {account.user} {good}0",
        "unknown user": f"APOP {unknown_user()} {good}",
    }
    texts = {}
    for label, line in probes.items():
        other = pop(capa_mode(target), login=False)
        if apop_timestamp(other.greeting) is None:
            unimplemented("the greeting carries no APOP timestamp")
        reply = reply_unless_closed(other, line)
        expect(
            reply is None or not reply.ok,
            f"APOP with {label}",
            expected="-ERR",
            actual=reply.raw if reply else b"",
        )
        texts[label] = reply.raw if reply else b"(closed)"
        forgive(pop, target)
    observe(request, f"bad digest: {bad.raw!r}; unknown user: {texts['unknown user']!r}")
    expect(
        texts["unknown user"] == bad.raw,
        "APOP for an unknown user vs a bad digest",
        expected=bad.raw,
        actual=texts["unknown user"],
    )


@case(
    "security/A13-apop-weak",
    INFO,
    "1939",
    "7 (CVE-2007-1558; ia.cr/2011/248)",
    "APOP offered (a timestamp in the greeting) is reported WEAK: MD5 challenge-response is broken "
    "(Leurent FSE 2007: 3 password characters; Sasaki et al. CT-RSA 2008: 31; Liu et al. 2011: 11 "
    "characters in under a minute), and the secret must be stored in the clear.",
    ref="security-probes/3.2/A13",
    probes=["A13"],
)
def test_apop_offered_is_weak(pop, target, request):
    """Records whether APOP (MD5 challenge-response, cleartext secrets) is offered: WEAK."""
    where = []
    for mode in ("plain", "implicit"):
        if (mode == "plain" and target.pop3 is None) or (mode == "implicit" and target.pop3s is None):
            continue
        client = pop(mode, login=False)
        if apop_timestamp(client.greeting) is not None:
            where.append("port 110-style without TLS" if mode == "plain" else "implicit TLS")
    if not where:
        observe(request, "APOP not offered (no timestamp in any greeting)")
        return
    observe(
        request,
        f"WEAK: APOP offered on {', '.join(where)}; MD5 challenge-response is broken "
        "(CVE-2007-1558; Sasaki et al. 2008; Liu et al. ia.cr/2011/248) and needs cleartext secrets",
    )


TRAVERSAL_NAMES = [
    "../../etc/passwd",
    "/etc/passwd",
    "a/../b",
    "~root",
    "%2e%2e%2f",
    "user@../../x",
    "..",
    ".",
]


def _tree(root: Path) -> set[str]:
    return {str(Path(d, f).relative_to(root)) for d, _dirs, files in os.walk(root) for f in files + _dirs}


@case(
    "security/A15-path-traversal-usernames",
    SHOULD,
    "1939",
    "7 (Dovecot auth_username_chars; POPular '..' rule)",
    "Path-like user names (../../etc/passwd, /etc/passwd, a/../b, ~root, %2e%2e%2f, 1 KiB names) get "
    "the same replies as an unknown user, and nothing is created or read outside the mail root.",
    ref="security-probes/3.2/A15",
    probes=["A15"],
)
def test_path_like_usernames_are_unknown_users(pop, target, request):
    """Path-like user names get the unknown-user reply and touch nothing outside the mail root."""
    root = None
    seed = target.seed
    if seed.startswith("maildir:"):
        root = Path(seed.removeprefix("maildir:")).parent
    before = _tree(root) if root else set()

    def replies(name: bytes, password: bool = True):
        client = pop(login=False)
        try:
            client.send_raw(b"USER " + name + b"\r\n")
            user = client.read_response()
            if not user.ok or not password:
                return (user.ok, user.code, None)
            client.send_raw(b"PASS " + wrong_password().encode() + b"\r\n")
            reply = client.read_response()
            forgive(pop, target)
            return (True, None, (reply.ok, reply.code, reply.text))
        except SERVER_CLOSED:
            return ("closed",)

    reference = replies(unknown_user().encode())
    user_only = replies(unknown_user().encode(), password=False)
    for index, name in enumerate(TRAVERSAL_NAMES):
        # Against a third-party server only three names go on to PASS: each
        # failure costs seconds there (Dovecot's auth penalty).
        full = target.embedded or index < 3
        got = replies(name.encode(), password=full)
        wanted = reference if full else user_only
        expect(got == wanted, f"USER {name!r} answered like an unknown user", expected=wanted, actual=got)
    long_reply = replies(b"a" * 1024)
    expect(
        long_reply == reference or long_reply[0] in (False, "closed"),
        "USER with a 1 KiB name: like an unknown user, or -ERR (line too long)",
        expected=reference,
        actual=long_reply,
    )
    if root is not None:
        expect(
            _tree(root) == before,
            "the mail root is unchanged (white-box)",
            expected="no new entries",
            actual=_tree(root) ^ before,
        )
    else:
        observe(request, "white-box tree check skipped (mail root unknown)")


SASL_LIMIT = 8192


@case(
    "security/A16-sasl-oversized",
    MUST,
    "5034",
    "4 (Dovecot LOGIN_MAX_AUTH_BUF_SIZE; fuzz-sasl-authentication)",
    "An AUTH PLAIN response over 8 KiB, or an over-long initial response, gets -ERR (or a close) "
    "without crash, and never authenticates.",
    ref="security-probes/3.2/A16",
    probes=["A16"],
)
def test_oversized_sasl_response_is_refused(pop, target, capabilities):
    """An over-long SASL response gets -ERR or a close, never a login or a crash."""
    if "PLAIN" not in sasl_mechanisms(capabilities):
        unimplemented("SASL PLAIN is not advertised")
    client = pop(login=False)
    go = client.command("AUTH PLAIN", check=False)
    if go.continuation:
        client.send_raw(b"QUFB" * (SASL_LIMIT // 4 + 512) + b"\r\n")
        try:
            reply = client.read_response()
        except SERVER_CLOSED:
            reply = None
        expect(
            not _authenticated(reply),
            "a 10 KiB SASL response",
            expected="-ERR or close",
            actual=reply.raw if reply else b"",
        )
    other = pop(login=False)
    reply = reply_unless_closed(other, "AUTH PLAIN " + "QUFB" * 100)
    expect(
        not _authenticated(reply),
        "AUTH PLAIN with a 400-octet initial response",
        expected="-ERR",
        actual=reply.raw if reply else b"",
    )
