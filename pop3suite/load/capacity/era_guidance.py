"""Forward and inverse readings of an era run (``[era]`` in the scenario).

After the sweep (outside every cell's CPU window) this measures the era
CPU ratio and the handshake cost of both RSA key sizes here
(:mod:`pop3suite.load.capacity.era`), then rewrites ``guidance.json``:

* the main table becomes the era's: the model fitted on the era cells,
  scaled by the era CPU ratio (geometric mean over the algorithms);
* ``era.measured_here``: the same cells' table on this CPU, unscaled;
* ``era.modern``: the table of the modern terms the scenario cites (the
  default reference server measured by capacity-quick);
* ``era.band``: the lowest and highest sizes, plain/TLS ratios and implied
  accounts over the ranges the sources leave open (CPU ratio per algorithm,
  1024- or 2048-bit RSA);
* ``inverse``: the cost terms the provider's table implies against the
  measured era and modern ones (:mod:`pop3suite.load.capacity.inverse`);
* ``boundaries_compared``: the era and modern boundaries for the heat map.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from . import inverse
from .costmodel import Model
from .era import EraProfile, cpu_ratio, tls_band_ms
from .grid import Grid, GuidanceSettings
from .guidance import PROVIDER, cost_curve, derive, implied_spread


def scaled(model: Model, factor: float, tls_delta_s: float = 0.0) -> Model:
    """``model`` with every coefficient times ``factor`` (a slower CPU), after
    adding ``tls_delta_s`` to the handshake term (the other RSA key size)."""
    coefficients = dict(model.coefficients)
    if "d_tls" in coefficients:
        coefficients["d_tls"] += tls_delta_s
    return dataclasses.replace(model, coefficients={t: c * factor for t, c in coefficients.items()})


def modern_model(era: EraProfile) -> Model:
    """The modern reference server's terms, as the scenario cites them (ms -> s)."""
    coefficients = {
        "a": era["modern_a_ms"] / 1000,
        "b_scan": era["modern_b_scan_ms_per_mb"] / 1000,
        "c_sent": era["modern_c_sent_ms_per_mb"] / 1000,
        "d_tls": era["modern_d_tls_ms"] / 1000,
        "e_tls_sent": era["modern_e_tls_sent_ms_per_mb"] / 1000,
    }
    return Model(
        terms=list(coefficients), coefficients=coefficients, r2=float("nan"), rmse_s=0.0, residuals={}
    )


def daemon_model(era: EraProfile) -> Model:
    """The real era stack measured by benchmarks/bench_era_daemon.py (popa3d
    behind socat, stunnel in inetd mode for TLS), on this CPU.  The model has
    no TLS x mailbox-MB term, so ``daemon_e_tls_ms_per_mb`` enters only the
    inverse reading (leaving it out of the table makes TLS slightly cheaper)."""
    coefficients = {
        "a": era["daemon_a_ms"] / 1000,
        "b_scan": era["daemon_b_scan_ms_per_mb"] / 1000,
        "d_tls": era["daemon_d_tls_ms"] / 1000,
    }
    nan = float("nan")
    return Model(terms=list(coefficients), coefficients=coefficients, r2=nan, rmse_s=0.0, residuals={})


def at_provider_load(model: Model, s: GuidanceSettings, backend: str, slo: float) -> dict:
    """Each tier's plain/TLS ratio at the load where the provider's plain size
    of that tier exactly fits the budget (the table does not say how many
    accounts a server had; only that population is taken from it, and the
    TLS sizes are then the test).  The tiers need different populations
    when the costs are linear (inverse: a = -30 MB), hence one per tier."""
    plain = next(p for p in PROVIDER if p["connection"] == "plain")
    out: dict = {}
    for tier, size_key, interval_key in (
        ("short", "above_mb", "poll_min"),
        ("long", "keep_under_mb", "poll_min_above"),
    ):
        cost = float(cost_curve(model, np.array([plain[size_key]]), "plain", backend, s)[0])
        accounts = max(1, round(s.cpu_budget_cores * 60 * plain[interval_key] / cost))
        doc = derive(model, dataclasses.replace(s, accounts=accounts), [backend], slo)
        out[tier] = {
            "accounts": accounts,
            "plain_over_tls": (doc["iso_cost"].get("derived_plain_over_tls") or {}).get(tier),
            "rows": [{k: r[k] for k in ("connection", "keep_under_mb", "above_mb")} for r in doc["rows"]],
        }
    out["plain_over_tls"] = {tier: out[tier]["plain_over_tls"] for tier in ("short", "long")}
    return out


def _summary(doc: dict) -> dict:
    return {
        "rows": doc["rows"],
        "comparison": doc["comparison"],
        "iso_cost": doc["iso_cost"],
        "implied_accounts_spread": implied_spread(doc["comparison"]),
        "boundary": doc["boundary"],
    }


def _reading(doc: dict) -> dict:
    """The numbers the band reports for one corner."""
    rows = {r["connection"]: r for r in doc["rows"]}
    ratio = doc["iso_cost"].get("derived_plain_over_tls") or {}
    implied = {c["policy"]: c["implied_accounts"] for c in doc["comparison"] if "implied_accounts" in c}
    return {
        "keep_under_mb": {k: r["keep_under_mb"] for k, r in rows.items()},
        "above_mb": {k: r["above_mb"] for k, r in rows.items()},
        "plain_over_tls_short": ratio.get("short"),
        "plain_over_tls_long": ratio.get("long"),
        "implied_accounts": implied,
        "implied_accounts_spread": implied_spread(doc["comparison"]),
    }


