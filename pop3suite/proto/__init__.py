"""Sans-I/O POP3: framing, limits, dot-stuffing, response parsing, the server
state machine and its errors.  No sockets, no asyncio, no clock.

The reference server, the conformance client and the Locust client all build
on this package, so POP3 is parsed in one place.
"""

from .commands import Command, parse_command
from .errors import MalformedResponse, PeerError, Pop3Error
from .framing import BodyReader, CrlfNormalizer, DotStuffer, LineBuffer, TopFilter, encode_body, wire_size
from .responses import Response, parse_status_line
from .server import (
    COMMANDS,
    Action,
    Authenticate,
    Close,
    MessageInfo,
    Retrieve,
    Send,
    ServerSession,
    SessionOptions,
    StartTLS,
    State,
    Update,
)

__all__ = [
    "COMMANDS",
    "Action",
    "Authenticate",
    "BodyReader",
    "Close",
    "Command",
    "CrlfNormalizer",
    "DotStuffer",
    "LineBuffer",
    "MalformedResponse",
    "MessageInfo",
    "PeerError",
    "Pop3Error",
    "Response",
    "Retrieve",
    "Send",
    "ServerSession",
    "SessionOptions",
    "StartTLS",
    "State",
    "TopFilter",
    "Update",
    "encode_body",
    "parse_command",
    "parse_status_line",
    "wire_size",
]
