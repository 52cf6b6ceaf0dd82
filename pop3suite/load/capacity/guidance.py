"""The provider-style guidance table, derived from the fitted cost model.

For ``accounts`` accounts polling at interval P minutes with mailbox S MB,
the predicted server load is ``accounts * cpu_per_poll(S) / (60 P)`` cores.
Holding it under ``cpu_budget_cores`` gives the shortest allowed interval
for each size, ``P_min(S) = accounts * cpu_per_poll(S) / (60 * budget)``.
With the provider's two tiers (short P2 = 5 min, long P1 = 15 min):

* ``above_mb`` (Y) = the largest S with P_min(S) <= P2 (bigger mailboxes
  must poll every P1);
* ``keep_under_mb`` (X) = the largest S with P_min(S) <= P1, also capped by
  latency: a poll whose CPU alone exceeds the SLO, or a size whose measured
  cells broke the p95 SLO, is too big whatever the interval.

``cpu_per_poll(S)`` is made non-decreasing in S (a running maximum) so a noisy
negative size slope never lets bigger mailboxes poll more often.  Sizes are
searched on a 0.5 MB grid up to ``SEARCH_MAX_MB``.
"""

from __future__ import annotations

import numpy as np

from .costmodel import Model, PollShape
from .grid import GuidanceSettings

SEARCH_MAX_MB = 2000.0
STEP_MB = 0.5
AGREE_TOLERANCE = 0.2  # within +-20 % counts as agreeing

#: load-workloads / provider-pop-service.md §3, the CentOS 5 table and the 30 MB SSL paragraph.
PROVIDER: tuple[dict, ...] = (
    {"policy": "provider-ssl-50MB", "connection": "tls", "backend": "any", "keep_under_mb": 50.0,
     "above_mb": 20.0, "poll_min_above": 15.0, "poll_min": 5.0},
    {"policy": "provider-ssl-30MB", "connection": "tls", "backend": "any", "keep_under_mb": 30.0,
     "above_mb": 20.0, "poll_min_above": 15.0, "poll_min": 5.0},
    {"policy": "provider-plain", "connection": "plain", "backend": "any", "keep_under_mb": 90.0,
     "above_mb": 50.0, "poll_min_above": 15.0, "poll_min": 5.0},
)  # fmt: skip


def _shape(
    size_mb: np.ndarray | float, connection: str, backend: str, s: GuidanceSettings
) -> list[PollShape]:
    sizes = np.atleast_1d(size_mb)
    rewrite = s.behaviour == "delete" and backend == "mbox"
    return [
        PollShape(
            scanned_bytes=float(mb) * 1e6,
            sent_bytes=s.download_per_poll_kb * 1000,
            tls=connection == "tls",
            backend=backend,
            rewritten_bytes=float(mb) * 1e6 if rewrite else 0.0,
        )
        for mb in sizes
    ]


def cost_curve(
    model: Model, sizes_mb: np.ndarray, connection: str, backend: str, s: GuidanceSettings
) -> np.ndarray:
    """CPU s per poll at each size, floored at a small positive value and
    made non-decreasing in size."""
    raw = np.array([model.predict(p) for p in _shape(sizes_mb, connection, backend, s)])
    return np.maximum.accumulate(np.maximum(raw, 1e-6))


def min_interval_min(cost_s: np.ndarray, s: GuidanceSettings) -> np.ndarray:
    return s.accounts * cost_s / (60.0 * s.cpu_budget_cores)


def _largest(sizes: np.ndarray, ok: np.ndarray) -> float:
    idx = np.nonzero(ok)[0]
    return float(sizes[idx[-1]]) if idx.size else 0.0


def derive_row(
    model: Model,
    connection: str,
    backend: str,
    s: GuidanceSettings,
    slo_ms: float,
    measured_cap_mb: float | None,
) -> dict:
    sizes = np.arange(0.0, SEARCH_MAX_MB + STEP_MB, STEP_MB)
    cost = cost_curve(model, sizes, connection, backend, s)
    p_min = min_interval_min(cost, s)
    short, long = s.tiers_min
    keep = _largest(sizes, p_min <= long)
    above = _largest(sizes, p_min <= short)
    latency_cap = _largest(sizes, cost * 1000.0 <= slo_ms)
    notes = []
    if latency_cap < keep:
        keep, notes = latency_cap, [f"capped by the {slo_ms:g} ms SLO (CPU per poll alone)"]
    if measured_cap_mb is not None and measured_cap_mb < keep:
        keep = measured_cap_mb
        notes.append(f"capped at {measured_cap_mb:g} MB: larger measured cells broke the p95 SLO")
    above = min(above, keep)
    if keep >= SEARCH_MAX_MB:
        notes.append(f"CPU does not bound the size below {SEARCH_MAX_MB:g} MB")
    if p_min[0] > long:
        notes.append(f"even an empty mailbox needs polls >= {p_min[0]:.1f} min apart for this budget")
    return {
        "connection": connection,
        "backend": backend,
        "keep_under_mb": keep,
        "above_mb": above,
        "poll_min_above": long,
        "poll_min": short,
        "min_interval_at_keep_under_min": float(
            min_interval_min(cost_curve(model, np.array([keep]), connection, backend, s), s)[0]
        ),
        "mb_per_min_short": above / short,
        "mb_per_min_long": keep / long,
        "note": "; ".join(notes),
    }


