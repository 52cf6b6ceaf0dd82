"""What the target itself offers, probed once before its cells run.

A cell whose mode or login the *server* lacks is ``unsupported``, not a
client failure.  The suite's own client connects in each mode and asks
CAPA (RFC 2449).  A server that refuses CAPA offers neither STLS (RFC 2595
§4: STLS is announced in CAPA) nor SASL (RFC 5034 §3: AUTH is announced by
the SASL capability); one whose CAPA lacks ``STLS`` or ``SASL ... PLAIN``
lacks that mode or the PLAIN login every client here is told to use; a
greeting without a ``<...>`` timestamp offers no APOP (RFC 1939 §7).

A mode the probe could not reach is *not* marked unsupported: the cells run
and fail with the client's own error, so a broken endpoint stays visible.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from pop3suite.client import Pop3Client, Pop3ClientError, apop_timestamp
from pop3suite.proto import capability_map
from pop3suite.target.model import Target, TargetError


@dataclass(frozen=True)
class ModeProbe:
    """One mode's answer: ``capa`` is None when the server refused CAPA."""

    reached: bool
    capa: tuple[str, ...] | None = None
    apop: bool = False  # the greeting carries an APOP timestamp
    error: str = ""

    def has(self, keyword: str) -> bool:
        return self.capa is not None and keyword in capability_map(self.capa)

    def sasl(self) -> tuple[str, ...]:
        return tuple(word.upper() for word in capability_map(self.capa or ()).get("SASL", []))


@dataclass
class ServerProbe:
    """Per-mode CAPA answers (``stls`` = after STLS) and the greeting."""

    modes: dict[str, ModeProbe] = field(default_factory=dict)

    def lacks(self, mode: str, auth: str) -> str | None:
        """Why the server cannot do (mode, auth), or None (also when unknown)."""
        home = self.modes.get("plain") or self.modes.get("implicit")
        if mode == "stls":
            plain = self.modes.get("plain")
            if plain and plain.reached and plain.capa is None:
                return "the server refuses CAPA, so it offers no STLS (RFC 2449, RFC 2595 §4)"
            if plain and plain.reached and not plain.has("STLS"):
                return "the server does not announce STLS in CAPA"
        if auth == "sasl":
            here = self.modes.get(mode) or (self.modes.get("plain") if mode == "stls" else None)
            if here and here.reached:
                if here.capa is None:
                    return "the server refuses CAPA, so it offers no SASL (RFC 2449, RFC 5034 §3)"
                mechanisms = here.sasl()
                if not mechanisms:
                    return f"the server announces no SASL capability in CAPA ({mode})"
                if "PLAIN" not in mechanisms:
                    return f"the server's SASL mechanisms ({' '.join(mechanisms)}) lack PLAIN ({mode})"
        if auth == "apop" and home and home.reached and not home.apop:
            return "the server's greeting carries no APOP timestamp (RFC 1939 §7)"
        return None

    def summary(self) -> str:
        """One line per mode, for the report."""
        parts = []
        for mode, answer in self.modes.items():
            if not answer.reached:
                parts.append(f"{mode}: not reached ({answer.error})")
            elif answer.capa is None:
                parts.append(f"{mode}: CAPA refused")
            else:
                parts.append(f"{mode}: CAPA {', '.join(answer.capa)}")
        return "; ".join(parts)


def _ask(pop: Pop3Client) -> ModeProbe:
    try:
        pop.connect()
        apop = apop_timestamp(pop.greeting) is not None
        body = pop.multiline("CAPA", check=False)
        capa = tuple(line.decode("utf-8", "replace") for line in body.lines()) if body.response.ok else None
        with contextlib.suppress(OSError, Pop3ClientError):
            pop.quit()
        return ModeProbe(True, capa, apop)
    except (OSError, Pop3ClientError) as exc:
        return ModeProbe(False, error=str(exc) or type(exc).__name__)
    finally:
        pop.close()


def probe(target: Target, timeout: float = 30.0) -> ServerProbe:
    """Ask every endpoint of ``target`` for CAPA (and after STLS, if offered)."""
    result = ServerProbe()
    try:
        if target.pop3:
            result.modes["plain"] = _ask(target.client("plain", timeout=timeout))
            if result.modes["plain"].has("STLS"):
                result.modes["stls"] = _ask(target.client("stls", timeout=timeout))
        if target.pop3s:
            result.modes["implicit"] = _ask(target.client("implicit", timeout=timeout))
    except TargetError:  # an endpoint the target does not have: nothing to probe
        pass
    return result
