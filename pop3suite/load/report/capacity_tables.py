"""The tables of a capacity run: what ran, the cells, the cost-model fit and
the derived guidance beside the provider's, with agree/differ verdicts."""

from __future__ import annotations

from pathlib import Path

from .html import Raw, esc, note, table, verdict_cell
from .inputs import CapacityData

MB = 1_000_000
GUIDANCE_FIELDS = ("backend", "keep_under_mb", "above_mb", "poll_min_above", "poll_min")


def header_table(data: CapacityData) -> str:
    """Scenario, timing, machine (CPUs, load average before/after), target."""
    c = data.capacity
    scenario, machine, target = c.get("scenario") or {}, c.get("machine") or {}, c.get("target") or {}
    rows: list[tuple[str, object]] = [
        ("scenario", scenario.get("name")),
        ("scenario file", scenario.get("file")),
        ("description", scenario.get("description")),
        ("started", c.get("started")),
        ("finished", c.get("finished")),
        ("target", f"{target.get('kind', '?')} {target.get('url') or ''}".strip()),
        ("machine CPUs", machine.get("cpus")),
        ("load average before", _joined(machine.get("loadavg_before"))),
        ("load average after", _joined(machine.get("loadavg_after"))),
        ("cells", len(data.cells)),
        ("cells skipped", len(c.get("skipped") or []) or None),
        ("interrupted", "yes: the sweep did not finish" if c.get("interrupted") else None),
        ("quick run", "yes" if c.get("quick") else None),
        ("saturated cells", sum(1 for cell in data.cells if cell.get("saturated"))),
    ]
    return table(["parameter", "value"], [(k, v) for k, v in rows if v is not None], 2)


def _joined(values: object) -> str | None:
    if values is None:
        return None
    return (
        ", ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in values)
        if isinstance(values, list)
        else str(values)
    )


def cells_table(data: CapacityData, out: Path) -> str:
    """One row per cell: parameters, measurements, saturation; the cell's id
    links to its own load-run directory's Locust report when it exists."""
    if not data.cells:
        return note("capacity.json lists no cells.")
    rows = []
    for cell in data.cells:
        p, m = cell.get("params") or {}, cell.get("measured") or {}
        cell_id = str(cell.get("id"))
        locust = data.path / str(cell.get("dir") or f"cells/{cell_id}") / "locust.html"
        link = (
            Raw(f'<td class="text"><a href="{esc(_relative(locust, out))}">{esc(cell_id)}</a></td>')
            if locust.is_file()
            else cell_id
        )
        size = p.get("mailbox_bytes")
        rows.append(
            [
                link,
                p.get("backend"),
                p.get("tls"),
                p.get("behaviour"),
                round(size / MB, 3) if isinstance(size, int | float) else None,
                p.get("messages"),
                p.get("poll_interval_s"),
                p.get("real_poll_interval_s"),
                p.get("users"),
                m.get("polls"),
                m.get("offered_polls_per_s"),
                m.get("polls_per_s"),
                _ms(m.get("cpu_per_poll_s")),
                m.get("cpu_util"),
                m.get("p50_ms"),
                m.get("p95_ms"),
                m.get("p99_ms"),
                m.get("max_ms"),
                m.get("errors"),
                m.get("timeouts"),
                m.get("idle_timeouts"),
                verdict_cell(not cell.get("saturated"), "ok", "saturated"),
                "; ".join(cell.get("saturation_reasons") or []),
                "yes" if cell.get("held_out") else "",
            ]
        )
    headers = [
        "cell",
        "store",
        "tls",
        "behaviour",
        "mailbox MB",
        "messages",
        "poll s",
        "real poll s",
        "users",
        "polls",
        "offered polls/s",
        "polls/s",
        "CPU/poll ms",
        "CPU util",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "errors",
        "timeouts",
        "idle timeouts",
        "state",
        "why",
        "held out",
    ]
    unmeasured = [
        f"{c.get('id')}: {(c.get('measured') or {})['cpu_error']}"
        for c in data.cells
        if (c.get("measured") or {}).get("cpu_error")
    ]
    return table(headers, rows, 4) + "".join(note(f"CPU not measured in {line}") for line in unmeasured)


def _ms(seconds: object) -> object:
    return seconds * 1000 if isinstance(seconds, int | float) else seconds  # fmt() rounds to 6 digits


def _relative(path: Path, out: Path) -> str:
    import os

    return Path(os.path.relpath(path.resolve(), out.resolve())).as_posix()


