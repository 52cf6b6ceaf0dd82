"""Sans-I/O POP3: framing, limits, dot-stuffing, response parsing, the server
state machine and its errors.  No sockets, no asyncio, no clock.

The reference server, the conformance client and the Locust client all build
on this package, so POP3 is parsed in one place.
"""

from .auth import (
    apop_digest,
    cram_md5_response,
    greeting_timestamp,
    sasl_encode,
    sasl_plain_decode,
    sasl_plain_encode,
    sasl_plain_split,
)
from .capa import capability_arguments, capability_map
from .commands import Command, parse_command
from .errors import MalformedResponse, PeerError, Pop3Error
from .framing import (
    BodyEncoder,
    BodyReader,
    CrlfNormalizer,
    DotStuffer,
    LineBuffer,
    TopFilter,
    crlf_form,
    encode_body,
    wire_size,
)
from .listings import (
    listing_reply,
    parse_drop_listing,
    parse_scan_line,
    parse_scan_listing,
    parse_uid_line,
    parse_uid_listing,
)
from .message import split_message
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
    "BodyEncoder",
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
    "apop_digest",
    "capability_arguments",
    "capability_map",
    "cram_md5_response",
    "crlf_form",
    "encode_body",
    "greeting_timestamp",
    "listing_reply",
    "parse_command",
    "parse_drop_listing",
    "parse_scan_line",
    "parse_scan_listing",
    "parse_status_line",
    "parse_uid_line",
    "parse_uid_listing",
    "sasl_encode",
    "sasl_plain_decode",
    "sasl_plain_encode",
    "sasl_plain_split",
    "split_message",
    "wire_size",
]
