"""RFC 5034 "The POP3 SASL Authentication Mechanism": the AUTH command, its
challenges and cancellation, the initial response, one AUTH per session,
long responses, and the advertised mechanisms."""

from __future__ import annotations

from collections.abc import Callable

from pop3suite.client import ConnectionClosed, Pop3Client
from pop3suite.conformance.case import INFO, MUST, case, expect, expect_err, expect_ok, observe, unimplemented
from pop3suite.conformance.helpers import capa, capa_mode, sasl_mechanisms
from pop3suite.proto import Response, cram_md5_response, sasl_encode, sasl_plain_encode
from pop3suite.target.model import Target


def sasl_client(
    pop: Callable[..., Pop3Client],
    target: Target,
    capabilities: dict[str, str],
    mechanism: str | None = "PLAIN",
) -> tuple[Pop3Client, list[str]]:
    """A connection, not logged in, where SASL (and ``mechanism``) is advertised:
    the plain port first, then after STLS, then the implicit-TLS port."""
    home = capa_mode(target)  # where the capabilities fixture was read
    candidates = [home]
    if home == "plain" and "STLS" in capabilities:
        candidates.append("stls")
    if home == "plain" and target.pop3s is not None:
        candidates.append("implicit")
    for mode in candidates:
        client = pop(mode, login=False)
        mechanisms = sasl_mechanisms(capabilities if mode == home else capa(client))
        if mechanisms and (mechanism is None or mechanism in mechanisms):
            return client, mechanisms
        client.close()
    wanted = f"SASL {mechanism}" if mechanism else "SASL"
    unimplemented(f"{wanted} is not advertised (before or after TLS)")


def _auth(client: Pop3Client, line: str) -> Response:
    """Send an AUTH line; cancel any challenge so the next command is read as one."""
    response = client.command(line, check=False)
    if response.continuation:
        client.command("*", check=False)
    return response


@case(
    "rfc5034/4/unsupported-mechanism",
    MUST,
    "5034",
    "4",
    "The AUTH command initiates a [SASL] authentication exchange between the client and the server. "
    "[...] If the requested authentication mechanism is not supported, the server rejects the AUTH "
    "command with a negative response.",
    ref="rfc5034/4/1",
)
def test_unsupported_mechanism_refused(pop, target, capabilities):
    """``AUTH X-POP3SUITE-UNKNOWN`` gets ``-ERR`` at once, not a challenge."""
    client, _ = sasl_client(pop, target, capabilities, mechanism=None)
    response = _auth(client, "AUTH X-POP3SUITE-UNKNOWN")
    expect_err(response, "unsupported mechanism")


@case(
    "rfc5034/4/cancel",
    MUST,
    "5034",
    "4",
    "A client response consists of a line containing a string encoded as Base64. If the client wishes "
    'to cancel the authentication exchange, it issues a line with a single "*". If the server receives '
    "such a response, it MUST reject the AUTH command by sending an -ERR reply.",
    ref="rfc5034/4/2",
    probes=["A16"],
)
def test_star_cancels_and_session_stays_usable(pop, target, capabilities):
    """``AUTH PLAIN``, ``+ ``, ``*``: ``-ERR``; then AUTH PLAIN with good credentials still logs in."""
    client, _ = sasl_client(pop, target, capabilities)
    challenge = client.command("AUTH PLAIN", check=False)
    expect(
        challenge.continuation,
        "AUTH PLAIN without initial response",
        expected="+ (challenge)",
        actual=challenge.raw,
    )
    cancelled = client.command("*", check=False)
    expect_err(cancelled, "'*' cancels the exchange")
    again = client.auth_plain(target.user.user, target.user.password, check=False)
    expect_ok(again, "the session is still usable after the cancel")