def model_table(model: dict | None) -> str:
    """The cost-model fit: formula, coefficients with units, R², RMSE, and
    the held-out cell's predicted vs measured CPU per poll."""
    if not model:
        return note("No cost model (model.json absent: too few cells, or the fit was not run).")
    if model.get("skipped"):
        return note(f"No cost model: {model['error']}.")
    if "error" in model:
        return note(f"No cost model: the fit failed ({model['error']}; {model.get('n_cells', '?')} cells).")
    units = model.get("units") or {}
    coefficients = model.get("coefficients") or {}
    terms = list(model.get("terms") or coefficients)
    text = f"<p>Model: <code>{esc(model.get('formula', '?'))}</code></p>"
    text += table(
        ["term", "coefficient", "unit"], [[t, coefficients.get(t), units.get(t, "")] for t in terms], 1
    )
    fit_rows: list[list[object]] = [
        ["R²", model.get("r2")],
        ["RMSE (s CPU per poll)", model.get("rmse_s")],
        ["cells fitted", model.get("n_cells")],
    ]
    if model.get("rank_deficient"):
        fit_rows.append(["rank deficient", "yes: some terms are not separable with these cells"])
    held = model.get("held_out") or {}
    if held:
        fit_rows += [
            ["held-out cell", held.get("cell")],
            ["held-out predicted CPU/poll (ms)", _ms(held.get("predicted_cpu_per_poll_s"))],
            ["held-out measured CPU/poll (ms)", _ms(held.get("measured_cpu_per_poll_s"))],
            ["held-out prediction error (%)", held.get("error_pct")],
        ]
    text += table(["fit", "value"], fit_rows, 1)
    if model.get("quality"):
        text += f'<p class="how">Quality: {esc(model["quality"])}</p>'
    residuals = model.get("residuals") or {}
    if residuals:
        rows = [[k, _ms(v)] for k, v in sorted(residuals.items(), key=lambda kv: -abs(kv[1] or 0))]
        text += "<details><summary>Residuals per cell (ms CPU per poll, largest first)</summary>"
        text += table(["cell", "residual ms"], rows) + "</details>"
    return text


def guidance_table(guidance: dict | None) -> str:
    """Derived guidance beside the provider's, then the field-by-field
    comparison with agree/differ verdicts."""
    if not guidance:
        return note("No derived guidance (guidance.json absent).")
    text = (
        f"<p>For {esc(guidance.get('accounts', '?'))} accounts, a CPU budget of "
        f"{esc(guidance.get('cpu_budget_cores', '?'))} cores and a latency SLO of "
        f"{esc(guidance.get('latency_slo_ms', '?'))} ms:</p>"
    )
    headers = [
        "source",
        "connection",
        "store",
        "keep under MB",
        "if larger than MB",
        "then poll no more often than (min)",
        "otherwise (min)",
        "policy",
    ]
    rows = []
    era = guidance.get("era") or {}
    sources = [("era (derived)" if era else "derived", guidance.get("rows") or [])]
    if era:
        sources += [
            ("era cells on this CPU", (era.get("measured_here") or {}).get("rows") or []),
            ("modern reference server", (era.get("modern") or {}).get("rows") or []),
            ("era daemon stack (popa3d + stunnel)", (era.get("daemon") or {}).get("rows") or []),
        ]
    for source, items in (
        *sources,
        ("provider", guidance.get("provider") or []),
    ):
        for row in items:
            rows.append(
                [source, row.get("connection"), *[row.get(f) for f in GUIDANCE_FIELDS], row.get("policy", "")]
            )
    text += table(headers, rows, 3) if rows else note("guidance.json has no rows.")
    comparison = guidance.get("comparison") or []
    if comparison:
        cmp_rows = [
            [
                c.get("connection"),
                c.get("policy", ""),
                c.get("field"),
                c.get("derived"),
                c.get("provider"),
                _agreement(c.get("verdict")),
                c.get("note", ""),
            ]
            for c in comparison
        ]
        headers = ["connection", "provider policy", "field", "derived", "provider", "verdict", "note"]
        text += table(headers, cmp_rows, 3)
    if era:
        text += era_tables(guidance)
    return text


def _fmt(value: object, digits: int = 2) -> str:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        return f"{value[0]:.{digits}f} - {value[1]:.{digits}f}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "n/a" if value is None else str(value)


