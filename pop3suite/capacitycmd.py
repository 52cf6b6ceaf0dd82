"""``pop3suite capacity``: sweep a grid of load cells, fit the CPU cost model
and derive provider-style guidance (docs/capacity.md).

Writes ``DIR/capacity.json`` (cells and their measurements; rewritten after
every cell, so an interrupted sweep keeps what finished), ``DIR/model.json``
and ``DIR/guidance.json``, renders the HTML report when ``load.report``
exists, and prints the guidance table and the held-out error.  Exit status:
0 when the sweep and the fit completed, 1 when the fit was impossible or
the sweep was interrupted, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

EXIT_USAGE = 2


def add_capacity_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "capacity",
        help="sweep a capacity grid, fit the CPU cost model, derive mailbox/poll guidance",
        description="Run every cell of a capacity scenario (scenarios/capacity-*.toml) as a load run "
        "against a fresh embedded server, fit CPU per poll, and derive a guidance table.",
    )
    p.add_argument("scenario", help="capacity scenario name (capacity-quick, capacity-full) or a TOML file")
    p.add_argument("--report", metavar="DIR", help="results directory (default results/<scenario>-<time>)")
    p.add_argument(
        "--target",
        action="append",
        metavar="URL",
        help="pop3://HOST:PORT and/or pop3s://HOST:PORT of an external server (repeatable); its accounts "
        "must already hold the mail; backend and prefill are then not controlled",
    )
    p.add_argument("--smtp", metavar="URL", help="smtp://HOST:PORT for delete-cell refill (with --target)")
    p.add_argument("--password", help="password of every account on --target")
    p.add_argument("--cafile", help="CA file for --target's certificate")
    p.add_argument("--insecure", action="store_true", help="do not verify --target's certificate")
    p.add_argument("--server-pid", type=int, help="PID of the --target server (CPU is read from it)")
    p.add_argument("--quick", action="store_true", help="run each cell for quick_cell_time seconds only")
    p.set_defaults(func=cmd_capacity)


def _fail(message: str) -> int:
    print(f"pop3suite: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """SIGTERM, and SIGINT even when a background shell ignored it, stop the
    sweep like Ctrl-C: the running cell is cleaned up, finished cells kept."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)


def _write(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def cmd_capacity(args: argparse.Namespace) -> int:
    from load.capacity.analysis import analyse
    from load.capacity.grid import GridError, load_grid
    from load.capacity.guidance import render
    from load.capacity.sweep import run_sweep

    try:
        grid = load_grid(args.scenario)
    except GridError as error:
        return _fail(str(error))
    out = Path(args.report or f"results/{grid.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    external = None
    if args.target:
        from pop3suite.loadcmd import _target_run

        try:
            external = _target_run(args)
        except ValueError as error:
            return _fail(str(error))
        if any(c.behaviour == "delete" for c in grid.cells) and not external.get("smtp_port"):
            return _fail("delete cells refill mailboxes by SMTP: give --smtp smtp://HOST:PORT")
    doc = {
        "kind": "capacity",
        "scenario": {"name": grid.name, "file": str(grid.path), "description": grid.description},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "finished": None,
        "quick": bool(args.quick),
        "machine": {"cpus": os.cpu_count(), "loadavg_before": list(os.getloadavg()), "loadavg_after": None},
        "target": {
            "kind": "external" if external else "embedded",
            "url": ", ".join(args.target) if args.target else None,
        },
        "cells": [],
        "skipped": [],
        "interrupted": False,
    }

    def checkpoint(cells: list[dict]) -> None:
        doc["cells"] = cells
        _write(out / "capacity.json", doc)

    print(f"pop3suite capacity {grid.name}: {len(grid.cells)} cells; results in {out}", file=sys.stderr)
    _stop_on_signals()
    cells, skipped, interrupted = run_sweep(
        grid, out, quick=args.quick, external=external, on_cell=checkpoint
    )
    model_doc, guidance_doc, _model = analyse(grid, cells) if cells else (None, None, None)
    doc.update(
        cells=cells,
        skipped=skipped,
        interrupted=interrupted,
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    doc["machine"]["loadavg_after"] = list(os.getloadavg())
    _write(out / "capacity.json", doc)
    if model_doc is not None:
        _write(out / "model.json", model_doc)
    if guidance_doc is not None:
        _write(out / "guidance.json", guidance_doc)
    try:
        from load.report import render_report
    except ImportError:
        print("capacity: no load.report module in this checkout; HTML report not rendered", file=sys.stderr)
    else:
        try:
            render_report([out], out)
        except Exception as error:  # the report is a view; the JSON files are the results
            print(f"capacity: rendering the report failed: {type(error).__name__}: {error}", file=sys.stderr)
    _print_summary(cells, model_doc, guidance_doc, render)
    print(f"results: {out}")
    if interrupted or guidance_doc is None:
        return 1
    return 0


def _print_summary(cells: list[dict], model_doc: dict | None, guidance_doc: dict | None, render) -> None:
    saturated = [c["id"] for c in cells if c["saturated"]]
    print(
        f"{len(cells)} cells, {len(saturated)} saturated" + (f": {', '.join(saturated)}" if saturated else "")
    )
    if model_doc is None:
        print("no model: no cells finished")
        return
    if "error" in model_doc:
        print(f"no model: {model_doc['error']}")
        return
    coefficients = ", ".join(
        f"{t} = {v * 1000:.4g} ms ({model_doc['units'][t].replace('s ', '', 1)})"
        for t, v in model_doc["coefficients"].items()
    )
    print(f"model: {coefficients}")
    print(
        f"  R^2 {model_doc['r2']:.3f}, RMSE {model_doc['rmse_s'] * 1000:.3f} ms "
        f"over {model_doc['n_cells']} cells"
    )
    held = model_doc.get("held_out")
    if held:
        print(
            f"  held-out {held['cell']}: predicted {held['predicted_cpu_per_poll_s'] * 1000:.3f} ms, "
            f"measured {held['measured_cpu_per_poll_s'] * 1000:.3f} ms, error {held['error_pct']:+.1f} %"
        )
    print(f"  quality: {model_doc['quality']}")
    if guidance_doc is not None:
        print(render(guidance_doc))
