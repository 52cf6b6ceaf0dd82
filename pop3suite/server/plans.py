"""The provider's mailbox quota table, as data (provider-pop-service.md §2).

Quota in MB per account, by hosting plan and the OS generation of the
server.  ``None`` means "unlimited".  The provider's table has one row for
"reseller shared server / reseller managed VPS" and one for "business
dedicated server / business managed VPS"; they are split here into one plan
per product so that the footnote can be recorded exactly: only on reseller
managed VPS and (reseller) dedicated servers may the limit be raised,
lowered or removed on request (``adjustable``).

The lab itself accepts a per-account ``quota_mb`` on any plan (a lab needs
small quotas to test with); :attr:`Plan.adjustable` says whether the
provider would.

A megabyte here is 2**20 octets, as in Dovecot's ``quota_rule = *:storage=512M``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

MEGABYTE = 2**20

#: The table's columns.  CentOS 6 shares the "CentOS 7/6" column.
OS_GENERATIONS = ("almalinux9", "centos7", "centos5")
OS_ALIASES = MappingProxyType({"centos6": "centos7"})
DEFAULT_OS_GENERATION = "almalinux9"


@dataclass(frozen=True)
class Plan:
    """One hosting plan: its quota per OS generation (None = unlimited)."""

    name: str
    label: str
    quota_mb: MappingProxyType[str, int | None]
    adjustable: bool = False


def _plan(name: str, label: str, *row: int | None, adjustable: bool = False) -> Plan:
    return Plan(name, label, MappingProxyType(dict(zip(OS_GENERATIONS, row, strict=True))), adjustable)


#: plan name -> Plan.  Row order and numbers as in the provider's table.
PLANS: MappingProxyType[str, Plan] = MappingProxyType(
    {
        p.name: p
        for p in (
            _plan("personal-shared", "personal shared server", 512, 384, 224),
            _plan("business-shared", "business shared server", 768, 512, 272),
            _plan("reseller-shared", "reseller shared server", 512, 384, 196),
            _plan("reseller-managed-vps", "reseller managed VPS", 512, 384, 196, adjustable=True),
            _plan("reseller-dedicated", "reseller dedicated server", 512, 512, 196, adjustable=True),
            _plan("business-dedicated", "business dedicated server", None, None, None),
            _plan("business-managed-vps", "business managed VPS", None, None, None),
        )
    }
)


def normalize_os_generation(name: str) -> str:
    """The table column for ``name`` (``centos6`` -> ``centos7``).

    Raises:
        KeyError: not an OS generation of the table.
    """
    name = OS_ALIASES.get(name.lower(), name.lower())
    if name not in OS_GENERATIONS:
        raise KeyError(name)
    return name


def quota_mb(plan: str, os_generation: str = DEFAULT_OS_GENERATION) -> int | None:
    """The table's quota in MB (None = unlimited).

    Raises:
        KeyError: unknown plan or OS generation.
    """
    return PLANS[plan].quota_mb[normalize_os_generation(os_generation)]


def quota_bytes(plan: str, os_generation: str = DEFAULT_OS_GENERATION) -> int | None:
    """:func:`quota_mb` in octets (None = unlimited)."""
    mb = quota_mb(plan, os_generation)
    return None if mb is None else mb * MEGABYTE
