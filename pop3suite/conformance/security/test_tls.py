"""§3.1 TLS / STLS probes not already in the suite.

T1 (STLS injection) is rfc2595/4/no-plaintext-injection, T2 rfc2595/4/user-forgotten,
T3 rfc2595/4/stls-with-tls-active + rfc8314/stls-995, T4 rfc2595/4/stls-after-login,
T5 rfc2595/4/stls-implies-capa + rfc2595/4/stls-not-advertised-after-tls,
T7 rfc8314/3.1/no-plaintext-pop3, T8 rfc8314/4.1/no-tls-1.0-1.1 + tls-1.2 + tls-1.3,
T9 rfc8314/4.1/weak-suites-refused.  Here: T6 and T10.
"""

from __future__ import annotations

import contextlib
import ssl
import time

from pop3suite.conformance.case import MUST, SHOULD, case, expect, expect_err, observe, unimplemented
from pop3suite.conformance.helpers import cleartext_to_pop3s, sasl_mechanisms


@case(
    "security/T6-cleartext-policy",
    MUST,
    "8314",
    "3 (RFC 9325 §3.2; Dovecot auth_allow_cleartext)",
    "Where policy forbids cleartext logins (USER not in CAPA before TLS), USER/PASS and AUTH PLAIN "
    "without TLS fail even with the correct password, and the session stays in AUTHORIZATION.",
    ref="security-probes/3.1/T6",
    probes=["T6"],
)
def test_cleartext_login_refused_where_policy_forbids_it(pop, target, capabilities):
    """Where cleartext is forbidden, USER/PASS and AUTH PLAIN fail even with the right password."""
    if target.pop3 is None:
        unimplemented("no plain POP3 endpoint")
    if not capabilities:  # e.g. popa3d: no CAPA (and no TLS), so no announced cleartext policy
        unimplemented("CAPA is not implemented: the server announces no cleartext policy")
    if "USER" in capabilities:
        unimplemented("cleartext USER/PASS is allowed by this server's policy (USER is in CAPA before TLS)")
    client = pop("plain", login=False)
    user = client.command(f"USER {target.user.user}", check=False)
    reply = client.pass_(target.user.password, check=False) if user.ok else user
    expect_err(reply, "USER/PASS with the correct password without TLS")
    if "PLAIN" in sasl_mechanisms(capabilities):
        plain = client.auth_plain(target.user.user, target.user.password, check=False)
        expect_err(plain, "AUTH PLAIN with the correct password without TLS")
    stat = client.command("STAT", check=False)
    expect_err(stat, "STAT after the refused logins (still AUTHORIZATION)")


def _half_client_hello(target) -> bytes:
    """The first half of a real TLS ClientHello."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = target.ssl_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    return hello[: len(hello) // 2]


STALLED = 20


@case(
    "security/T10-stalled-tls-handshakes",
    SHOULD,
    "CVE-2014-3430",
    "T10",
    "With many sockets each sending half a ClientHello and stalling, the server keeps accepting and "
    "serving new clients, and reaps the stalled sockets with a handshake or login timeout.",
    hardening=True,
    ref="security-probes/3.1/T10",
    probes=["T10"],
)
def test_stalled_handshakes_do_not_block_service(pop, target, request):
    """Stalled half handshakes do not stop the server accepting and serving new clients."""
    if target.pop3s is None:
        unimplemented("no implicit-TLS endpoint (give --pop3s URL; pytest: --pop3-pop3s)")
    half = _half_client_hello(target)
    stalled = []
    try:
        for _ in range(STALLED):
            stalled.append(cleartext_to_pop3s(target))
            stalled[-1].send_raw(half)
        started = time.monotonic()
        client = pop("implicit", login=True, timeout=15)
        expect(
            client.noop().ok,
            "NOOP on a new implicit-TLS session during the stall",
            expected="+OK",
            actual="-ERR",
        )
        client.quit()
        took = time.monotonic() - started
        expect(
            took < 10,
            f"a new client is served while {STALLED} handshakes stall",
            expected="< 10 s",
            actual=f"{took:.1f} s",
        )
        limit = target.idle_timeout
        if limit is None or limit > 60:
            observe(request, "reaping not awaited (handshake timeout unknown or above 60 s)")
            return
        deadline = started + limit + 5
        open_left = sum(
            1 for client in stalled if not client.closed_within(max(0.1, deadline - time.monotonic()))
        )
        observe(request, f"{STALLED} stalled handshakes; new client served in {took:.1f} s")
        expect(
            open_left == 0,
            "stalled handshakes reaped by the handshake timeout",
            expected="0 open",
            actual=f"{open_left} open",
        )
    finally:
        for client in stalled:
            client.close()
