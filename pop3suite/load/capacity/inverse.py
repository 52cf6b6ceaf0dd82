"""Inverse reading: the per-poll cost terms the provider's table implies.

The provider's CentOS 5 table (provider-pop-service.md §3) gives, per tier,
the mailbox size at which plain POP3 and POP over SSL cost the same budget:
in the short tier (poll every 5 min) 50 MB plain against 20 MB SSL, in the
long tier (every 15 min) 90 MB plain against 50 MB SSL.  Within one tier
the interval is the same, so equal budgets mean equal CPU per poll.  With
a linear cost per poll

    plain(S) = a + b*S          tls(S) = a + d + (b + e)*S

(S the mailbox in MB, b the scan cost per MB, d the TLS cost per poll -- the
handshake and, then, the process it ran in -- and e the TLS cost per
mailbox MB), the two tiers give two equations that do not involve ``a``:

    d + 20 e = 30 b        (short tier: plain(50) = tls(20))
    d + 50 e = 40 b        (long tier:  plain(90) = tls(50))

so ``d/b = 23.3`` MB and ``e/b = 1/3``: the table is consistent if one TLS
poll costs as much as scanning 23 MB, and TLS adds a third to the cost of
every mailbox MB.  The measured terms (:func:`measured_terms`) are read off
the same cost curves the guidance uses, so they compare one to one.

The tiers between them say one more thing: the same budget at 15 and 5 min
needs ``plain(90) = 3 plain(50)``, i.e. ``a = -30 b`` -- no non-negative
fixed cost does that, so the 5-minute tier is not the 15-minute budget
applied to a linear cost (:func:`provider_terms` reports it).
"""

from __future__ import annotations

import numpy as np

from .costmodel import Model
from .grid import GuidanceSettings


def iso_pairs(provider: list[dict] | tuple[dict, ...]) -> list[dict]:
    """Per tier: the plain and TLS sizes that cost the same (from the SSL
    50 MB policy and the plain row; the 30 MB paragraph has no short tier of
    its own)."""
    plain = next(p for p in provider if p["connection"] == "plain")
    ssl_rows = sorted((p for p in provider if p["connection"] == "tls"), key=lambda p: -p["keep_under_mb"])
    tls = ssl_rows[0]  # the table's own SSL row (50 MB), not the 30 MB paragraph
    short = {"plain_mb": plain["above_mb"], "tls_mb": tls["above_mb"]}
    long = {"plain_mb": plain["keep_under_mb"], "tls_mb": tls["keep_under_mb"]}
    return [
        {"tier": "short", "interval_min": plain["poll_min"], **short},
        {"tier": "long", "interval_min": plain["poll_min_above"], **long},
    ]


def solve_tls_terms(pairs: list[dict]) -> tuple[float, float]:
    """(d/b in MB, e/b) from ``d + S_tls e = (S_plain - S_tls) b`` for both tiers."""
    rows = np.array([[1.0, p["tls_mb"]] for p in pairs])
    rhs = np.array([p["plain_mb"] - p["tls_mb"] for p in pairs], dtype=float)
    d, e = np.linalg.solve(rows, rhs)
    return float(d), float(e)


def provider_terms(provider: list[dict] | tuple[dict, ...]) -> dict:
    """The terms the provider's table implies, in units of the scan cost per MB."""
    pairs = iso_pairs(provider)
    d, e = solve_tls_terms(pairs)
    plain = next(p for p in provider if p["connection"] == "plain")
    # Same budget in both tiers: (a + b*keep)/long = (a + b*above)/short.
    k = plain["poll_min_above"] / plain["poll_min"]
    a = (plain["keep_under_mb"] - k * plain["above_mb"]) / (k - 1)
    return {
        "pairs": pairs,
        "d_over_b_mb": d,
        "e_over_b": e,
        "tiers_a_over_b_mb": a,
        "note": (
            f"a TLS poll must cost as much as scanning {d:.1f} MB, and TLS must add {e:.2f}x the scan cost "
            f"per mailbox MB, for the provider's sizes to be iso-cost within each tier; both tiers on one "
            f"budget would need a fixed cost a = {a:.0f} MB of scanning (negative: the tiers are not one "
            "linear budget)"
        ),
    }


def measured_terms(
    model: Model, s: GuidanceSettings, backend: str, lo_mb: float = 1.0, hi_mb: float = 50.0
) -> dict:
    """The same terms read off a fitted model's cost curves (CPU s per poll)."""
    from .guidance import cost_curve

    sizes = np.array([0.0, lo_mb, hi_mb])
    plain = cost_curve(model, sizes, "plain", backend, s)
    tls = cost_curve(model, sizes, "tls", backend, s)
    b = (plain[2] - plain[1]) / (hi_mb - lo_mb)
    extra = tls - plain
    e = (extra[2] - extra[1]) / (hi_mb - lo_mb)
    d = float(extra[0])
    return {
        "a_ms": float(plain[0]) * 1000,
        "b_scan_ms_per_mb": float(b) * 1000,
        "d_tls_ms": d * 1000,
        "e_tls_ms_per_mb": float(e) * 1000,
        "d_over_b_mb": d / b if b > 0 else None,
        "e_over_b": e / b if b > 0 else None,
    }


def compare(provider: dict, measured: dict[str, dict]) -> dict:
    """How far each measured profile's terms are from the provider's: the
    factor by which d/b (and the difference by which e/b) would have to change."""
    out = {}
    for name, m in measured.items():
        d = m.get("d_over_b_mb")
        out[name] = {
            "d_over_b_mb": d,
            "e_over_b": m.get("e_over_b"),
            "d_factor_needed": provider["d_over_b_mb"] / d if d and d > 0 else None,
            "e_over_b_gap": provider["e_over_b"] - (m.get("e_over_b") or 0.0),
        }
    return out
