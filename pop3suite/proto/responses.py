"""Status lines: formatting on the server side, parsing on the client side.

A POP3 status line is ``+OK`` or ``-ERR``, optionally a space, an RFC 2449 §8
response code in brackets, and free text, ending in CRLF.  RFC 5034 adds the
SASL continuation ``+ <base64>``.  Judging a server means judging these bytes,
so the parser is strict and says exactly what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import MalformedResponse, Pop3Error
from .limits import CRLF, MAX_RESPONSE_LINE

# RFC 2449 §8: resp-code = "[" resp-level *("/" resp-level) "]";
# resp-level = 1*rchar; rchar = %x21-2E / %x30-5C / %x5E-7F.
_RESP_CODE = re.compile(rb"\[([\x21-\x2e\x30-\x5c\x5e-\x7f]+(?:/[\x21-\x2e\x30-\x5c\x5e-\x7f]+)*)\]")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Response:
    """One parsed status line.

    Attributes:
        ok: True for ``+OK``, False for ``-ERR``.
        code: the response code split on ``/`` (``("SYS", "TEMP")``), or None.
        text: the text after the status and code, decoded leniently.
        raw: the line exactly as received, CRLF included.
        continuation: True for a SASL ``+ `` challenge (then ``text`` is the
            base64 payload).
    """

    ok: bool
    code: tuple[str, ...] | None
    text: str
    raw: bytes
    continuation: bool = False

    @property
    def code_str(self) -> str | None:
        return "/".join(self.code) if self.code else None


def _clean(text: str) -> str:
    """Drop control characters so no reply can carry CR/LF (response splitting)."""
    return _UNSAFE.sub("?", text)


def _fit(line: bytes) -> bytes:
    """Truncate to the RFC 1939 §3 limit, keeping the CRLF and never cutting
    a UTF-8 character in half."""
    if len(line) + 2 > MAX_RESPONSE_LINE:
        line = line[: MAX_RESPONSE_LINE - 2].decode("utf-8", "ignore").encode("utf-8")
    return line + CRLF


def _status(indicator: str, text: str, code: str | None) -> bytes:
    parts = [indicator]
    if code:
        if not _RESP_CODE.fullmatch(f"[{code}]".encode("ascii", "replace")):
            raise ValueError(f"not an RFC 2449 response code: {code!r}")
        parts.append(f"[{code}]")
    if text:
        text = _clean(text)
        if not code and text.startswith("["):
            # Text must not be mistaken for a response code by the client.
            text = "(" + text[1:]
        parts.append(text)
    return _fit(" ".join(parts).encode("utf-8", "replace"))


def ok(text: str = "", code: str | None = None) -> bytes:
    """Format a positive status line (``+OK [CODE] text``)."""
    return _status("+OK", text, code)


def err(text: str, code: str | None = None) -> bytes:
    """Format a negative status line (``-ERR [CODE] text``)."""
    return _status("-ERR", text, code)


def error_line(error: Pop3Error) -> bytes:
    """The ``-ERR`` line for a :class:`Pop3Error`."""
    return err(error.text, error.code)


def continuation(payload: bytes = b"") -> bytes:
    """A SASL server challenge (RFC 5034 §4): ``+ `` and base64 data."""
    return b"+ " + payload + CRLF


def parse_status_line(line: bytes) -> Response:
    """Parse one status line as a client receives it.

    Args:
        line: the bytes up to and including the line ending.

    Returns:
        The parsed :class:`Response`.

    Raises:
        MalformedResponse: the line is not ``+OK``/``-ERR``/``+ ``; the
            message says what was expected and what arrived.
    """
    body = line[:-2] if line.endswith(CRLF) else line.rstrip(b"\r\n")
    if body.startswith(b"+OK"):
        is_ok, rest = True, body[3:]
    elif body.startswith(b"-ERR"):
        is_ok, rest = False, body[4:]
    elif body == b"+" or body.startswith(b"+ "):
        return Response(True, None, body[2:].decode("ascii", "replace"), line, continuation=True)
    else:
        raise MalformedResponse(f"expected '+OK' or '-ERR' at line start, got {body[:40]!r}")
    if rest and not rest.startswith(b" "):
        raise MalformedResponse(f"status indicator not followed by SP or CRLF: {body[:40]!r}")
    rest = rest[1:]
    code = None
    match = _RESP_CODE.match(rest)
    if match:
        code = tuple(match.group(1).decode("ascii").split("/"))
        rest = rest[match.end() :].lstrip(b" ")
    return Response(is_ok, code, rest.decode("utf-8", "replace"), line)
