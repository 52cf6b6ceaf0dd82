"""Protocol limits, each named after the RFC sentence that sets it.

Every length check in pop3suite uses these names so that a reader can find the
rule behind a number (STYLE.md principle 8).
"""

#: RFC 2449 §4: "Keywords and arguments are each limited to 40 octets ...
#: a command line ... MUST NOT exceed 255 octets, including the terminating
#: CRLF."  Servers that support CAPA must accept commands up to this length.
MAX_COMMAND_LINE = 255

#: RFC 2449 §4 ("... 40 characters in length") for each argument.
MAX_ARGUMENT_LENGTH = 40

#: RFC 1939 §3: "Responses may be up to 512 characters long, including the
#: terminating CRLF."  RFC 2449 §4 repeats it for the first line of any
#: response, including the greeting.
MAX_RESPONSE_LINE = 512

#: RFC 1939 §7 (UIDL): "The unique-id of a message ... consists of 1 to 70
#: characters in the range of 0x21 to 0x7E".
MAX_UID_LENGTH = 70
UID_MIN_OCTET = 0x21
UID_MAX_OCTET = 0x7E

#: RFC 1939 §3: "A POP3 server MAY have an inactivity autologout timer.
#: Such a timer MUST be of at least 10 minutes' duration."
RFC1939_MIN_AUTOLOGOUT_SECONDS = 600

#: The provider's published idle timeout (provider-pop-service.md §4): a
#: deliberate deviation from the RFC floor above.
PROVIDER_IDLE_TIMEOUT_SECONDS = 120

#: RFC 5034 §4: a SASL continuation line may be longer than a command line;
#: the mechanism sets the maximum.  We allow what Dovecot allows
#: (LOGIN_MAX_AUTH_BUF_SIZE, 8192) plus CRLF.
MAX_SASL_LINE = 8192 + 2

#: Well-known ports (RFC 1939 §3, RFC 8314 §7.1).
POP3_PORT = 110
POP3S_PORT = 995

CRLF = b"\r\n"
TERMINATOR = b".\r\n"
