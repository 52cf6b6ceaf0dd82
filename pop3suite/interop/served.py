"""The bytes the server really serves, and how they may differ from the fixtures.

A real server may legitimately serve a delivered message in another form
than the fixture's wire form, so a client is judged against what the server
serves: right after delivery the suite's own client RETRs every message once
(``runner.snapshot``, classified by :func:`classify`), and a client passes when it stores exactly those bytes
(after its documented stored-form normalisation).

The snapshot itself is checked against the fixtures.  Only these server
rewrites are accepted, each a behaviour seen on real servers and reported as
a server property, not a client failure (:func:`server_rewrite`):

* trace header lines a delivery agent prepends and a Message-ID:/Date: it
  appends (Cyrus lmtpd) -- ``pop3suite.target.fixtures.matches``;
* mailbox-state header lines an mbox server keeps in the message (GNU
  Mailutils: ``Status:``, ``X-UID:``, ``X-UIDL:``, ``X-IMAPbase:``) at the
  end of the header block;
* a UTF-8 message wrapped, byte-exact, as a ``message/global`` part of a
  multipart notice for clients that did not enable UTF8 (Courier, RFC 6856
  §3).

Anything else (a flipped byte, a lost line) fails the cell: a broken server
still fails.  Two of those rewrites also vary between sessions, and exactly
those variations are masked before comparing, and only on a server whose
snapshot showed that rewrite (:func:`session_form`): the ``Status:`` value
(Mailutils marks a message read, ``O`` -> ``OR``, once it was RETRieved) and
``X-UIDL:`` lines (Mailutils writes one into a message once UIDL was asked);
the MIME boundary of the wrapper (Courier makes a new one per session).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pop3suite.proto import split_message
from pop3suite.target.fixtures import HEADER, SERVER_BOUNDARY, Fixture, matches

from .fixtureset import name_of

#: Mailbox-state header fields an mbox-backed server keeps inside the message.
STATE_FIELDS = (b"status", b"x-status", b"x-uid", b"x-uidl", b"x-imapbase", b"x-keywords")
#: Rewrite kinds (also the session variations they imply).
TRACE, STATE, WRAPPED = "trace", "state", "wrapped"
DESCRIPTION = {
    TRACE: "served with delivery trace header lines added (Return-Path:/Received: prepended, "
    "Message-ID:/Date: appended)",
    STATE: "served with mailbox-state header lines inserted (Status:, X-UID:, X-UIDL:, X-IMAPbase:)",
    WRAPPED: "served wrapped, byte-exact, as a message/global part of a multipart notice "
    "(RFC 6856 §3: the client did not enable UTF8)",
}
_GLOBAL_PART = b"Content-Type: message/global\r\n\r\n"
_STATUS = re.compile(rb"^(Status:)[^\r\n]*", re.IGNORECASE | re.MULTILINE)
_UIDL_LINE = re.compile(rb"^X-UIDL:[^\n]*\n", re.IGNORECASE | re.MULTILINE)


def fixture_in(message: bytes) -> str | None:
    """The fixture a served message carries: in its header block, or in a
    wrapped part (``X-Pop3suite-Fixture:`` at the start of any line)."""
    name = name_of(message)
    if name:
        return name
    at = message.find(b"\n" + HEADER)
    if at < 0:
        return None
    end = message.find(b"\n", at + 1)
    return message[at + 1 + len(HEADER) : end].strip().decode("ascii", "replace")


def _without_state_fields(served: bytes, wire: bytes) -> bytes:
    head, body = split_message(served)
    own = {line.split(b":", 1)[0].lower() for line in split_message(wire)[0].splitlines()}
    kept = [
        line
        for line in head.splitlines(keepends=True)
        if line.split(b":", 1)[0].lower() not in STATE_FIELDS or line.split(b":", 1)[0].lower() in own
    ]
    return b"".join(kept) + (b"\r\n" + body if head != served else b"")


def server_rewrite(served: bytes, fixture: Fixture) -> str | None:
    """ "" when served exactly, the rewrite kind when a known one explains the
    difference, None when nothing does (the server altered the message)."""
    if served == fixture.wire:
        return ""
    if matches(served, fixture):
        return TRACE
    stripped = _without_state_fields(served, fixture.wire)
    if stripped != served and (stripped == fixture.wire or matches(stripped, fixture)):
        return STATE
    if _GLOBAL_PART + fixture.wire in served:
        return WRAPPED
    return None


def session_form(message: bytes, variations: frozenset[str] | set[str]) -> bytes:
    """``message`` (wire or a client's stored form) with exactly the
    per-session variations of the rewrites in ``variations`` masked."""
    if STATE in variations:
        end = _head_end(message)
        head = _UIDL_LINE.sub(b"", _STATUS.sub(rb"\1 *", message[:end]))
        message = head + message[end:]
    if WRAPPED in variations:
        for match in SERVER_BOUNDARY.finditer(message[: _head_end(message)]):
            value = match.group(2).strip(b'"')
            if value:
                message = message.replace(value, b"*")
    return message


def _head_end(message: bytes) -> int:
    """Where the header block ends, its last line end included (CRLF or LF)."""
    return len(split_message(message)[0])


@dataclass
class Snapshot:
    """The maildrop as the server served it right before the client ran."""

    messages: list[bytes]
    names: list[str | None]  # fixture name per message (None: not a fixture)
    rewrites: dict[str, str] = field(default_factory=dict)  # fixture -> rewrite kind
    altered: dict[str, bytes] = field(default_factory=dict)  # fixture -> served, unexplained

    @property
    def variations(self) -> frozenset[str]:
        return frozenset(kind for kind in self.rewrites.values() if kind in (STATE, WRAPPED))

    def extras(self) -> list[int]:
        """Indexes of served messages that are no fixture."""
        return [i for i, name in enumerate(self.names) if name is None]

    def notes(self) -> list[str]:
        """The server-property notes: rewrites and extra messages."""
        by_kind: dict[str, list[str]] = {}
        for name, kind in self.rewrites.items():
            if kind:
                by_kind.setdefault(kind, []).append(name)
        lines = [
            f"server (not the client): {', '.join(names)} {DESCRIPTION[kind]}"
            for kind, names in by_kind.items()
        ]
        for i in self.extras():
            head = split_message(self.messages[i][:200])[0]
            subject = next(
                (line for line in head.splitlines() if line.lower().startswith(b"subject:")), b"no Subject:"
            )
            lines.append(
                f"server (not the client): message {i + 1} in the maildrop is no fixture "
                f"({len(self.messages[i])} bytes, {subject.decode('utf-8', 'replace')})"
            )
        return lines


def classify(messages: list[bytes], fixtures: list[Fixture]) -> Snapshot:
    """The served ``messages`` (maildrop order) matched to ``fixtures``, each
    fixture's difference from its wire form classified."""
    by_name = {fixture.name: fixture for fixture in fixtures}
    names = [name if name in by_name else None for name in map(fixture_in, messages)]
    shot = Snapshot(messages, names)
    for message, name in zip(messages, names, strict=True):
        if name is None or name in shot.rewrites or name in shot.altered:
            continue
        kind = server_rewrite(message, by_name[name])
        if kind is None:
            shot.altered[name] = message
        else:
            shot.rewrites[name] = kind
    return shot