@case(
    "rfc5034/4/bad-base64",
    MUST,
    "5034",
    "4",
    "initial-response: An optional initial client response [...] If present, this response MUST be "
    'encoded as Base64 [...], or consist only of the single character "=" [...] (a response the '
    "server cannot Base64-decode makes it reject the AUTH command with -ERR)",
    ref="rfc5034/4/3",
    probes=["A16"],
)
def test_undecodable_base64_refused(pop, target, capabilities):
    """``AUTH PLAIN !!!!`` and a ``%%%%`` response to the challenge both get ``-ERR``; login still works."""
    client, _ = sasl_client(pop, target, capabilities)
    initial = _auth(client, "AUTH PLAIN !!!!")
    expect_err(initial, "undecodable initial response")
    challenge = client.command("AUTH PLAIN", check=False)
    expect(
        challenge.continuation,
        "AUTH PLAIN without initial response",
        expected="+ (challenge)",
        actual=challenge.raw,
    )
    response = client.command("%%%%", check=False)
    if response.continuation:
        client.command("*", check=False)
    expect_err(response, "undecodable client response")
    login = client.auth_plain(target.user.user, target.user.password, check=False)
    expect_ok(login, "the session is still usable")


@case(
    "rfc5034/4/empty-initial-response",
    MUST,
    "5034",
    "4",
    "initial-response: [...] If present, this response MUST be encoded as Base64 [...], or consist "
    'only of the single character "=", which represents an empty initial response.',
    ref="rfc5034/4/4",
)
def test_equals_sign_is_an_empty_initial_response(pop, target, capabilities):
    """``AUTH PLAIN =`` is an (invalid, empty) PLAIN message: a final ``-ERR``, not a challenge."""
    client, _ = sasl_client(pop, target, capabilities)
    response = _auth(client, "AUTH PLAIN =")
    expect_err(response, "'=' is an empty initial response, not a missing one (PLAIN cannot accept it)")


@case(
    "rfc5034/4/empty-challenge",
    MUST,
    "5034",
    "4",
    "If the initial response argument is omitted and the chosen mechanism requires an initial client "
    "response, the server MUST proceed by issuing an empty challenge, as defined in Section 3 of "
    '[RFC4422]. In POP3, an empty server challenge is defined as a line with only a "+", followed by a '
    "single space. It MUST NOT contain any other data.",
    ref="rfc5034/4/4",
)
def test_missing_initial_response_gets_empty_challenge(pop, target, capabilities):
    """``AUTH PLAIN`` gets exactly ``+ CRLF``; the PLAIN message sent then logs in."""
    client, _ = sasl_client(pop, target, capabilities)
    challenge = client.command("AUTH PLAIN", check=False)
    expect(challenge.raw == b"+ \r\n", "empty challenge", expected=b"+ \r\n", actual=challenge.raw)
    if not challenge.continuation:
        return
    response = client.command(sasl_plain_encode(target.user.user, target.user.password), check=False)
    expect_ok(response, "PLAIN message after the empty challenge logs in")


@case(
    "rfc5034/4/one-auth-per-session",
    MUST,
    "5034",
    "4",
    "After an AUTH command has been successfully completed, no more AUTH commands may be issued in the "
    "same session. After a successful AUTH command completes, a server MUST reject any further AUTH "
    "commands with an -ERR reply. The AUTH command may only be given during the AUTHORIZATION state.",
    ref="rfc5034/4/5",
)
def test_auth_after_login_refused(pop, target, capabilities):
    """AUTH after a successful AUTH (or USER/PASS) gets ``-ERR``; the session stays in TRANSACTION."""
    client, _ = sasl_client(pop, target, capabilities)
    token = sasl_plain_encode(target.user.user, target.user.password)
    first = client.command(f"AUTH PLAIN {token}", check=False)
    expect_ok(first, "first AUTH PLAIN logs in")
    second = _auth(client, f"AUTH PLAIN {token}")
    expect_err(second, "second AUTH after a successful one")
    stat = client.command("STAT", check=False)
    expect(stat.ok, "still in TRANSACTION", expected="+OK to STAT", actual=stat.raw)
    client.quit()

    if "USER" in capabilities:
        other = pop()
        after_pass = _auth(other, f"AUTH PLAIN {token}")
        expect_err(after_pass, "AUTH after a USER/PASS login")


