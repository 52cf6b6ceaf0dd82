"""RFC 8314 "Cleartext Considered Obsolete": implicit TLS on the POP3S port
(TLS first, then the greeting), TLS versions and cipher suites (RFC 8996,
RFC 9325), TLS closure, STLS on the implicit-TLS port.

The version and cipher probes use their own client contexts without
certificate checks: they ask what the server agrees to, not whether its
certificate is good (the other cases check that, with the target's context).
"""

from __future__ import annotations

import ssl
import warnings

import pytest

from pop3suite.client import ConnectionClosed, Pop3Client
from pop3suite.conformance.case import (
    INFO,
    MUST,
    SHOULD,
    case,
    expect,
    expect_equal,
    expect_err,
    observe,
    unimplemented,
)
from pop3suite.conformance.helpers import cleartext_to_pop3s
from pop3suite.proto import capability_arguments
from pop3suite.target.model import Target

#: The legacy_version field of a ClientHello (RFC 8446 §4.1.2) per version.
_HELLO_VERSION = {"TLSv1": b"\x03\x01", "TLSv1_1": b"\x03\x02"}
#: Cipher suites RFC 9325 §4.1 rules out: NULL, anonymous, RC4, 3DES, export grade.
_WEAK_SUITES = "eNULL:aNULL:RC4:3DES:EXPORT:@SECLEVEL=0"


#: How a server refuses a handshake: a TLS alert, a reset or close, or silence.
#: Not a refused TCP connection or a name that does not resolve: then the
#: target is gone, and the case is ERROR (pop3suite.conformance.case.is_suite_error).
_HANDSHAKE_REFUSED = (
    ssl.SSLError,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    TimeoutError,
)


def _probe_context(
    low: ssl.TLSVersion, high: ssl.TLSVersion, ciphers: str = "DEFAULT:@SECLEVEL=0"
) -> ssl.SSLContext:
    """A client context limited to ``low``..``high`` and ``ciphers``, no certificate checks."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # TLS 1.0/1.1 are deprecated: offering them is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = low
        context.maximum_version = high
    context.set_ciphers(ciphers)
    return context


def _client_hello(context: ssl.SSLContext) -> bytes:
    """The first flight this context sends, or b"" if OpenSSL refuses to build one."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="pop3suite.invalid")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    except ssl.SSLError:
        return b""
    return outgoing.read()


def _offers(context: ssl.SSLContext, version: str) -> bool:
    """Whether the ClientHello really is a TLS 1.0 / 1.1 one (record type 22,
    handshake type 1, legacy_version after the 5+4 octets of headers)."""
    hello = _client_hello(context)
    return (
        len(hello) > 11 and hello[0] == 0x16 and hello[5] == 0x01 and hello[9:11] == _HELLO_VERSION[version]
    )


def _open_tls(target: Target, capabilities: dict[str, str], mode: str, context: ssl.SSLContext) -> Pop3Client:
    """A client after the handshake, no POP3 read inside TLS yet: at once on
    the POP3S port, after ``STLS`` on the plain one.  Raises ``OSError``
    (``ssl.SSLError`` included) if refused."""
    if mode == "implicit":
        if target.pop3s is None:
            unimplemented("no implicit-TLS endpoint (give --pop3s URL; pytest: --pop3-pop3s)")
    else:
        if target.pop3 is None:
            unimplemented("no plain POP3 endpoint")
        if "STLS" not in capabilities:
            unimplemented("STLS is not advertised in CAPA")
    client = target.client("implicit" if mode == "implicit" else "plain", timeout=10, ssl_context=context)
    try:
        client.connect_without_greeting()
        if mode == "stls":
            try:
                client.read_exact_line()  # the greeting: not judged here
                client.send_raw(b"STLS\r\n")
                reply = client.read_exact_line()
            except ConnectionClosed:
                reply = b""
            if not reply.startswith(b"+OK"):
                unimplemented(f"STLS refused: {reply!r}")
            client.handshake()
        return client
    except BaseException:
        client.close()
        raise


def _negotiated(client: Pop3Client) -> str:
    return f"{client.tls_version()} with {client.tls_cipher() or '?'}"


def _pop3_inside(client: Pop3Client, mode: str) -> bytes:
    """The first POP3 line inside TLS: the greeting (implicit) or the reply to CAPA (STLS)."""
    if mode == "stls":
        client.send_raw(b"CAPA\r\n")
    return client.read_line()


