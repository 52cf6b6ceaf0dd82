"""RFC 2595 §4 "POP3 STARTTLS extension" and §2.3 "Clear-text password
requirements": STLS and CAPA, STLS only in AUTHORIZATION, nothing carried
over from cleartext (USER, pipelined commands: CVE-2011-0411), STLS with TLS
active, CAPA after the upgrade."""

from __future__ import annotations

import ssl

import pytest

from pop3suite.client import ConnectionClosed, ErrResponse, Pop3Client
from pop3suite.conformance.case import (
    INFO,
    MAY,
    MUST,
    SHOULD,
    case,
    expect,
    expect_err,
    observe,
    unimplemented,
)
from pop3suite.conformance.helpers import SERVER_CLOSED, capa

#: How long to wait for bytes the server should not send (security-probes T1).
QUIET_SECONDS = 1.0


def _capability_tags(client: Pop3Client) -> set[str] | None:
    caps = capa(client)
    return None if caps is None else set(caps)


@case(
    "rfc2595/4/stls-implies-capa",
    MUST,
    "2595",
    "4",
    "The POP3 STARTTLS extension adds the STLS command to POP3 servers. If this is implemented, the "
    "POP3 extension mechanism [POP3EXT] MUST also be implemented to avoid the need for client probing "
    'of multiple commands. The capability name "STLS" indicates this command is present and permitted '
    "in the current state.",
    ref="rfc2595/4/1",
)
def test_stls_implies_capa_and_is_advertised(pop, target, capabilities):
    """A server that answers STLS with ``+OK`` implements CAPA and lists STLS before login."""
    if target.pop3 is None:
        unimplemented("no plain POP3 endpoint")
    client = pop("plain", login=False)
    response = client.command("STLS", check=False)
    client.close()  # no handshake: only whether STLS is implemented matters here
    if not response.ok:
        unimplemented("STLS is answered -ERR: not implemented")
    expect(
        bool(capabilities),
        "CAPA implemented by a server with STLS",
        expected="+OK to CAPA",
        actual="-ERR to CAPA",
    )
    expect(
        "STLS" in capabilities,
        "STLS advertised before login",
        expected="STLS in CAPA",
        actual=sorted(capabilities),
    )


@case(
    "rfc2595/4/stls-after-login",
    MUST,
    "2595",
    "4",
    "The STLS command is only permitted in AUTHORIZATION state and the server remains in AUTHORIZATION "
    "state, even if client credentials are supplied during the TLS negotiation.",
    ref="rfc2595/4/2",
    probes=["T4"],
)
def test_stls_after_login_refused(pop, capabilities, need):
    """STLS in TRANSACTION gets ``-ERR``; the session goes on in cleartext."""
    need("STLS")
    if "USER" not in capabilities:
        unimplemented("no cleartext USER/PASS: TRANSACTION cannot be reached without TLS")
    client = pop("plain")
    response = client.command("STLS", check=False)
    expect_err(response, "STLS after login must be refused")
    noop = client.command("NOOP", check=False)
    expect(noop.ok, "the cleartext session is still usable", expected="+OK to NOOP", actual=noop.raw)


@case(
    "rfc2595/4/user-forgotten",
    MUST,
    "2595",
    "4",
    "A TLS negotiation begins immediately after the CRLF at the end of the +OK response from the "
    "server. [...] The STLS command is only permitted in AUTHORIZATION state and the server remains in "
    "AUTHORIZATION state [...] (security-probes T2: nothing said in cleartext, such as a USER name, "
    "carries over into the TLS session.)",
    ref="rfc2595/4/3",
    probes=["T2"],
)
def test_user_before_stls_is_forgotten(pop, target, need):
    """``USER`` before STLS is forgotten: ``PASS`` inside TLS gets ``-ERR`` and logs nobody in."""
    need("STLS")
    client = pop("plain", login=False)
    if not client.command(f"USER {target.user.user}", check=False).ok:
        unimplemented("USER is refused before TLS; nothing to carry over")
    client.ssl_context = target.ssl_context()  # a plain client has none
    try:
        client.stls()
    except ErrResponse as error:  # GNU Mailutils: STLS only before USER
        unimplemented(f"STLS after USER is refused ({error.response.raw!r}); nothing to carry over")
    response = client.pass_(target.user.password, check=False)
    expect_err(response, "PASS without a USER given inside TLS")
    stat = client.command("STAT", check=False)
    expect(not stat.ok, "still in AUTHORIZATION (nobody logged in)", expected="-ERR to STAT", actual=stat.raw)
    client.login(target.user.user, target.user.password)


@pytest.mark.parametrize("mode", ["stls", "implicit"])
@case(
    "rfc2595/4/stls-with-tls-active",
    MAY,
    "2595",
    "4",
    "A -ERR response MAY result if a security layer is already active.",
    ref="rfc2595/4/4",
    probes=["T3"],
)
def test_stls_with_tls_active_refused(pop, target, mode, request):
    """STLS after an upgrade, or on the implicit-TLS port, gets ``-ERR``; the session stays usable."""
    client = pop(mode, login=False)
    response = client.command("STLS", check=False)
    observe(request, f"STLS with TLS active: {response.raw!r}")
    expect_err(response, "STLS with TLS already active")
    client.login(target.user.user, target.user.password)


