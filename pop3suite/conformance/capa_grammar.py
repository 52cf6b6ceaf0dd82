"""The argument grammar of the registered POP3 capabilities (RFC 2449 §6,
RFC 2595 §4, RFC 3206, RFC 6856), for ``rfc2449/6/capability-arguments``.

A module of its own, not part of the case file, so the grammar can be unit
tested without importing a conformance case.
"""

from __future__ import annotations

import re

_DAYS = r"(?:NEVER|\d+)"
#: RFC 4422 §3.1: sasl-mech = 1*20mech-char (upper-case letters, digits, "-", "_").
_MECH = r"[A-Z0-9_-]{1,20}"

#: Registered tag -> what may follow it on its line (with the leading space),
#: in the AUTHORIZATION state (before login).  RFC 2449 §6.1-6.9, RFC 2595 §4
#: (STLS), RFC 3206 (AUTH-RESP-CODE), RFC 6856 §2-3 (UTF8, LANG).
BEFORE_LOGIN: dict[str, str] = {
    "TOP": "",
    "USER": "",
    "SASL": rf"(?: {_MECH})+",
    "RESP-CODES": "",
    "LOGIN-DELAY": r" \d+(?: USER)?",
    "PIPELINING": "",
    "EXPIRE": rf" {_DAYS}(?: USER)?",
    "UIDL": "",
    "IMPLEMENTATION": r"(?: [\x21-\x7e]+)+",
    "STLS": "",
    "AUTH-RESP-CODE": "",
    "UTF8": r"(?: USER)?",
    "LANG": "",
}
#: In the TRANSACTION state the value is the user's own: no ``USER`` suffix
#: (§6.5, §6.7: "optionally followed by USER in AUTHORIZATION state").
AFTER_LOGIN: dict[str, str] = {
    **BEFORE_LOGIN,
    "LOGIN-DELAY": r" \d+",
    "EXPIRE": rf" {_DAYS}",
}


def _matches(pattern: str, text: str) -> bool:
    """Tags and their keyword arguments (NEVER, USER) are case-insensitive."""
    return re.fullmatch(pattern, text, re.IGNORECASE) is not None


def argument_problems(lines: list[bytes], grammar: dict[str, str]) -> list[str]:
    """What is wrong with the registered tags' arguments in these CAPA lines.

    A line whose tag is registered must match that tag's grammar.  A line
    whose tag is a registered tag with more letters glued on (``EXPIRENEVER``)
    is reported when the glued rest is a valid argument for that tag; other
    unknown tags are left alone.
    """
    problems = []
    for raw in lines:
        line = raw.decode("latin-1")
        tag, _, _ = line.partition(" ")
        rest = line[len(tag) :]
        upper = tag.upper()
        if upper in grammar:
            if not _matches(grammar[upper], rest):
                problems.append(f"{line!r}: arguments of {upper} do not match {grammar[upper]!r}")
            continue
        for registered, pattern in grammar.items():
            glued = " " + tag[len(registered) :] + rest
            if upper.startswith(registered) and len(upper) > len(registered) and _matches(pattern, glued):
                problems.append(f"{line!r}: {registered} with its argument glued on (no space after the tag)")
    return problems