@case(
    "rfc8314/3.1/tls-first",
    MUST,
    "8314",
    "3.1",
    'When a TCP connection is established for the "pop3s" service (default port 995), a TLS handshake '
    "begins immediately. [...] Once the TLS session is established, POP3 [RFC1939] protocol messages are "
    "exchanged as TLS application data for the remainder of the TCP connection. After the server sends "
    "an +OK greeting, the server and client MUST enter the AUTHORIZATION state, even if a client "
    "certificate was supplied during the TLS handshake.",
    ref="rfc8314/3.1/1",
)
def test_greeting_comes_inside_tls(pop, target):
    """On the POP3S port nothing comes in clear; the ``+OK`` greeting comes inside TLS, in AUTHORIZATION."""
    if target.pop3s is None:
        unimplemented("no implicit-TLS endpoint (give --pop3s URL; pytest: --pop3-pop3s)")
    with cleartext_to_pop3s(target) as raw:
        try:
            early = raw.receive_within(0.5)
        except ConnectionClosed:
            early = b""
    expect(
        not early.startswith(b"+OK"),
        "no plaintext greeting before the TLS handshake",
        expected="silence",
        actual=early,
    )
    client = pop("implicit", login=False)
    expect(client.tls_active, "TLS before the greeting", expected="TLS", actual="cleartext")
    expect(
        client.greeting is not None and client.greeting.ok,
        "greeting inside TLS",
        expected="+OK ...",
        actual=client.greeting,
    )
    stat = client.command("STAT", check=False)
    expect(not stat.ok, "AUTHORIZATION state after the greeting", expected="-ERR to STAT", actual=stat.raw)
    client.login(target.user.user, target.user.password)


@case(
    "rfc8314/3.1/no-plaintext-pop3",
    MUST,
    "8314",
    "3.1",
    'When a TCP connection is established for the "pop3s" service (default port 995), a TLS handshake '
    "begins immediately. (security-probes T7: plaintext sent there gets a TLS alert or a close, never a "
    "plaintext +OK.)",
    ref="rfc8314/3.1/1",
    probes=["T7"],
)
def test_plaintext_on_implicit_port_never_answered(target):
    """``USER x`` sent in clear to the POP3S port never gets ``+OK`` (a close, an alert or garbage)."""
    if target.pop3s is None:
        unimplemented("no implicit-TLS endpoint (give --pop3s URL; pytest: --pop3-pop3s)")
    with cleartext_to_pop3s(target) as raw:
        raw.send_raw(b"USER x\r\n")
        data = raw.receive_for(2.0)
    expect(
        b"+OK" not in data,
        "plaintext POP3 on the implicit-TLS port",
        expected="close, TLS alert or nothing",
        actual=data,
    )


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
@pytest.mark.parametrize("mode", ["implicit", "stls"])
@case(
    "rfc8314/4.1/no-tls-1.0-1.1",
    MUST,
    "8314, 8996",
    "4.1; 8996 §4, §5",
    "(RFC 8996 §4) TLS 1.0 MUST NOT be used. Negotiation of TLS 1.0 from any version of TLS MUST NOT be "
    "permitted. [...] (§5) TLS 1.1 MUST NOT be used. Negotiation of TLS 1.1 from any version of TLS "
    "MUST NOT be permitted.",
    ref="rfc8314/4.1/1",
    probes=["T8"],
)
def test_tls_1_0_and_1_1_refused(target, capabilities, mode, version):
    """A client that offers only TLS 1.0 (or 1.1) gets no TLS session."""
    tls_version = getattr(ssl.TLSVersion, version)
    context = _probe_context(tls_version, tls_version)
    if not _offers(context, version):
        unimplemented("local OpenSSL cannot offer TLS 1.0/1.1")
    try:
        tls = _open_tls(target, capabilities, mode, context)
    except _HANDSHAKE_REFUSED:
        return  # refused: protocol_version alert, reset, close or silence
    with tls:
        negotiated = _negotiated(tls)
    expect(False, f"a {version}-only handshake must fail", expected="handshake refused", actual=negotiated)


@pytest.mark.parametrize("mode", ["implicit", "stls"])
@case(
    "rfc8314/4.1/tls-1.2",
    MUST,
    "8314, 9325",
    "4.1; 9325 §3.1.1",
    "(RFC 9325 §3.1.1) Implementations MUST support TLS 1.2 [RFC5246].",
    ref="rfc8314/4.1/1",
    probes=["T8"],
)
def test_tls_1_2_accepted(target, capabilities, mode):
    """A TLS 1.2-only client completes the handshake and talks POP3 inside."""
    context = target.ssl_context()
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        tls = _open_tls(target, capabilities, mode, context)
    except _HANDSHAKE_REFUSED as error:
        expect(False, "TLS 1.2 handshake", expected="TLSv1.2", actual=f"{type(error).__name__}: {error}")
        raise
    with tls:
        expect_equal("negotiated version", expected="TLSv1.2", actual=tls.tls_version())
        line = _pop3_inside(tls, mode)
    expect(line.startswith(b"+OK"), "POP3 inside TLS 1.2", expected="+OK ...", actual=line)


