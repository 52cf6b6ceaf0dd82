"""Cases, levels and graded outcomes (the Autobahn|Testsuite model).

A conformance test is a plain pytest function decorated with :func:`case`,
which records its stable ID, requirement level, RFC section and the sentence
it checks (h2spec style).  The plugin grades the result by level:

=============  ===============  =========================
level          test passes      a check fails
=============  ===============  =========================
MUST           OK               FAILED
PROVIDER       OK               FAILED (provider profile)
SHOULD         OK               NON-STRICT
MAY / INFO     INFORMATIONAL    INFORMATIONAL
hardening      OK               NON-STRICT (a hardening gap)
=============  ===============  =========================

``hardening=True`` marks a security probe that no RFC requires (a
pre-login deadline, a per-address limit, throttled failed logins): whatever
its level, a failure is graded NON-STRICT and reported as a *hardening gap*,
apart from RFC violations, so a third-party server is never FAILED for it.

A test that cannot run because the target lacks something (a capability
not advertised, no APOP account given, fixtures not seeded) calls
:func:`unimplemented` and is graded UNIMPLEMENTED, never FAILED.

A case the suite could not judge is graded ERROR, never FAILED:
:func:`is_suite_error` tells the server's doing (a failed check, ``-ERR``
where ``+OK`` was needed, a reply that is not a status line, a close, a
reset, silence, a TLS handshake the server broke) from ours (our own
exception or a harness bug, our TLS trust setting, a target that cannot be
reached or resolved at all).  ERROR never counts as the server's failure.
"""

from __future__ import annotations

import enum
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import pytest

from pop3suite.client import Pop3ClientError
from pop3suite.proto.errors import MalformedResponse
from pop3suite.proto.responses import Response

F = TypeVar("F", bound=Callable[..., Any])


class Level(enum.Enum):
    MUST = "MUST"
    SHOULD = "SHOULD"
    MAY = "MAY"
    PROVIDER = "PROVIDER"
    INFO = "INFO"


class Outcome(enum.Enum):
    OK = "OK"
    NON_STRICT = "NON-STRICT"
    FAILED = "FAILED"
    INFORMATIONAL = "INFORMATIONAL"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    ERROR = "ERROR"


MUST, SHOULD, MAY, PROVIDER, INFO = Level.MUST, Level.SHOULD, Level.MAY, Level.PROVIDER, Level.INFO


@dataclass(frozen=True)
class CaseInfo:
    """What a case checks.

    Attributes:
        id: stable, name-based ID, ``rfc1939/5/stat-format``.
        level: requirement level.
        rfc: the document (``"RFC 1939"``, ``"provider"``).
        section: section number as written in the document.
        sentence: the normative sentence checked, quoted.
        ref: the ID in ``shared/spec/rfc-checklist.md`` (e.g. ``rfc1939/5/1``).
        slow: takes minutes (real timeouts); skipped with ``--fast``.
        destructive: removes mail (DELE + QUIT); needs ``--allow-destructive``.
        hardening: a security-hardening probe, not an RFC rule: a failure is
            NON-STRICT ("hardening gap"), never FAILED.
        probes: the IDs of ``shared/spec/security-probes.md`` this case
            implements (``("T1",)``), so the catalogue's coverage can be counted.
    """

    id: str
    level: Level
    rfc: str
    section: str
    sentence: str
    ref: str = ""
    slow: bool = False
    destructive: bool = False
    hardening: bool = False
    probes: tuple[str, ...] = ()

    @property
    def profile(self) -> str:
        """``provider`` for the provider's rules (any level), else ``rfc``."""
        return "provider" if self.level is Level.PROVIDER or self.rfc == "provider" else "rfc"


def case(
    id: str,
    level: Level,
    rfc: str,
    section: str,
    sentence: str,
    *,
    ref: str = "",
    slow: bool = False,
    destructive: bool = False,
    hardening: bool = False,
    probes: list[str] | tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Mark a test function as a conformance case."""
    info = CaseInfo(
        id, level, rfc, section, " ".join(sentence.split()), ref, slow, destructive, hardening, tuple(probes)
    )

    def decorate(func: F) -> F:
        return pytest.mark.pop3case(info)(func)

    return decorate


class CaseFailure(AssertionError):
    """A check failed; carries what was expected and what the server did."""

    def __init__(self, message: str, expected: str, actual: str) -> None:
        super().__init__(f"{message}\nExpected: {expected}\nActual:   {actual}")
        self.message = message
        self.expected = expected
        self.actual = actual


class Unimplemented(pytest.skip.Exception):  # type: ignore[misc, name-defined]
    """The target does not offer what the case needs."""


def unimplemented(reason: str) -> NoReturn:
    """Stop the case as UNIMPLEMENTED (e.g. the capability is not advertised)."""
    raise Unimplemented(f"UNIMPLEMENTED: {reason}")


OBSERVATIONS = pytest.StashKey[list[str]]()


def observe(request: pytest.FixtureRequest, text: str) -> None:
    """Record what the server did, for the report's "actual" column, even
    when the case passes (INFO and MAY cases exist to record behaviour)."""
    request.node.stash.setdefault(OBSERVATIONS, []).append(text)


def expect(condition: bool, message: str, *, expected: object, actual: object) -> None:
    """Fail the case with Expected/Actual unless ``condition`` holds.

    ``expected`` and ``actual`` are keyword-only (here and in
    :func:`expect_equal`, in the same order) so they cannot be swapped."""
    if not condition:
        raise CaseFailure(message, _show(expected), _show(actual))


def expect_equal(message: str, *, expected: object, actual: object) -> None:
    """Fail the case with Expected/Actual unless ``actual == expected``."""
    expect(actual == expected, message, expected=expected, actual=actual)


def expect_err(reply: Response, message: str) -> None:
    """Fail the case unless the server refused (``reply`` is not ``+OK``):
    the one form of every "must get -ERR" check, so each shows the same
    Expected/Actual."""
    expect(not reply.ok, message, expected="-ERR", actual=reply.raw)


def expect_ok(reply: Response, message: str) -> None:
    """Fail the case unless the server accepted (``reply`` is ``+OK``)."""
    expect(reply.ok, message, expected="+OK", actual=reply.raw)


#: OSErrors that say the target could not be reached at all (not an answer
#: the server gave): name resolution, refused, no route, address in use.
_UNREACHABLE = (socket.gaierror, ConnectionRefusedError)


def is_suite_error(error: BaseException) -> bool:
    """Whether ``error`` means the suite could not judge (graded ERROR)
    rather than something the server did (graded by level).

    The server's doing: a :class:`CaseFailure`, any client error for what
    came over the wire (``-ERR``, a close, a malformed reply), a reset or
    broken pipe, silence (timeout), a TLS failure other than our trust.
    Ours: certificate verification (our ``--cafile``/``--insecure``), a
    target that does not resolve or refuses connections, and every other
    exception (a bug in the case or the harness, a parse error of ours).
    """
    if isinstance(error, (ssl.SSLCertVerificationError, *_UNREACHABLE)):
        return True
    if isinstance(error, CaseFailure | Pop3ClientError | MalformedResponse | TimeoutError | ssl.SSLError):
        return False
    # A reset, an abort or a broken pipe: the server hung up.  Anything else is ours.
    return not isinstance(error, ConnectionError)


def _show(value: object) -> str:
    if isinstance(value, bytes):
        text = repr(value)
        return text if len(text) < 400 else text[:400] + f"... ({len(value)} octets)"
    return str(value)
