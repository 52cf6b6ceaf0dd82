"""Credentials on the wire: the APOP digest (RFC 1939 §7), SASL PLAIN
(RFC 4616, used by AUTH in RFC 5034), the base64 of every SASL client
response, and CRAM-MD5 (RFC 2195).

Client and server compute them here, so they cannot disagree about the
encoding (UTF-8 before hashing or base64).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from .errors import MalformedResponse

#: The APOP timestamp: a msg-id ``<...@...>`` in the greeting (RFC 1939 §7).
_TIMESTAMP = re.compile(r"<[^<>]*@[^<>]*>")


def greeting_timestamp(greeting_text: str) -> str | None:
    """The ``<...@...>`` timestamp in a greeting's text, or None."""
    match = _TIMESTAMP.search(greeting_text)
    return match[0] if match else None


def apop_digest(timestamp: str, secret: str) -> str:
    """The APOP digest: lower-case hex MD5 of ``timestamp + secret``."""
    return hashlib.md5((timestamp + secret).encode("utf-8")).hexdigest()


def sasl_plain_encode(authcid: str, password: str, authzid: str = "") -> str:
    """The base64 PLAIN response ``authzid NUL authcid NUL password``."""
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode("ascii")


def sasl_plain_decode(payload: bytes | str) -> tuple[str, str, bytes]:
    """A base64 PLAIN response -> ``(authzid, authcid, password bytes)``.

    Raises:
        MalformedResponse: not base64, not three NUL-separated parts, an
            empty authcid or password, or an identity that is not UTF-8.
    """
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedResponse("SASL PLAIN: invalid base64") from None
    return sasl_plain_split(data)


def sasl_plain_split(data: bytes) -> tuple[str, str, bytes]:
    """Decoded PLAIN bytes -> ``(authzid, authcid, password bytes)``; the
    checks of :func:`sasl_plain_decode` after base64 (which a server does
    first for every mechanism)."""
    parts = data.split(b"\0")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise MalformedResponse("SASL PLAIN: expected authzid NUL authcid NUL password")
    try:
        return parts[0].decode("utf-8"), parts[1].decode("utf-8"), parts[2]
    except UnicodeDecodeError:
        raise MalformedResponse("SASL PLAIN: identity is not UTF-8") from None


def sasl_encode(data: bytes | str) -> str:
    """A SASL client response line: the base64 of ``data`` (UTF-8 if text),
    as RFC 5034 §4 sends every response (LOGIN's user name and password,
    test payloads)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def cram_md5_response(challenge: str, user: str, password: str) -> str:
    """The CRAM-MD5 answer (RFC 2195) to a server's base64 ``challenge``:
    base64 of ``user SP hex(HMAC-MD5(password, challenge))``.

    The challenge is decoded leniently (characters outside the base64
    alphabet are skipped), as a client that only wants to log in does.

    Raises:
        MalformedResponse: the challenge is not base64 at all.
    """
    try:
        decoded = base64.b64decode(challenge)
    except (binascii.Error, ValueError):
        raise MalformedResponse("CRAM-MD5: the challenge is not base64") from None
    digest = hmac.new(password.encode("utf-8"), decoded, hashlib.md5).hexdigest()
    return sasl_encode(f"{user} {digest}")
