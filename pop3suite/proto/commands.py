"""Command lines: splitting and argument validation (client to server).

RFC 1939 §3: "Commands in the POP3 consist of a case-insensitive keyword,
possibly followed by one or more arguments.  All commands are terminated by a
CRLF pair.  Keywords and arguments consist of printable ASCII characters.
Keywords and arguments are each separated by a single SPACE character."

The parsers here raise :class:`~pop3suite.proto.errors.PeerError`
subclasses; they never crash on any input (Hypothesis checks that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BadArguments, LineTooLong
from .limits import MAX_COMMAND_LINE

_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_KEYWORD = re.compile(rb"[A-Za-z][A-Za-z0-9-]{0,39}")
_DIGITS = re.compile(rb"[0-9]{1,20}")


@dataclass(frozen=True)
class Command:
    """A parsed command line.

    Attributes:
        keyword: upper-cased keyword, e.g. ``"RETR"``.
        args: the SP-separated arguments as bytes (``PASS`` keeps its rest of
            line whole, so a password may contain spaces, RFC 1939 §7).
        raw: the line as received, without CRLF.
    """

    keyword: str
    args: tuple[bytes, ...]
    raw: bytes

    def __repr__(self) -> str:  # never print a password
        if self.keyword in {"PASS", "APOP", "AUTH"}:
            return f"Command({self.keyword!r}, <{len(self.args)} args hidden>)"
        return f"Command({self.keyword!r}, {self.args!r})"


#: Commands whose argument is the rest of the line, spaces included.
REST_OF_LINE = frozenset({"PASS"})


def parse_command(line: bytes, max_line: int = MAX_COMMAND_LINE) -> Command:
    """Split a command line (CRLF already removed).

    Raises:
        LineTooLong: the line exceeds ``max_line`` with its CRLF.
        BadArguments: control characters (NUL, TAB, CR ...) anywhere, an empty
            line, or a malformed keyword.
    """
    if len(line) + 2 > max_line:
        raise LineTooLong()
    if _CONTROL.search(line):
        raise BadArguments("Invalid characters in command.")
    keyword, sep, rest = line.partition(b" ")
    if not _KEYWORD.fullmatch(keyword):
        raise BadArguments("Invalid command syntax.")
    name = keyword.decode("ascii").upper()
    if not sep:
        return Command(name, (), line)
    if name in REST_OF_LINE:
        return Command(name, (rest,), line)
    return Command(name, tuple(rest.split(b" ")), line)


def message_number(arg: bytes) -> int:
    """A message-number argument: one or more decimal digits.

    ``0`` passes here (it is a well-formed number that names no message; the
    caller answers "no such message"); signs, dots, hex, spaces and empty
    strings do not.
    """
    if not _DIGITS.fullmatch(arg):
        raise BadArguments("Invalid message number.")
    return int(arg)


def line_count(arg: bytes) -> int:
    """TOP's second argument: a non-negative decimal number of lines."""
    if not _DIGITS.fullmatch(arg):
        raise BadArguments("Invalid number of lines.")
    return int(arg)


def expect_args(command: Command, low: int, high: int | None = None) -> tuple[bytes, ...]:
    """Check the argument count is in ``[low, high]`` (``high`` defaults to
    ``low``) and that no argument is empty (two SPs in a row)."""
    high = low if high is None else high
    if not low <= len(command.args) <= high or any(not a for a in command.args):
        raise BadArguments(f"Wrong number of arguments for {command.keyword}.")
    return command.args
