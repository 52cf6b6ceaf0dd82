"""The suite's fixture messages and what a server must hand back for each.

Small fixtures are files in ``pop3suite/target/fixtures/``; the 1 MB and 10 MB
messages are generated (same bytes every time) so the repository stays small.
Every fixture carries ``X-Pop3suite-Fixture: <name>`` so the suite can find
it in a maildrop that also holds other mail.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from pop3suite.proto import CrlfNormalizer, split_message

FIXTURE_DIR = Path(__file__).parent / "fixtures"
HEADER = b"X-Pop3suite-Fixture: "
#: A MIME boundary a server generates when it renders a message (Courier
#: wraps a UTF-8 message for a client that sent no UTF8, RFC 6856 §3, with a
#: new boundary per session): not part of the message's identity.
SERVER_BOUNDARY = re.compile(rb'(boundary=)("[^"\r\n]*"|[^;\s]+)', re.IGNORECASE)


@dataclass(frozen=True)
class Fixture:
    name: str
    data: bytes  # as stored / sent

    @property
    def wire(self) -> bytes:
        """What RETR must deliver (unstuffed): CRLF line ends, final CRLF."""
        normalizer = CrlfNormalizer()
        return normalizer.feed(self.data) + normalizer.finish()

    @property
    def body_lines(self) -> list[bytes]:
        """Lines of the body (after the blank line), CRLF included."""
        return split_message(self.wire)[1].splitlines(keepends=True)


def _big(name: str, size: int) -> bytes:
    header = (
        b"From: fixtures@example.test\r\nSubject: "
        + name.encode()
        + b"\r\n"
        + HEADER
        + name.encode()
        + b"\r\n\r\n"
    )
    line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?\r\n"
    dotted = b".a line that starts with a dot, deep inside a big message\r\n"
    body = bytearray()
    count = 0
    while len(body) < size - len(header):
        body += dotted if count % 997 == 0 else line
        count += 1
    return header + bytes(body)


@functools.cache
def all_fixtures(include_big: bool = True) -> dict[str, Fixture]:
    """name -> Fixture, small ones first."""
    fixtures = {}
    for path in sorted(FIXTURE_DIR.glob("*.eml")):
        fixtures[path.stem] = Fixture(path.stem, path.read_bytes())
    if include_big:
        fixtures["1mb"] = Fixture("1mb", _big("1mb", 1_000_000))
        fixtures["10mb"] = Fixture("10mb", _big("10mb", 10_000_000))
    return fixtures


def fixture_name(head: bytes) -> str | None:
    """The fixture name in a message's header block, if any."""
    start = head.find(HEADER)
    if start < 0:
        return None
    end = head.find(b"\n", start)
    return head[start + len(HEADER) : end].strip().decode("ascii", "replace")


#: Header fields a final delivery agent adds at the end of the header block
#: when the message has none (Cyrus lmtpd: Message-ID:, Date:).
DELIVERY_ADDED_FIELDS = (b"message-id:", b"date:")


def matches(retrieved: bytes, fixture: Fixture) -> bool:
    """True if ``retrieved`` is the fixture byte for byte, allowing only
    trace header lines that a delivery agent prepends (Received:,
    Return-Path:, Delivered-To: ... ; anything before our first header that
    contains no blank line), and a Message-ID:/Date: line it appends to the
    header block when the fixture has no such field."""
    wire = fixture.wire
    if retrieved == wire:
        return True
    return any(_trace_prefixed(c, wire) for c in (retrieved, _without_added_fields(retrieved, wire)))


def _trace_prefixed(retrieved: bytes, wire: bytes) -> bool:
    if not retrieved.endswith(wire):
        return False
    prefix = retrieved[: -len(wire)]
    return prefix.endswith(b"\r\n") and b"\r\n\r\n" not in prefix and not prefix.startswith(b"\r\n")


def _without_added_fields(retrieved: bytes, wire: bytes) -> bytes:
    """``retrieved`` without the DELIVERY_ADDED_FIELDS lines that end its
    header block, for the fields the fixture itself lacks."""
    head, body = split_message(retrieved)
    if not head or head == retrieved:  # no header block, or no blank line to end one
        return retrieved
    present = {line.split(b":", 1)[0].lower() + b":" for line in _header_lines(wire)}
    lines = _header_lines(retrieved)
    while len(lines) > 1 and lines[-1].lower().startswith(DELIVERY_ADDED_FIELDS):
        if lines[-1].split(b":", 1)[0].lower() + b":" in present:
            break
        lines.pop()
    return b"".join(line + b"\r\n" for line in lines) + b"\r\n" + body


def _header_lines(message: bytes) -> list[bytes]:
    """The header block's lines of a CRLF message, without their line ends."""
    return split_message(message)[0].removesuffix(b"\r\n").split(b"\r\n")