@case(
    "rfc5034/4/long-response",
    MUST,
    "5034",
    "4",
    "Note that these Base64 strings can be much longer than normal POP3 responses. Clients and servers "
    "MUST be able to handle the maximum encoded size of challenges and responses generated by their "
    "supported authentication mechanisms. This requirement is independent of any line length "
    "limitations the client or server may have in other parts of its protocol implementation.",
    ref="rfc5034/4/6",
)
def test_long_continuation_lines_handled(pop, target, capabilities):
    """The largest PLAIN message (1024 base64 octets) and 4 KB of base64 garbage get ``-ERR``, no close."""
    client, _ = sasl_client(pop, target, capabilities)
    # RFC 4616: authzid, authcid and passwd of up to 255 octets each.
    largest = sasl_plain_encode("b" * 255, "c" * 255, authzid="a" * 255)
    garbage = sasl_encode(b"x" * 3072)
    for name, line in (("the largest PLAIN message", largest), ("4096 octets of base64", garbage)):
        challenge = client.command("AUTH PLAIN", check=False)
        expect(
            challenge.continuation,
            "AUTH PLAIN without initial response",
            expected="+ (challenge)",
            actual=challenge.raw,
        )
        try:
            response = client.command(line, check=False)
        except ConnectionClosed:
            expect(
                False,
                f"{name} ({len(line)} octets) as a SASL response",
                expected="-ERR",
                actual="connection closed",
            )
            raise
        expect_err(response, f"{name} ({len(line)} octets) is refused")
    login = client.auth_plain(target.user.user, target.user.password, check=False)
    expect_ok(login, "the session is still usable")


@case(
    "rfc5034/6/plain-authenticates",
    MUST,
    "5034, 2449",
    "6; 2449 §6.3",
    "The argument to the SASL capability is a space separated list of SASL mechanisms which are supported.",
    ref="rfc5034/6/1",
)
def test_plain_authenticates_both_ways(pop, target, capabilities):
    """Advertised PLAIN logs in with an initial response and after an empty challenge."""
    client, _ = sasl_client(pop, target, capabilities)
    response = client.auth_plain(target.user.user, target.user.password, check=False)
    expect_ok(response, "AUTH PLAIN with initial response")
    client.quit()
    client, _ = sasl_client(pop, target, capabilities)
    response = client.auth_plain(target.user.user, target.user.password, check=False, initial=False)
    expect_ok(response, "AUTH PLAIN, then the PLAIN message after the challenge")


def _login_mechanism(client: Pop3Client, user: str, password: str) -> Response:
    """SASL LOGIN (draft-murchison-sasl-login): user name, then password."""
    response = client.command("AUTH LOGIN", check=False)
    for answer in (user, password):
        if not response.continuation:
            return response
        response = client.command(sasl_encode(answer), check=False)
    return response


def _cram_md5(client: Pop3Client, user: str, password: str) -> Response:
    """SASL CRAM-MD5 (RFC 2195): user name and HMAC-MD5 of the challenge."""
    response = client.command("AUTH CRAM-MD5", check=False)
    if not response.continuation:
        return response
    return client.command(cram_md5_response(response.text, user, password), check=False)


_KNOWN: dict[str, Callable[[Pop3Client, str, str], Response]] = {
    "LOGIN": _login_mechanism,
    "CRAM-MD5": _cram_md5,
}


@case(
    "rfc5034/6/other-mechanisms",
    INFO,
    "5034, 2449",
    "6; 2449 §6.3",
    "The argument to the SASL capability is a space separated list of SASL mechanisms which are supported.",
    ref="rfc5034/6/1",
)
def test_other_advertised_mechanisms(pop, target, capabilities, request):
    """Record whether each other mechanism works (LOGIN, CRAM-MD5) or at least starts an exchange."""
    _, mechanisms = sasl_client(pop, target, capabilities, mechanism=None)
    others = [m for m in mechanisms if m != "PLAIN"]
    if not others:
        unimplemented("no SASL mechanism besides PLAIN is advertised")
    for mechanism in others:
        client, _ = sasl_client(pop, target, capabilities, mechanism=mechanism)
        if mechanism in _KNOWN:
            response = _KNOWN[mechanism](client, target.user.user, target.user.password)
            observe(request, f"AUTH {mechanism}: {response.raw!r}")
            expect_ok(response, f"AUTH {mechanism} with the target credentials")
            client.quit()
            continue
        response = _auth(client, f"AUTH {mechanism}")
        observe(request, f"AUTH {mechanism}: {response.raw!r}")
        expect(
            response.continuation,
            f"AUTH {mechanism} starts an exchange",
            expected="+ (challenge)",
            actual=response.raw,
        )
        client.close()