def _verdict(field: str, derived: float, provider: float) -> str:
    if provider == 0:
        return "agrees" if derived == 0 else "looser"
    ratio = derived / provider
    if abs(ratio - 1) <= AGREE_TOLERANCE:
        return "agrees"
    bigger_is_looser = field in ("keep_under_mb", "above_mb")
    return "looser" if (ratio > 1) == bigger_is_looser else "stricter"


def compare(rows: list[dict], model: Model, s: GuidanceSettings, backend: str) -> list[dict]:
    out = []
    for prov in PROVIDER:
        derived = next(
            (r for r in rows if r["connection"] == prov["connection"] and r["backend"] == backend), None
        )
        if derived is None:
            continue
        implied = implied_accounts(model, prov, s, backend)
        for field in ("keep_under_mb", "above_mb", "poll_min_above", "poll_min"):
            verdict = _verdict(field, derived[field], prov[field])
            note = f"{prov['policy']}: derived {derived[field]:g} vs {prov[field]:g}"
            if field == "keep_under_mb":
                note += (
                    f"; the provider's {prov['keep_under_mb']:g} MB at every {prov['poll_min_above']:g} min "
                    f"fits the budget for about {implied:.0f} accounts"
                )
            if field.startswith("poll"):
                note += " (tiers are inputs: the sizes are what is derived)"
            entry = {
                "connection": prov["connection"],
                "policy": prov["policy"],
                "field": field,
                "derived": derived[field],
                "provider": prov[field],
                "verdict": verdict,
                "note": note,
            }
            if field == "keep_under_mb":
                entry["implied_accounts"] = implied
            out.append(entry)
    return out


def implied_accounts(model: Model, prov: dict, s: GuidanceSettings, backend: str) -> float:
    """Accounts for which a provider row exactly fits the budget: every
    account at the row's keep-under size polling at its long interval uses
    ``cpu_budget_cores``.  Rows of one consistent table imply the same count."""
    cost = float(cost_curve(model, np.array([prov["keep_under_mb"]]), prov["connection"], backend, s)[0])
    return s.cpu_budget_cores * 60 * prov["poll_min_above"] / cost


def implied_spread(comparison: list[dict]) -> float | None:
    """max/min of the provider rows' implied accounts (1.0: one consistent server)."""
    values = [c["implied_accounts"] for c in comparison if c.get("implied_accounts")]
    return max(values) / min(values) if values else None


def iso_cost(rows: list[dict], backend: str, model: Model, s: GuidanceSettings) -> dict:
    """MB per minute of polling allowed, per tier, and the plain/TLS ratio
    (the spec's hypothesis: TLS cuts the budget by 1.8-2.5x), plus the
    predicted TLS/plain CPU-per-poll ratio at a few mailbox sizes (the
    fixed handshake matters most for small mailboxes)."""
    by = {r["connection"]: r for r in rows if r["backend"] == backend}
    provider = {p["policy"]: p for p in PROVIDER}
    out: dict = {"derived": {}, "provider": {}}
    for conn, r in by.items():
        out["derived"][conn] = {"short": r["mb_per_min_short"], "long": r["mb_per_min_long"]}
    for name, p in provider.items():
        out["provider"][name] = {
            "short": p["above_mb"] / p["poll_min"],
            "long": p["keep_under_mb"] / p["poll_min_above"],
        }
    if "tls" in by and "plain" in by:
        ratios = {}
        for tier in ("short", "long"):
            t, p = out["derived"]["tls"][tier], out["derived"]["plain"][tier]
            ratios[tier] = p / t if t > 0 else None
        out["derived_plain_over_tls"] = ratios
    out["provider_plain_over_tls"] = {
        "short": (50 / 5) / (20 / 5),
        "long": (90 / 15) / (50 / 15),
    }
    out["hypothesis"] = [1.8, 2.5]
    sizes = np.array([1.0, 5.0, 20.0, 50.0, 90.0])
    tls = cost_curve(model, sizes, "tls", backend, s)
    plain = cost_curve(model, sizes, "plain", backend, s)
    out["tls_over_plain_cpu_per_poll"] = {
        f"{mb:g}": float(t / p) for mb, t, p in zip(sizes, tls, plain, strict=True)
    }
    return out


