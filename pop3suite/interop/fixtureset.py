"""The fixed set of messages delivered before every cell.

Taken from the fixtures the conformance suite uses too
(:mod:`pop3suite.target.fixtures`: one source of truth, same bytes): a
bare-LF message, lines starting with "." and "..", a ~1 MB message, an
8-bit body and a message without a final newline, plus a plain one.  Each
carries ``X-Pop3suite-Fixture: NAME``, which is how a stored
message is matched to the fixture it came from, whatever order or file
names the client used.
"""

from __future__ import annotations

from pop3suite.proto import split_message
from pop3suite.target.fixtures import Fixture, all_fixtures, fixture_name

#: Fixture names, in delivery order.
NAMES = ("utf8-headers", "bare-lf", "dot-lines", "8bit", "no-final-newline", "1mb")


def fixture_set(names: tuple[str, ...] = NAMES) -> list[Fixture]:
    """The fixtures to deliver, in order."""
    fixtures = all_fixtures()
    missing = [name for name in names if name not in fixtures]
    if missing:
        raise ValueError(f"no conformance fixture named {', '.join(missing)}")
    return [fixtures[name] for name in names]


def name_of(message: bytes) -> str | None:
    """The fixture name in a stored message's header block (CRLF or LF)."""
    return fixture_name(split_message(message)[0] + b"\n")
