"""After the sweep: saturation marks, the held-out cell, the cost-model fit
and the guidance document (``model.json``, ``guidance.json``).

Which cells the fit uses: every cell with completed polls and a CPU
measurement, except the held-out one and cells where more than half the
polls failed (their CPU per poll mostly measures failures).  Saturated cells
stay in: CPU seconds are still CPU seconds when latency is bad.

Held-out cell ("auto"): among usable cells whose mailbox size is strictly
inside the measured range (an interpolation, not an extrapolation), the
middle one in id order; with only two sizes, the middle usable cell.
"""

from __future__ import annotations

from .costmodel import FitError, Model, PollShape, fit, quality_note
from .grid import Grid
from .guidance import derive
from .saturation import cell_reasons, knee_reasons

CPU_NOT_MEASURED = (
    "CPU was not measured (no --server-pid): cost model and guidance skipped; "
    "capacity.json has the polls, latency and errors of every cell"
)


def mark_saturation(grid: Grid, cells: list[dict]) -> None:
    for c in cells:
        c["saturation_reasons"] = cell_reasons(c["measured"], grid.slo_p95_ms, grid.slo_error_rate)
    points = [
        (
            c["id"],
            (c["params"]["backend"], c["params"]["tls"], c["params"]["mailbox_mb"], c["params"]["behaviour"]),
            c["measured"]["offered_polls_per_s"],
            c["measured"]["p95_ms"],
        )
        for c in cells
    ]
    for cell_id, reason in knee_reasons(points).items():
        next(c for c in cells if c["id"] == cell_id)["saturation_reasons"].append(reason)
    for c in cells:
        c["saturated"] = bool(c["saturation_reasons"])


def usable(c: dict) -> bool:
    m = c["measured"]
    return bool(m["polls"]) and m["cpu_per_poll_s"] is not None and m["errors"] <= m["polls"] / 2


def shape(c: dict) -> PollShape:
    m, p = c["measured"], c["params"]
    rewrite = p["backend"] == "mbox" and p["behaviour"] == "delete"
    return PollShape(
        scanned_bytes=float(m["bytes_scanned_per_poll"]),
        sent_bytes=float(m["bytes_sent_per_poll"]),
        tls=p["tls"] != "none",
        backend=p["backend"],
        rewritten_bytes=float(m["bytes_scanned_per_poll"]) if rewrite else 0.0,
    )


def choose_held_out(grid: Grid, cells: list[dict]) -> dict | None:
    good = sorted((c for c in cells if usable(c)), key=lambda c: c["id"])
    if len(good) < 3:
        return None
    if grid.hold_out != "auto":
        return next((c for c in good if c["id"] == grid.hold_out), None)
    sizes = [c["params"]["mailbox_mb"] for c in good]
    inner = [c for c in good if min(sizes) < c["params"]["mailbox_mb"] < max(sizes)]
    pool = inner or good
    return pool[len(pool) // 2]


def analyse(grid: Grid, cells: list[dict]) -> tuple[dict | None, dict | None, Model | None]:
    """Marks the cells in place; returns (model.json, guidance.json, model).
    Without any CPU reading (an external target without --server-pid) the
    fit is skipped: model.json then says why, and there is no guidance."""
    mark_saturation(grid, cells)
    if not any(c["measured"]["server_cpu_s"] is not None for c in cells):
        for c in cells:
            c["held_out"] = False
        return {"error": CPU_NOT_MEASURED, "skipped": True, "n_cells": 0}, None, None
    held = choose_held_out(grid, cells)
    for c in cells:
        c["held_out"] = c is held
    samples = {
        c["id"]: (shape(c), c["measured"]["cpu_per_poll_s"]) for c in cells if usable(c) and c is not held
    }
    try:
        model = fit(samples)
    except FitError as error:
        return {"error": str(error), "n_cells": len(samples)}, None, None
    doc = model.to_json()
    error_pct = None
    if held is not None:
        predicted = model.predict(shape(held))
        measured = held["measured"]["cpu_per_poll_s"]
        error_pct = (predicted - measured) / measured * 100 if measured else None
        doc["held_out"] = {
            "cell": held["id"],
            "predicted_cpu_per_poll_s": predicted,
            "measured_cpu_per_poll_s": measured,
            "error_pct": error_pct,
        }
    else:
        doc["held_out"] = None
    doc["quality"] = quality_note(model, error_pct)
    doc["fitted_cells"] = sorted(samples)
    doc["excluded_cells"] = sorted(c["id"] for c in cells if not usable(c))
    backends = sorted({c["params"]["backend"] for c in cells if usable(c)})
    caps = measured_caps(grid, cells)
    guidance = derive(model, grid.guidance, backends, grid.slo_p95_ms, caps)
    if grid.era is not None:  # the era profile: its CPU, its key sizes, the inverse reading
        from .era_guidance import enrich

        enrich(guidance, model, grid, caps)
    return doc, guidance, model


def measured_caps(grid: Grid, cells: list[dict]) -> dict[tuple[str, str], float]:
    """(connection, backend) -> the largest measured size below the smallest
    size whose cells broke the p95 SLO (not from offered load)."""
    caps: dict[tuple[str, str], float] = {}
    tls_mode = grid.guidance.connection_tls
    for c in cells:
        p = c["params"]
        if p["behaviour"] != grid.guidance.behaviour or p["tls"] not in ("none", tls_mode):
            continue
        reasons = c["saturation_reasons"]
        if not any(r.startswith("slo") for r in reasons) or any(
            r.startswith(("rate", "knee")) for r in reasons
        ):
            continue
        key = ("plain" if p["tls"] == "none" else "tls", p["backend"])
        smaller = [
            o["params"]["mailbox_mb"]
            for o in cells
            if o["params"]["backend"] == p["backend"]
            and o["params"]["tls"] == p["tls"]
            and o["params"]["mailbox_mb"] < p["mailbox_mb"]
        ]
        cap = max(smaller) if smaller else 0.0
        caps[key] = min(caps.get(key, cap), cap)
    return caps