@case(
    "rfc2595/4/stls-not-advertised-after-tls",
    SHOULD,
    "2595",
    "4",
    "Once TLS has been started, the client MUST discard cached information about server capabilities "
    "and SHOULD re-issue the CAPA command. [...] The server MAY advertise different capabilities after "
    'STLS. [...] The capability name "STLS" indicates this command is present and permitted in the '
    "current state.",
    ref="rfc2595/4/5",
    probes=["T5"],
)
def test_stls_not_advertised_after_upgrade(pop):
    """CAPA inside TLS (after STLS) no longer lists STLS."""
    client = pop("stls", login=False)
    tags = _capability_tags(client)
    expect(tags is not None, "CAPA after STLS", expected="+OK and a capability list", actual="-ERR")
    expect(
        "STLS" not in (tags or ()),
        "STLS is no longer permitted, so not advertised",
        expected="no STLS",
        actual=tags,
    )


@case(
    "rfc2595/4/no-plaintext-injection",
    MUST,
    "2595",
    "4 (CVE-2011-0411)",
    "A TLS negotiation begins immediately after the CRLF at the end of the +OK response from the "
    "server. [...] Once a client issues a STLS command, it MUST NOT issue further commands until a "
    "server response is seen and the TLS negotiation is complete. (security-probes T1: plaintext "
    "pipelined after STLS is discarded or the connection closed; it is never executed inside TLS.)",
    ref="rfc2595/4/6",
    probes=["T1"],
)
def test_plaintext_pipelined_after_stls_is_not_executed(pop, target, need):
    """``STLS\\r\\nCAPA\\r\\n`` in one write: the injected CAPA is never answered, in clear or in TLS."""
    need("STLS")
    client = pop("plain", login=False)
    client.send_raw(b"STLS\r\nCAPA\r\n")
    try:
        line = client.read_exact_line()  # not one byte more: the TLS handshake starts after its CRLF
    except ConnectionClosed:
        unimplemented("STLS was not accepted: the server closed the connection")
    if not line.startswith(b"+OK"):
        unimplemented(f"STLS was not accepted: {line!r}")
    try:
        early = client.receive_within(0.3)
    except SERVER_CLOSED:
        return  # the server closed instead of negotiating: the injected CAPA was not run
    expect(not early, "nothing in clear after the STLS +OK line", expected="the TLS handshake", actual=early)

    try:
        client.handshake(target.ssl_context())
    except ssl.SSLCertVerificationError:
        raise  # our trust settings, not the server's answer: no verdict
    except (ssl.SSLError, ConnectionError, TimeoutError):
        return  # the server refused the handshake: the injected bytes were not run
    try:
        injected = client.receive_within(QUIET_SECONDS)  # b"" on silence: the injected CAPA was discarded
    except ConnectionClosed:
        injected = b""  # the TLS session ended cleanly: nothing injected; the CAPA below meets the close
    except SERVER_CLOSED:
        return  # reset or TLS EOF: also acceptable
    expect(
        not injected,
        "the pipelined CAPA must not be answered inside TLS",
        expected="no data",
        actual=injected,
    )
    tags = _capability_tags(client)
    expect(tags is not None, "CAPA sent inside TLS is answered", expected="+OK", actual="-ERR")


@case(
    "rfc2595/2.3/cleartext-login-offered",
    INFO,
    "2595",
    "2.3",
    "Clients and servers implementing STARTTLS MUST be configurable to refuse all clear-text login "
    "commands or mechanisms (including both standards-track and nonstandard mechanisms) unless an "
    "encryption layer of adequate strength is active.",
    ref="rfc2595/2.3/1",
)
def test_cleartext_login_before_tls_recorded(pop, target, capabilities, need, request):
    """Record whether USER is advertised and USER/PASS accepted before TLS (refusing is the safe setting)."""
    need("STLS")
    client = pop("plain", login=False)
    user = client.command(f"USER {target.user.user}", check=False)
    accepted = user.ok and client.pass_(target.user.password, check=False).ok
    observe(
        request,
        f"USER {'advertised' if 'USER' in capabilities else 'not advertised'} before TLS, "
        f"cleartext USER/PASS {'accepted' if accepted else 'refused'}",
    )
    expect(
        "USER" in capabilities or not accepted,
        "USER/PASS works before TLS although USER is not advertised",
        expected="consistent CAPA",
        actual="accepted",
    )
    expect(
        "USER" not in capabilities and not accepted,
        "cleartext USER/PASS offered before TLS",
        expected="USER not advertised and refused until STLS",
        actual=f"USER {'advertised' if 'USER' in capabilities else 'not advertised'}, "
        f"login {'accepted' if accepted else 'refused'}",
    )
