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
    for source, items in (
        ("derived", guidance.get("rows") or []),
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
    return text


def _agreement(verdict: object) -> str:
    """The verdict as written (agrees / looser / stricter / differ ...),
    green when it agrees and red otherwise."""
    text = str(verdict)
    return verdict_cell(text.lower() in ("agree", "agrees"), text, text)