def era_tables(guidance: dict) -> str:
    """The era profile (pop3suite/load/capacity/era_guidance.py): its parameters with
    their sources, the plain/TLS ratios and implied accounts of the era, the
    modern server and the provider, the band, and the inverse reading."""
    era = guidance["era"]
    text = "<h4>Era profile: parameters and their sources</h4>"
    text += f"<p>{esc(era.get('description', ''))}</p>"
    params = [[p["name"], p["value"], p["unit"], p["source"]] for p in era.get("parameters") or []]
    text += table(["parameter", "value", "unit", "source"], params, 3)
    iso = guidance.get("iso_cost") or {}
    ratio = iso.get("derived_plain_over_tls") or {}
    modern = (era.get("modern") or {}).get("iso_cost", {}).get("derived_plain_over_tls") or {}
    here = (era.get("measured_here") or {}).get("iso_cost", {}).get("derived_plain_over_tls") or {}
    band = era.get("band") or {}
    implied = {
        c["policy"]: c.get("implied_accounts")
        for c in guidance.get("comparison") or []
        if "implied_accounts" in c
    }
    modern_implied = {
        c["policy"]: c.get("implied_accounts")
        for c in (era.get("modern") or {}).get("comparison") or []
        if "implied_accounts" in c
    }
    daemon = era.get("daemon") or {}
    daemon_ratio = (daemon.get("iso_cost") or {}).get("derived_plain_over_tls") or {}
    daemon_implied = {
        c["policy"]: c.get("implied_accounts")
        for c in daemon.get("comparison") or []
        if "implied_accounts" in c
    }
    rows = [
        ["plain/TLS budget ratio, short tier", "2.50", _fmt(ratio.get("short")),
         _fmt(band.get("plain_over_tls_short")), _fmt(here.get("short")), _fmt(modern.get("short")),
         _fmt(daemon_ratio.get("short"))],
        ["plain/TLS budget ratio, long tier", "1.80", _fmt(ratio.get("long")),
         _fmt(band.get("plain_over_tls_long")), _fmt(here.get("long")), _fmt(modern.get("long")),
         _fmt(daemon_ratio.get("long"))],
    ]  # fmt: skip
    for policy, value in implied.items():
        rows.append(
            [f"accounts per {guidance.get('cpu_budget_cores', 1):g} core(s) that {policy} fits exactly", "-",
             _fmt(value, 0), _fmt((band.get("implied_accounts") or {}).get(policy), 0), "-",
             _fmt(modern_implied.get(policy), 0), _fmt(daemon_implied.get(policy), 0)]
        )  # fmt: skip
    rows.append(
        ["implied accounts spread (max/min, 1 = one consistent server)", "1.00",
         _fmt(era.get("implied_accounts_spread")), _fmt(band.get("implied_accounts_spread")),
         _fmt((era.get("measured_here") or {}).get("implied_accounts_spread")),
         _fmt((era.get("modern") or {}).get("implied_accounts_spread")),
         _fmt(daemon.get("implied_accounts_spread"))]
    )  # fmt: skip
    text += "<h4>Forward: the era's table against the provider's and the modern one</h4>"
    headers = ["reading", "provider", "era", "era band (sources' ranges)", "era cells on this CPU", "modern",
               "era daemon stack"]  # fmt: skip
    text += table(headers, rows, 3)
    at_load = era.get("at_provider_load") or {}
    if at_load:
        text += (
            "<p>Plain/TLS budget ratio per tier at the load where the provider's plain size of that tier "
            "exactly fits (provider: 2.50x short, 1.80x long; within ±25 % is the target):</p>"
        )
        load_rows = [
            [name, _fmt(v["plain_over_tls"].get("short")), v["short"]["accounts"],
             _fmt(v["plain_over_tls"].get("long")), v["long"]["accounts"]]
            for name, v in at_load.items()
        ]  # fmt: skip
        headers = ["profile", "short tier ratio", "at accounts", "long tier ratio", "at accounts"]
        text += table(headers, load_rows, 3)
    inv = guidance.get("inverse") or {}
    prov = inv.get("provider") or {}
    if prov:
        text += "<h4>Inverse: the cost terms the provider's table implies</h4>"
        text += f"<p>{esc(prov.get('note', ''))}</p>"
        inv_rows = [
            [
                "provider (implied)",
                "-",
                "-",
                "-",
                _fmt(prov.get("d_over_b_mb"), 1),
                _fmt(prov.get("e_over_b")),
                "-",
            ]
        ]
        gap = inv.get("gap") or {}
        for name, m in (inv.get("measured") or {}).items():
            inv_rows.append(
                [name, _fmt(m.get("d_tls_ms")), _fmt(m.get("b_scan_ms_per_mb")),
                 _fmt(m.get("e_tls_ms_per_mb")), _fmt(m.get("d_over_b_mb"), 1), _fmt(m.get("e_over_b")),
                 _fmt((gap.get(name) or {}).get("d_factor_needed"), 1)]
            )  # fmt: skip
        headers = ["profile", "TLS per poll d (ms)", "scan per MB b (ms)", "TLS per mailbox MB e (ms)",
                   "d/b (MB of scanning)", "e/b", "d/b would have to grow x"]  # fmt: skip
        text += table(headers, inv_rows, 3)
    return text


def _agreement(verdict: object) -> str:
    """The verdict as written (agrees / looser / stricter / differ ...),
    green when it agrees and red otherwise."""
    text = str(verdict)
    return verdict_cell(text.lower() in ("agree", "agrees"), text, text)
