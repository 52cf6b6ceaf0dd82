"""The cost model recovers known coefficients; guidance derived from it is
monotonic and compares against the provider's table."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pop3suite.load.capacity.costmodel import FitError, Model, PollShape, fit
from pop3suite.load.capacity.grid import GuidanceSettings
from pop3suite.load.capacity.guidance import PROVIDER, derive, derive_row

TRUE = {"a": 0.004, "b_scan": 0.0005, "c_sent": 0.002, "d_tls": 0.003, "e_tls_sent": 0.001}


def _truth(p: PollShape, coefficients: dict[str, float]) -> float:
    mb, sent = p.scanned_bytes / 1e6, p.sent_bytes / 1e6
    tls = 1.0 if p.tls else 0.0
    return (
        coefficients["a"]
        + coefficients["b_scan"] * mb
        + coefficients["c_sent"] * sent
        + coefficients["d_tls"] * tls
        + coefficients["e_tls_sent"] * tls * sent
        + coefficients.get("a_mbox", 0) * (p.backend == "mbox")
        + coefficients.get("b_mbox_scan", 0) * (p.backend == "mbox") * mb
        + coefficients.get("f_rewrite", 0) * p.rewritten_bytes / 1e6
    )


def _grid(backends=("maildir",)) -> list[PollShape]:
    shapes = []
    for backend in backends:
        for size in (1e6, 5e6, 20e6, 50e6):
            for sent in (0.0, 2e5, 1e6):
                for tls in (False, True):
                    rewrite = size if backend == "mbox" and sent else 0.0
                    shapes.append(PollShape(size, sent, tls, backend, rewrite))
    return shapes


def test_fit_recovers_known_coefficients_exactly() -> None:
    samples = {f"c{i}": (p, _truth(p, TRUE)) for i, p in enumerate(_grid())}
    model = fit(samples)
    assert model.terms == ["a", "b_scan", "c_sent", "d_tls", "e_tls_sent"]
    for term, value in TRUE.items():
        assert model.coefficients[term] == pytest.approx(value, rel=1e-6, abs=1e-9)
    assert model.r2 == pytest.approx(1.0)
    assert model.rmse_s < 1e-9


def test_fit_with_noise_and_mbox_terms() -> None:
    truth = {**TRUE, "a_mbox": 0.001, "b_mbox_scan": 0.004, "f_rewrite": 0.003}
    rng = random.Random(3)
    samples = {
        f"c{i}": (p, _truth(p, truth) * (1 + rng.gauss(0, 0.02)))
        for i, p in enumerate(_grid(("maildir", "mbox")))
    }
    model = fit(samples)
    assert set(model.terms) == set(truth)
    assert model.coefficients["b_mbox_scan"] == pytest.approx(0.004, rel=0.1)
    assert model.coefficients["f_rewrite"] == pytest.approx(0.003, rel=0.15)
    assert model.r2 > 0.97
    assert not model.rank_deficient


def test_fit_drops_empty_and_duplicate_columns() -> None:
    shapes = [PollShape(s, 0.0, False, "mbox") for s in (1e6, 5e6, 9e6)]
    model = fit({f"c{i}": (p, 0.002 + 0.003 * p.scanned_bytes / 1e6) for i, p in enumerate(shapes)})
    assert model.terms == ["a", "b_scan"]  # a_mbox and b_mbox_scan would copy them
    assert model.coefficients["b_scan"] == pytest.approx(0.003)


def test_fit_refuses_too_few_cells() -> None:
    shapes = [PollShape(1e6, 1e5, True), PollShape(2e6, 0, False)]
    with pytest.raises(FitError, match="cannot fit"):
        fit({f"c{i}": (p, 0.01) for i, p in enumerate(shapes)})


def _model(**coefficients: float) -> Model:
    terms = list(coefficients)
    return Model(terms, coefficients, 1.0, 0.0, {})


def test_guidance_monotonic_and_tiered() -> None:
    model = _model(a=0.004, b_scan=0.002, d_tls=0.006)
    s = GuidanceSettings(accounts=2000, cpu_budget_cores=1.0, download_per_poll_kb=0.0)
    doc = derive(model, s, ["maildir"], slo_ms=5000)
    boundary = doc["boundary"]["tls"]
    intervals = [m for _mb, m in boundary]
    assert intervals == sorted(intervals), "bigger mailboxes must never get shorter intervals"
    for conn in ("tls", "plain"):
        row = next(r for r in doc["rows"] if r["connection"] == conn)
        assert 0 < row["above_mb"] <= row["keep_under_mb"]
    tls = next(r for r in doc["rows"] if r["connection"] == "tls")
    plain = next(r for r in doc["rows"] if r["connection"] == "plain")
    assert tls["keep_under_mb"] < plain["keep_under_mb"]  # TLS costs more per poll
    # Analytic check: P_min(S) = N (a + d + b S) / (60 B) <= 15  =>  S <= (15*60/N - a - d) / b
    expected = (15 * 60 / 2000 - 0.010) / 0.002
    assert tls["keep_under_mb"] == pytest.approx(expected, abs=0.5)
    ratio = doc["iso_cost"]["tls_over_plain_cpu_per_poll"]
    assert ratio["1"] == pytest.approx(
        (0.010 + 0.002) / (0.004 + 0.002)
    )  # the handshake weighs most when small
    assert ratio["1"] > ratio["90"] > 1
    heat = np.array(doc["heatmap"]["load_cores"]["tls"])
    assert (np.diff(heat, axis=0) >= 0).all() and (np.diff(heat, axis=1) <= 0).all()


def test_guidance_negative_size_slope_is_flattened() -> None:
    model = _model(a=0.01, b_scan=-0.0001)
    s = GuidanceSettings(accounts=100, cpu_budget_cores=1.0, download_per_poll_kb=0.0)
    row = derive_row(model, "plain", "maildir", s, slo_ms=5000, measured_cap_mb=None)
    assert "does not bound" in row["note"]
    boundary = derive(model, s, ["maildir"], 5000)["boundary"]["plain"]
    assert [m for _mb, m in boundary] == sorted(m for _mb, m in boundary)


def test_guidance_latency_and_measured_caps() -> None:
    model = _model(a=0.001, b_scan=0.1)  # 100 ms per MB: 50 MB is a 5 s poll
    s = GuidanceSettings(accounts=1, cpu_budget_cores=1.0, download_per_poll_kb=0.0)
    row = derive_row(model, "plain", "maildir", s, slo_ms=2000, measured_cap_mb=None)
    assert row["keep_under_mb"] == pytest.approx(19.5, abs=0.5)
    assert "SLO" in row["note"]
    capped = derive_row(model, "plain", "maildir", s, slo_ms=2000, measured_cap_mb=5.0)
    assert capped["keep_under_mb"] == 5.0 and capped["above_mb"] <= 5.0


def test_comparison_verdicts_against_both_ssl_policies() -> None:
    # Choose b so the derived plain keep-under is exactly the provider's 90 MB.
    accounts, budget = 1000, 1.0
    b = (15 * 60 * budget / accounts - 0.004) / 90
    model = _model(a=0.004, b_scan=b, d_tls=0.6)  # TLS keep-under: (0.9 - 0.604) / b = 29.7 MB
    s = GuidanceSettings(accounts=accounts, cpu_budget_cores=budget, download_per_poll_kb=0.0)
    doc = derive(model, s, ["maildir"], slo_ms=60000)
    verdicts = {(c["policy"], c["field"]): c["verdict"] for c in doc["comparison"]}
    assert verdicts[("provider-plain", "keep_under_mb")] == "agrees"
    assert verdicts[("provider-ssl-50MB", "keep_under_mb")] == "stricter"
    assert verdicts[("provider-ssl-30MB", "keep_under_mb")] == "agrees"
    assert {p["policy"] for p in doc["provider"]} == {p["policy"] for p in PROVIDER}
    ratio = doc["iso_cost"]["derived_plain_over_tls"]["long"]
    assert ratio > 1