def derive(
    model: Model,
    s: GuidanceSettings,
    backends: list[str],
    slo_ms: float,
    measured_caps: dict[tuple[str, str], float] | None = None,
) -> dict:
    """The whole guidance.json document."""
    caps = measured_caps or {}
    rows = [
        derive_row(model, conn, backend, s, slo_ms, caps.get((conn, backend)))
        for backend in backends
        for conn in ("tls", "plain")
    ]
    main = s.backend if s.backend in backends else "mbox" if "mbox" in backends else backends[0]
    sizes = np.array(s.sizes_mb, dtype=float)
    heatmaps = {}
    boundaries = {}
    for backend in backends:
        loads, bounds = {}, {}
        for conn in ("tls", "plain"):
            cost = cost_curve(model, sizes, conn, backend, s)
            loads[conn] = [[float(s.accounts * c / (60.0 * p)) for p in s.intervals_min] for c in cost]
            bounds[conn] = [
                [float(mb), float(m)] for mb, m in zip(sizes, min_interval_min(cost, s), strict=True)
            ]
        heatmaps[backend], boundaries[backend] = loads, bounds
    return {
        "accounts": s.accounts,
        "cpu_budget_cores": s.cpu_budget_cores,
        "latency_slo_ms": slo_ms,
        "behaviour": s.behaviour,
        "download_per_poll_kb": s.download_per_poll_kb,
        "tls_mode": s.connection_tls,
        "backend": main,
        "rows": rows,
        "provider": [dict(p) for p in PROVIDER],
        "comparison": compare(rows, model, s, main),
        "iso_cost": iso_cost(rows, main, model, s),
        "heatmap": {
            "sizes_mb": list(s.sizes_mb),
            "intervals_min": list(s.intervals_min),
            "load_cores": heatmaps[main],
        },
        "boundary": boundaries[main],
        "heatmap_by_backend": heatmaps,
        "boundary_by_backend": boundaries,
    }


def render(doc: dict) -> str:
    """The derived table beside the provider's, for stdout."""
    lines = [
        f"Guidance for {doc['accounts']} accounts, CPU budget {doc['cpu_budget_cores']:g} cores, "
        f"SLO p95 {doc['latency_slo_ms']:g} ms, {doc['behaviour']} clients fetching "
        f"{doc['download_per_poll_kb']:g} KB per poll:",
        f"  {'source':<22}{'conn':<7}{'backend':<9}{'keep under':>11}{'if above':>10}"
        f"{'poll >=':>9}{'else >=':>9}",
    ]
    for r in doc["rows"]:
        lines.append(
            f"  {'derived':<22}{r['connection']:<7}{r['backend']:<9}{r['keep_under_mb']:>8.1f} MB"
            f"{r['above_mb']:>7.1f} MB{r['poll_min_above']:>6g} min{r['poll_min']:>6g} min"
            + (f"   ({r['note']})" if r["note"] else "")
        )
    for p in doc["provider"]:
        lines.append(
            f"  {p['policy']:<22}{p['connection']:<7}{'-':<9}{p['keep_under_mb']:>8.1f} MB"
            f"{p['above_mb']:>7.1f} MB{p['poll_min_above']:>6g} min{p['poll_min']:>6g} min"
        )
    lines.append("  comparison (sizes):")
    for c in doc["comparison"]:
        if c["field"] in ("keep_under_mb", "above_mb"):
            lines.append(f"    {c['verdict']:<9}{c['field']:<14}{c['note']}")
    iso = doc["iso_cost"]
    d = iso["derived"]
    parts = [f"{conn} {v['short']:.2f}/{v['long']:.2f}" for conn, v in d.items()]
    lines.append("  iso-cost, MB per minute of polling (short tier / long tier): derived " + ", ".join(parts))
    lines.append("    provider: ssl-50MB 4.00/3.33, ssl-30MB 4.00/2.00, plain 10.00/6.00")
    ratio = iso.get("derived_plain_over_tls")
    if ratio:
        fmt = [f"{v:.2f}x" if v else "n/a" for v in (ratio["short"], ratio["long"])]
        lines.append(
            f"  plain/TLS budget ratio: derived {fmt[0]} / {fmt[1]}; provider 2.50x / 1.80x; "
            "hypothesis 1.8-2.5x"
        )
    per_poll = iso.get("tls_over_plain_cpu_per_poll", {})
    if per_poll:
        parts = [f"{mb} MB {r:.2f}x" for mb, r in per_poll.items()]
        lines.append(f"  TLS/plain CPU per poll ({doc['backend']}): " + ", ".join(parts))
    implied = [c for c in doc["comparison"] if "implied_accounts" in c]
    if implied:
        parts = [f"{c['policy']} {c['implied_accounts']:.0f}" for c in implied]
        spread = implied_spread(doc["comparison"])
        lines.append(
            f"  accounts per {doc['cpu_budget_cores']:g} core(s) each provider row fits exactly: "
            + ", ".join(parts)
            + (f" (spread {spread:.2f}x)" if spread else "")
        )
    if "era" in doc:
        lines += render_era(doc)
    return "\n".join(lines)


