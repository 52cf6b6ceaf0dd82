"""The fault registry: name -> area, what is broken, the cases that catch it
(the faults themselves live in this package's area modules).

``catches`` lists the conformance case ids (``results.json`` ids, with the
parameter where the case is parametrised) that must grade the fault
FAILED -- or NON-STRICT for a SHOULD case -- when the suite runs against a
server with that fault alone.  They were measured with a full
``pop3suite check --fast --profile provider`` run per fault
(tests/integration/test_broken_server.py keeps them true).

Each fault's ``install`` runs in the broken server's process before the
server starts; it switches on one behaviour of the classes in
:mod:`.parts`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pop3suite.proto.server as core_module

from .. import parts

AREAS = (
    "AUTHORIZATION",
    "TRANSACTION",
    "UPDATE",
    "framing",
    "CAPA",
    "STLS",
    "APOP",
    "SASL",
    "idle timeout",
    "locking",
    "long lines",
    "response codes",
    "SMTP relay",
    "parser",
)


@dataclass(frozen=True)
class Fault:
    name: str
    area: str
    description: str
    catches: tuple[str, ...]
    install: Callable[[], None]


FAULTS: dict[str, Fault] = {}


def fault(
    name: str, area: str, description: str, *catches: str
) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Register the decorated installer as fault ``name``."""
    assert area in AREAS, area

    def register(install: Callable[[], None]) -> Callable[[], None]:
        assert name not in FAULTS, name
        FAULTS[name] = Fault(name, area, description, tuple(catches), install)
        return install

    return register


def install(name: str) -> None:
    """Switch fault ``name`` on in this process (before the server starts)."""
    parts.use_core()
    parts.use_session()
    FAULTS[name].install()


_BOTH = frozenset({core_module.State.AUTHORIZATION, core_module.State.TRANSACTION})


def _original(keyword: str) -> Callable[..., core_module.Action]:
    return core_module.COMMANDS[keyword].handler
