"""Drop and scan listings: STAT, LIST and UIDL replies (RFC 1939 §5, §7).

One parser for the client, the load users, the interop runner and the
conformance cases, so a reply is read the same way everywhere.  Strict where
RFC 1939 is ("a single space", decimal numbers, message numbers from 1) and
lenient where it allows more ("+OK 2 320 and more text" is a valid STAT).
The functions take the text after ``+OK`` (``Response.text``) or one body
line, as ``str`` or ``bytes``, and raise :class:`MalformedResponse` on
anything else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import MalformedResponse
from .limits import CRLF

#: ``n size`` of STAT / LIST (RFC 1939 §5: drop listing and scan listing).
_SCAN = re.compile(r"([0-9]+) ([0-9]+)(?: .*)?")
#: ``n uid`` of UIDL; the unique-id is 1..70 characters 0x21..0x7E (RFC 1939 §7).
_UID = re.compile(r"([0-9]+) ([\x21-\x7e]{1,70})")


def _text(value: str | bytes) -> str:
    """The text without its CRLF, if it has one: only that one, so a CR or
    LF left before it (``1 uid`` CR CR LF: a unique-id read from a file
    with its line end) stays in and fails the grammar."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.removesuffix("\r\n")


def parse_drop_listing(text: str | bytes) -> tuple[int, int]:
    """``+OK n size`` of STAT -> ``(messages, octets)``."""
    match = _SCAN.fullmatch(_text(text))
    if match is None:
        raise MalformedResponse(f"not a drop listing 'n size': {_text(text)!r}")
    return int(match[1]), int(match[2])


def parse_scan_line(line: str | bytes) -> tuple[int, int]:
    """One ``n size`` line (LIST body or ``+OK n size`` of ``LIST n``)."""
    match = _SCAN.fullmatch(_text(line))
    if match is None or match[1].startswith("0"):
        raise MalformedResponse(f"not a scan listing 'n size': {_text(line)!r}")
    return int(match[1]), int(match[2])


def parse_uid_line(line: str | bytes) -> tuple[int, str]:
    """One ``n uid`` line (UIDL body or ``+OK n uid`` of ``UIDL n``)."""
    match = _UID.fullmatch(_text(line))
    if match is None or match[1].startswith("0"):
        raise MalformedResponse(f"not a unique-id listing 'n uid': {_text(line)!r}")
    return int(match[1]), match[2]


def listing_reply(line: bytes) -> str:
    """The listing in a one-line ``+OK`` reply to STAT, ``LIST n`` or
    ``UIDL n``, judged as RFC 1939 §5 and §7 write it: ``+OK``, a single
    space, the listing, CRLF.  Stricter than :func:`parse_status_line`
    (which also takes a bare LF and reads a response code) because the
    syntax cases judge exactly these bytes; pass the result to
    :func:`parse_drop_listing`, :func:`parse_scan_line` or :func:`parse_uid_line`.

    Raises:
        MalformedResponse: not ``+OK SP ... CRLF``.
    """
    if not line.startswith(b"+OK ") or not line.endswith(CRLF):
        raise MalformedResponse(f"not a one-line listing '+OK <listing>' CRLF: {line[:60]!r}")
    return line[4:-2].decode("ascii", "replace")


def parse_scan_listing(lines: Iterable[str | bytes]) -> dict[int, int]:
    """A LIST body (lines without the terminator) -> ``{number: octets}``."""
    return dict(parse_scan_line(line) for line in lines)


def parse_uid_listing(lines: Iterable[str | bytes]) -> dict[int, str]:
    """A UIDL body (lines without the terminator) -> ``{number: uid}``."""
    return dict(parse_uid_line(line) for line in lines)
