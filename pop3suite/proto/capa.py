"""The CAPA reply as a tag map (RFC 2449 §5).

Each CAPA line is a tag and its arguments separated by spaces; tags are
case-insensitive, so the map's keys are upper case.  One reader for the
client, the tests and the conformance cases.
"""

from __future__ import annotations

from collections.abc import Iterable


def capability_map(lines: Iterable[str | bytes]) -> dict[str, list[str]]:
    """CAPA body lines -> ``{TAG: [argument, ...]}``.

    ``["SASL PLAIN LOGIN", "TOP"]`` gives ``{"SASL": ["PLAIN", "LOGIN"],
    "TOP": []}``.  Blank lines are skipped; a tag listed twice keeps its
    first line (RFC 2449 does not allow repeats; a case can judge that
    from the raw lines).
    """
    tags: dict[str, list[str]] = {}
    for line in lines:
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        words = text.strip("\r\n").split()
        if words:
            tags.setdefault(words[0].upper(), words[1:])
    return tags


def capability_arguments(lines: Iterable[str | bytes]) -> dict[str, str]:
    """CAPA body lines -> ``{TAG: argument text}``, the text exactly as
    sent after the tag and its space (``"30 USER"`` for ``EXPIRE 30 USER``).

    For comparing a capability's value as the server wrote it (EXPIRE and
    LOGIN-DELAY before and after login), which the split words of
    :func:`capability_map` cannot.  Blank lines are skipped; a tag listed
    twice keeps its last line (the conformance suite's rule since its
    first CAPA reader).
    """
    tags: dict[str, str] = {}
    for line in lines:
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        text = text.removesuffix("\r\n")
        if text:
            tag, _, args = text.partition(" ")
            tags[tag.upper()] = args
    return tags
