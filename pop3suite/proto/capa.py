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
