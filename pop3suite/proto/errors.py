"""Errors that carry their wire meaning (STYLE.md principle 3).

Every error the server core can answer with is a :class:`Pop3Error`: it knows
its ``-ERR`` text and its RFC 2449/3206 response code, so Python exception
text never reaches the wire.  :class:`PeerError` is caused by the client,
:class:`LocalError` by us (storage, system).  :class:`MalformedResponse` is the
client-side counterpart: the *server* broke the protocol.
"""

from __future__ import annotations


class Pop3Error(Exception):
    """An error with a fixed ``-ERR`` reply.

    Attributes:
        text: human-readable reply text (never contains CR or LF).
        code: RFC 2449 §8 response code such as ``"IN-USE"`` or
            ``"SYS/TEMP"``, or None.
    """

    text = "Error."
    code: str | None = None

    def __init__(self, text: str | None = None, code: str | None = None) -> None:
        if text is not None:
            self.text = text
        if code is not None:
            self.code = code
        super().__init__(self.text)


class PeerError(Pop3Error):
    """The client did something wrong; the session stays usable."""


class UnknownCommand(PeerError):
    text = "Unknown command."


class WrongState(PeerError):
    text = "Command not valid in this state."


class BadArguments(PeerError):
    text = "Invalid arguments."


class LineTooLong(PeerError):
    text = "Line too long."


class NoSuchMessage(PeerError):
    text = "No such message."


class AuthFailed(PeerError):
    """RFC 3206 §5: credentials were refused.  The same text for an unknown
    user and a wrong password, so replies do not reveal which accounts exist."""

    text = "Authentication failed."
    code = "AUTH"


class CleartextDisallowed(PeerError):
    """RFC 2595 §2.3: cleartext login refused until TLS is active."""

    text = "Plaintext authentication disallowed on non-secure connections."
    code = "AUTH"


class MailboxInUse(PeerError):
    """RFC 2449 §8.1.2: credentials were good but the maildrop is locked."""

    text = "Mailbox is locked by another session."
    code = "IN-USE"


class LoginDelay(PeerError):
    """RFC 2449 §8.1.1: logged in again before LOGIN-DELAY passed."""

    text = "Login attempted too soon after the previous login."
    code = "LOGIN-DELAY"


class TooManyErrors(PeerError):
    """Too many bad commands: the server closes the connection."""

    text = "Too many invalid commands, closing."


class LocalError(Pop3Error):
    """Our side failed (storage, system); RFC 3206 §4."""


class SystemTemporary(LocalError):
    text = "Temporary system failure, try again later."
    code = "SYS/TEMP"


class SystemPermanent(LocalError):
    text = "Permanent system failure."
    code = "SYS/PERM"


class MalformedResponse(Exception):
    """Client side: the server's bytes break the POP3 grammar."""
