"""Pure math and validation of the era profile: the inverse reading of the
provider's table, implied accounts, the era's [era] schema, the CPU ratio
and the band (pop3suite/load/capacity/era.py, inverse.py, era_guidance.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pop3suite.load.capacity import inverse
from pop3suite.load.capacity.costmodel import Model
from pop3suite.load.capacity.era import cpu_ratio, load_era
from pop3suite.load.capacity.era_guidance import enrich, scaled
from pop3suite.load.capacity.grid import GridError, GuidanceSettings, load_grid
from pop3suite.load.capacity.guidance import PROVIDER, derive, implied_accounts, implied_spread
from pop3suite.server.config import ConfigError
from pop3suite.server.prefork import parse_era

S = GuidanceSettings(accounts=2000, cpu_budget_cores=1.0, download_per_poll_kb=100.0)


def model(**ms: float) -> Model:
    """A model from coefficients given in ms (per poll, per MB)."""
    coefficients = {k: v / 1000 for k, v in ms.items()}
    return Model(terms=list(coefficients), coefficients=coefficients, r2=1.0, rmse_s=0.0, residuals={})


def test_provider_table_implies_tls_as_23_mb_of_scanning() -> None:
    terms = inverse.provider_terms(PROVIDER)
    assert terms["d_over_b_mb"] == pytest.approx(70 / 3)
    assert terms["e_over_b"] == pytest.approx(1 / 3)
    assert terms["tiers_a_over_b_mb"] == pytest.approx(-30.0)  # no non-negative fixed cost fits both tiers


def test_solve_recovers_known_terms() -> None:
    b, d, e = 2.0, 12.0, 0.5
    # tls(S_tls) = plain(S_plain) for two chosen plain sizes
    pairs = [{"plain_mb": p, "tls_mb": (p * b - d) / (b + e)} for p in (40.0, 100.0)]
    d_over_b, e_over_b = inverse.solve_tls_terms(pairs)
    assert d_over_b == pytest.approx(d / b)
    assert e_over_b == pytest.approx(e / b)


def test_measured_terms_read_the_cost_curves() -> None:
    m = model(a=5.0, b_scan=2.0, d_tls=3.0, c_sent=10.0, e_tls_sent=4.0)
    t = inverse.measured_terms(m, S, "mbox")
    assert t["b_scan_ms_per_mb"] == pytest.approx(2.0)
    assert t["d_tls_ms"] == pytest.approx(3.0 + 4.0 * 0.1)  # handshake + TLS on the 100 KB fetched
    assert t["a_ms"] == pytest.approx(5.0 + 10.0 * 0.1)
    assert t["d_over_b_mb"] == pytest.approx(3.4 / 2.0)
    gap = inverse.compare(inverse.provider_terms(PROVIDER), {"x": t})["x"]
    assert gap["d_factor_needed"] == pytest.approx((70 / 3) / 1.7)


def test_implied_accounts_is_the_budget_over_the_cost_at_the_row() -> None:
    m = model(a=10.0, b_scan=2.0)
    plain = next(p for p in PROVIDER if p["connection"] == "plain")
    assert implied_accounts(m, plain, S, "mbox") == pytest.approx(60 * 15 / ((10 + 90 * 2) / 1000))


def test_provider_consistent_costs_imply_one_account_count() -> None:
    """A TLS term of 40 MB of scanning makes the SSL 50 MB row and the plain
    90 MB row fit the same number of accounts (the long-tier equation)."""
    m = model(a=10.0, b_scan=2.0, d_tls=80.0)
    doc = derive(m, S, ["mbox"], 5000.0)
    implied = {c["policy"]: c["implied_accounts"] for c in doc["comparison"] if "implied_accounts" in c}
    assert implied["provider-ssl-50MB"] == pytest.approx(implied["provider-plain"])
    assert implied_spread(doc["comparison"]) == pytest.approx(
        implied["provider-ssl-30MB"] / implied["provider-plain"]
    )
    cheap = derive(model(a=10.0, b_scan=2.0, d_tls=1.0), S, ["mbox"], 5000.0)
    assert implied_spread(cheap["comparison"]) > implied_spread(doc["comparison"])


def test_scaled_model_multiplies_every_term_after_the_tls_shift() -> None:
    m = scaled(model(a=10.0, b_scan=2.0, d_tls=3.0), 4.0, tls_delta_s=0.001)
    assert m.coefficients["a"] == pytest.approx(0.040)
    assert m.coefficients["d_tls"] == pytest.approx(0.016)


def test_centos5_scenario_names_a_source_for_every_parameter() -> None:
    era = load_grid("capacity-centos5").era
    assert era is not None
    assert all(len(p["source"]) >= 12 for p in era.parameters())
    assert era.server_environment() == {"OPENSSL_ia32cap": "~0x200000200000000"}
    assert 'ciphers = "AES256-SHA"' in era.server_config()


def _params(**override: object) -> list[dict]:
    era = load_grid("capacity-centos5").era
    out = []
    for p in era.parameters():
        if p["name"] in override:
            if override[p["name"]] is None:
                continue
            p = p | {"value": override[p["name"]]}
        out.append(p)
    return out


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (_params(rsa_bits=None), "'rsa_bits' is missing"),
        (_params(rsa_bits="1024"), "rsa_bits: expected int"),
        (_params(rsa_bits=4096), "1024 or 2048"),
        (_params(aesni=1), "aesni: expected bool"),
    ],
)
def test_bad_era_parameters_name_the_parameter(parameters: list[dict], message: str) -> None:
    with pytest.raises(GridError, match=message):
        load_era({"parameters": parameters}, "f.toml")


def test_era_table_is_strict() -> None:
    with pytest.raises(GridError, match=r"f.toml: era\.colour"):
        load_era({"parameters": _params(), "colour": "red"}, "f.toml")
    twice = [*_params(), _params()[0]]
    with pytest.raises(GridError, match="given twice"):
        load_era({"parameters": twice}, "f.toml")


def test_cpu_ratio_is_the_geometric_mean_of_here_over_era() -> None:
    era = load_grid("capacity-centos5").era
    speeds = {"aes-256-cbc": 4 * 42125.99, "sha1": 2 * 141710.68, "des-ede3-cbc": 8 * 18945.37}
    seen_env: list[dict] = []

    def fake(alg: str, env: dict) -> float:
        seen_env.append(env)
        return speeds[alg]

    r = cpu_ratio(era, measure=fake)
    assert r["central"] == pytest.approx(4.0)
    assert (r["low"], r["high"]) == pytest.approx((2.0, 8.0))
    assert all(env == {"OPENSSL_ia32cap": "~0x200000200000000"} for env in seen_env)


def test_enrich_writes_era_band_inverse_and_boundaries() -> None:
    grid = load_grid("capacity-centos5")
    measured = model(a=14.0, b_scan=1.8, d_tls=2.6, c_sent=16.0, e_tls_sent=3.0)
    doc = derive(measured, grid.guidance, ["mbox"], 5000.0)
    ratio = {
        "per_algorithm": {},
        "central": 4.0,
        "low": 2.0,
        "high": 8.0,
        "block_bytes": 8192,
        "openssl_ia32cap": "",
    }
    enrich(
        doc,
        measured,
        grid,
        {},
        measure_cpu=lambda era: ratio,
        measure_tls=lambda era: {"1024": 0.5, "2048": 1.5},
    )
    era = doc["era"]
    assert {"parameters", "cpu_ratio", "measured_here", "modern", "band"} <= set(era)
    # The main table is the era CPU's: four times the cost, smaller sizes than on this CPU.
    here = {r["connection"]: r["keep_under_mb"] for r in era["measured_here"]["rows"]}
    assert all(r["keep_under_mb"] < here[r["connection"]] for r in doc["rows"])
    assert "derived_plain_over_tls" in doc["iso_cost"]
    low, high = era["band"]["implied_accounts"]["provider-plain"]
    central = next(
        c["implied_accounts"]
        for c in doc["comparison"]
        if c["policy"] == "provider-plain" and "implied_accounts" in c
    )
    assert low < central < high
    assert high / low == pytest.approx(4.0, rel=0.2)  # the CPU band (8/2) dominates
    assert doc["inverse"]["provider"]["d_over_b_mb"] == pytest.approx(70 / 3)
    assert set(doc["boundaries_compared"]) == {"era", "modern", "era_daemon"}
    assert set(era["at_provider_load"]) == {"era", "modern", "era_daemon"}
    assert not math.isnan(doc["inverse"]["measured"]["era"]["d_over_b_mb"])


def test_server_era_table_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    assert parse_era({"ciphers": "AES128-SHA", "max_tls": "1.2"}, path).ciphers == "AES128-SHA"
    with pytest.raises(ConfigError, match=r"era\.ciphers"):
        parse_era({"ciphers": "NO-SUCH-SUITE"}, path)
    with pytest.raises(ConfigError, match=r"unknown key 'era\.fork'"):
        parse_era({"fork": True}, path)
    with pytest.raises(ConfigError, match=r"era\.max_tls"):
        parse_era({"max_tls": "1.3"}, path)


def test_daemon_profile_and_per_tier_load_readings() -> None:
    """With the measured popa3d + stunnel terms the provider's ratios come
    within 25 % at each tier's own load; the reference server's era cells'
    kind of costs (TLS ~1 MB of scanning) stay near 1x."""
    from pop3suite.load.capacity.era_guidance import at_provider_load, daemon_model

    era = load_grid("capacity-centos5").era
    daemon = at_provider_load(daemon_model(era), S, "mbox", 5000.0)
    assert daemon["plain_over_tls"]["short"] == pytest.approx(2.5, rel=0.25)
    assert daemon["plain_over_tls"]["long"] == pytest.approx(1.8, rel=0.25)
    assert daemon["short"]["accounts"] < daemon["long"]["accounts"]  # the tiers are not one budget
    python = at_provider_load(model(a=14.5, b_scan=1.72, d_tls=2.1), S, "mbox", 5000.0)
    assert python["plain_over_tls"]["long"] < 1.1
    with pytest.raises(GridError, match="daemon terms come together"):
        load_era({"parameters": _params(daemon_b_scan_ms_per_mb=None)}, "f.toml")