def _band(corners: list[dict]) -> dict:
    """min/max over the corners of every number in :func:`_reading`."""

    def walk(values: list):
        first = values[0]
        if isinstance(first, dict):
            return {k: walk([v[k] for v in values if k in v]) for k in first}
        nums = [v for v in values if v is not None]
        return [min(nums), max(nums)] if nums else None

    return walk(corners)


def enrich(
    guidance: dict, model: Model, grid: Grid, caps: dict, measure_cpu=cpu_ratio, measure_tls=tls_band_ms
):
    """Rewrite ``guidance`` (analysis.analyse's document) for the era profile; in place."""
    era: EraProfile = grid.era
    s, backend, slo = grid.guidance, guidance["backend"], guidance["latency_slo_ms"]
    ratio = measure_cpu(era)
    handshakes = measure_tls(era)
    main_bits = str(era["rsa_bits"])
    measured_here = _summary(guidance)
    era_model = scaled(model, ratio["central"])
    era_doc = derive(era_model, s, [backend], slo, caps)
    modern = modern_model(era)
    modern_doc = derive(modern, s, [backend], slo)
    corners = []
    for factor, bits in itertools.product((ratio["low"], ratio["high"]), sorted(handshakes)):
        delta = (handshakes[bits] - handshakes[main_bits]) / 1000.0
        corner = derive(scaled(model, factor, delta), s, [backend], slo, caps)
        corners.append(_reading(corner) | {"cpu_ratio": factor, "rsa_bits": int(bits)})
    guidance.update(era_doc)
    provider_terms = inverse.provider_terms(guidance["provider"])
    terms = {
        "era": inverse.measured_terms(era_model, s, backend),
        "era_on_this_cpu": inverse.measured_terms(model, s, backend),
        "modern": inverse.measured_terms(modern, s, backend),
    }
    profiles = {"era": era_model, "modern": modern}
    daemon = None
    if era.has_daemon:
        daemon_here = daemon_model(era)
        profiles["era_daemon"] = scaled(daemon_here, ratio["central"])
        daemon_doc = derive(profiles["era_daemon"], s, [backend], slo)
        b, d, e = era["daemon_b_scan_ms_per_mb"], era["daemon_d_tls_ms"], era["daemon_e_tls_ms_per_mb"]
        terms["era_daemon"] = {
            "a_ms": era["daemon_a_ms"] * ratio["central"],
            "b_scan_ms_per_mb": b * ratio["central"],
            "d_tls_ms": d * ratio["central"],
            "e_tls_ms_per_mb": e * ratio["central"],
            "d_over_b_mb": d / b,
            "e_over_b": e / b,
        }
        daemon = _summary(daemon_doc)
    guidance["era"] = {
        "description": era.table.description,
        "parameters": era.parameters() + _measured_parameters(ratio, handshakes),
        "cpu_ratio": ratio,
        "handshake_cpu_ms_here": handshakes,
        "implied_accounts_spread": implied_spread(guidance["comparison"]),
        "measured_here": measured_here,
        "modern": _summary(modern_doc),
        "band": _band(corners) | {"corners": corners},
        "at_provider_load": {name: at_provider_load(m, s, backend, slo) for name, m in profiles.items()},
    }
    if daemon is not None:
        guidance["era"]["daemon"] = daemon
    guidance["inverse"] = {
        "provider": provider_terms,
        "measured": terms,
        "gap": inverse.compare(provider_terms, terms),
    }
    guidance["boundaries_compared"] = {"era": era_doc["boundary"], "modern": modern_doc["boundary"]}
    if daemon is not None:
        guidance["boundaries_compared"]["era_daemon"] = daemon["boundary"]


def _measured_parameters(ratio: dict, handshakes: dict) -> list[dict]:
    """The parameters this run measured, in the same form as the cited ones."""
    out = []
    for alg, v in ratio["per_algorithm"].items():
        out.append(
            {
                "name": f"here_speed_{alg.replace('-', '')}",
                "value": round(v["here_kBps"], 1),
                "unit": f"kB/s at {ratio['block_bytes']} bytes",
                "source": "measured by this run: openssl speed -mr -seconds 1"
                + (f", OPENSSL_ia32cap={ratio['openssl_ia32cap']}" if ratio["openssl_ia32cap"] else ""),
            }
        )
    out.append(
        {
            "name": "era_cpu_ratio",
            "value": round(ratio["central"], 3),
            "unit": f"x this CPU's CPU time (band {ratio['low']:.2f}-{ratio['high']:.2f})",
            "source": "geometric mean of here/era over the algorithms above (band: their min and max)",
        }
    )
    for bits, ms in handshakes.items():
        out.append(
            {
                "name": f"handshake_rsa{bits}_here",
                "value": round(ms, 3),
                "unit": "ms server CPU per full handshake",
                "source": "measured by this run: real handshakes, era suite, no resumption, AES-NI off",
            }
        )
    return out
