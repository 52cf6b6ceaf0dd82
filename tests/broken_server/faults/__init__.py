"""Switchable faults of the broken server, one module per area.

:mod:`.registry` holds the registry (name -> area, description, the cases
that catch it, the installer); importing the area modules registers their
faults.
"""

from __future__ import annotations

from . import extensions, framing, relay, states  # noqa: F401  (each registers its faults)
from .registry import AREAS, FAULTS, Fault, install

__all__ = ["AREAS", "FAULTS", "Fault", "install"]