def _pair(value: object, digits: int = 2) -> str:
    if isinstance(value, list) and len(value) == 2:
        return f"{value[0]:.{digits}f}-{value[1]:.{digits}f}"
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "n/a"


def render_era(doc: dict) -> list[str]:
    """The era run's extra lines: the other tables, the band, the inverse."""
    era, lines = doc["era"], []
    ratio = era["cpu_ratio"]
    lines.append(
        f"  era CPU: {ratio['central']:.2f}x this CPU's CPU time "
        f"(band {ratio['low']:.2f}-{ratio['high']:.2f}); "
        "handshake CPU here: "
        + ", ".join(f"RSA-{b} {ms:.2f} ms" for b, ms in era["handshake_cpu_ms_here"].items())
    )
    tables = [("era cells on this CPU", "measured_here"), ("modern reference server", "modern")]
    if "daemon" in era:
        tables.append(("era daemon stack", "daemon"))
    for label, key in tables:
        table = era[key]
        for r in table["rows"]:
            lines.append(
                f"  {label:<24}{r['connection']:<7}keep under {r['keep_under_mb']:>7.1f} MB, "
                f"if above {r['above_mb']:>6.1f} MB poll >= {r['poll_min_above']:g} min"
            )
        ratios = table["iso_cost"].get("derived_plain_over_tls") or {}
        lines.append(
            f"  {label:<24}plain/TLS {_pair(ratios.get('short'))}x / {_pair(ratios.get('long'))}x; "
            "implied accounts "
            + ", ".join(
                f"{c['policy']} {c['implied_accounts']:.0f}"
                for c in table["comparison"]
                if "implied_accounts" in c
            )
        )
    band = era["band"]
    lines.append(
        f"  era band (CPU ratio x RSA key size): plain/TLS {_pair(band.get('plain_over_tls_short'))}x short, "
        f"{_pair(band.get('plain_over_tls_long'))}x long; implied-accounts spread "
        f"{_pair(band.get('implied_accounts_spread'))}x"
    )
    at_load = era.get("at_provider_load") or {}
    if at_load:
        lines.append(
            "  plain/TLS per tier at the load where the provider's plain size of that tier fits "
            "(provider 2.50x / 1.80x):"
        )
        for name, v in at_load.items():
            r = v["plain_over_tls"]
            lines.append(
                f"    {name:<16}{_pair(r.get('short'))}x at {v['short']['accounts']} accounts / "
                f"{_pair(r.get('long'))}x at {v['long']['accounts']} accounts"
            )
    inverse = doc.get("inverse") or {}
    prov = inverse.get("provider") or {}
    if prov:
        lines.append(
            f"  inverse: the provider's table implies d/b = {prov['d_over_b_mb']:.1f} MB of scanning "
            "per TLS poll "
            f"and e/b = {prov['e_over_b']:.2f}; measured:"
        )
        for name, m in inverse["measured"].items():
            gap = inverse["gap"][name]
            need = gap.get("d_factor_needed")
            lines.append(
                f"    {name:<16}d {m['d_tls_ms']:.2f} ms, b {m['b_scan_ms_per_mb']:.2f} ms/MB, "
                f"e {m['e_tls_ms_per_mb']:.3f} ms/MB: d/b {_pair(m.get('d_over_b_mb'), 1)} MB, "
                f"e/b {_pair(m.get('e_over_b'))}" + (f"; d/b would have to grow {need:.1f}x" if need else "")
            )
    return lines