@pytest.mark.parametrize("mode", ["implicit", "stls"])
@case(
    "rfc8314/4.1/tls-1.3",
    SHOULD,
    "8314, 9325",
    "4.1; 9325 §3.1.1",
    "(RFC 9325 §3.1.1) Implementations SHOULD support TLS 1.3 [RFC8446] and, if implemented, MUST prefer "
    "to negotiate TLS 1.3 over earlier versions of TLS.",
    ref="rfc8314/4.1/1",
    probes=["T8"],
)
def test_tls_1_3_accepted(target, capabilities, mode):
    """A TLS 1.3-only client completes the handshake; a client offering 1.2 and 1.3 gets 1.3."""
    context = target.ssl_context()
    if not ssl.HAS_TLSv1_3:
        unimplemented("local OpenSSL has no TLS 1.3")
    context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3
    try:
        tls = _open_tls(target, capabilities, mode, context)
    except _HANDSHAKE_REFUSED as error:
        expect(False, "TLS 1.3 handshake", expected="TLSv1.3", actual=f"{type(error).__name__}: {error}")
        raise
    with tls:
        expect_equal("negotiated version", expected="TLSv1.3", actual=tls.tls_version())
        line = _pop3_inside(tls, mode)
    expect(line.startswith(b"+OK"), "POP3 inside TLS 1.3", expected="+OK ...", actual=line)
    context = target.ssl_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with _open_tls(target, capabilities, mode, context) as tls:
        expect_equal("TLS 1.3 preferred over TLS 1.2", expected="TLSv1.3", actual=tls.tls_version())


@pytest.mark.parametrize("mode", ["implicit", "stls"])
@case(
    "rfc8314/4.1/weak-suites-refused",
    SHOULD,
    "8314, 9325",
    "4.1; 9325 §4.1",
    "(RFC 9325 §4.1) Implementations MUST NOT negotiate the cipher suites with NULL encryption. [...] "
    "Implementations MUST NOT negotiate RC4 cipher suites. [...] Implementations SHOULD NOT negotiate "
    "cipher suites that use algorithms offering less than 128 bits of security. (security-probes T9: "
    "a client offering only NULL, anonymous, export, RC4 or 3DES suites gets no session.)",
    ref="rfc8314/4.1/1",
    probes=["T9"],
)
def test_weak_cipher_suites_refused(target, capabilities, mode):
    """A TLS 1.2 client offering only NULL, anonymous, RC4, 3DES or export suites gets no session."""
    try:
        context = _probe_context(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, _WEAK_SUITES)
    except ssl.SSLError:
        unimplemented("local OpenSSL offers none of the NULL/anon/RC4/3DES/export suites")
    try:
        tls = _open_tls(target, capabilities, mode, context)
    except _HANDSHAKE_REFUSED:
        return  # refused
    with tls:
        negotiated = _negotiated(tls)
    expect(
        False,
        "only weak suites offered: the handshake must fail",
        expected="handshake refused",
        actual=negotiated,
    )


def _close_after_quit(target: Target, login: bool) -> str:
    """Connect to POP3S, QUIT, and say how the server ended the TLS session."""
    assert target.pop3s is not None
    context = target.ssl_context()
    context.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # a missing close_notify must show
    with target.client("implicit", timeout=5, ssl_context=context) as client:
        if login:
            client.command(f"USER {target.user.user}", check=False)
            client.command(f"PASS {target.user.password}", check=False)
        client.command("QUIT", check=False)
        try:
            ending = client.tls_ending(5)
        except OSError as error:
            return f"{type(error).__name__}: {error}"
    return {
        "close_notify": "close_notify, then TCP close",
        "no close_notify": "TCP close without close_notify",
        "data": "data after the QUIT reply",
        "open": "connection left open 5 s after QUIT",
    }[ending]


@case(
    "rfc8314/3.4/close-notify",
    INFO,
    "8314",
    "3.4",
    "When a client or server wishes to close the connection, it SHOULD initiate the exchange of TLS close "
    "alerts before TCP connection termination.",
    ref="rfc8314/3.4/1",
)
def test_close_notify_after_quit(target, request):
    """Record whether the server sends a TLS close_notify before closing after QUIT (both states)."""
    if target.pop3s is None:
        unimplemented("no implicit-TLS endpoint (give --pop3s URL; pytest: --pop3-pop3s)")
    for login, state in ((False, "AUTHORIZATION"), (True, "TRANSACTION")):
        outcome = _close_after_quit(target, login)
        observe(request, f"QUIT in {state}: {outcome}")
        expect(
            outcome.startswith("close_notify"),
            f"QUIT in {state}",
            expected="close_notify, then TCP close",
            actual=outcome,
        )


@case(
    "rfc8314/stls-995",
    INFO,
    "8314, 2595",
    "3.1; 2595 §4",
    'The capability name "STLS" indicates this command is present and permitted in the current state. '
    "[...] A -ERR response MAY result if a security layer is already active.",
    ref="rfc8314/stls-995",
    probes=["T3"],
)
def test_stls_on_implicit_port(pop, request):
    """On the POP3S port STLS is not advertised and is answered ``-ERR``."""
    client = pop("implicit", login=False)
    body = client.multiline("CAPA", check=False)
    tags = set(capability_arguments(body.lines()))
    observe(request, f"STLS {'advertised' if 'STLS' in tags else 'not advertised'} on the POP3S port")
    expect("STLS" not in tags, "STLS advertised inside implicit TLS", expected="no STLS", actual=sorted(tags))
    response = client.command("STLS", check=False)
    observe(request, f"STLS there: {response.raw!r}")
    expect_err(response, "STLS inside implicit TLS")
