"""``pop3suite capacity``: sweep a grid of load cells, fit the CPU cost model
and derive provider-style guidance (docs/capacity.md).

Writes ``DIR/capacity.json`` (cells and their measurements; rewritten after
every cell, so an interrupted sweep keeps what finished), ``DIR/model.json``
and ``DIR/guidance.json``, renders the HTML report when ``pop3suite.load.report``
exists, and prints the guidance table and the held-out error.  Exit status:
0 when the sweep and the fit completed (or, against ``--target`` without
``--server-pid``, when the sweep completed: no fit is expected), 1 when the
fit was impossible or the sweep was interrupted, 2 for usage errors and a
target that cannot run the grid (pop3suite/load/capacity/external.py checks it first).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from pop3suite.loadcmd import add_rcpt_domain
from pop3suite.target import preflight

EXIT_USAGE = 2


def add_capacity_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "capacity",
        help="sweep a capacity grid, fit the CPU cost model, derive mailbox/poll guidance",
        description="Run every cell of a capacity scenario (capacity-quick, capacity-full, capacity-centos5 "
        "or a file; `pop3suite scenarios` lists them) as a load run against a fresh embedded server, "
        "fit CPU per poll, and derive a guidance table.",
    )
    p.add_argument("scenario", help="capacity scenario name (capacity-quick, capacity-full) or a TOML file")
    p.add_argument("--report", metavar="DIR", help="results directory (default results/<scenario>-<time>)")
    p.add_argument(
        "--target",
        action="append",
        metavar="URL",
        help="pop3://HOST:PORT and/or pop3s://HOST:PORT of an external server (repeatable); its accounts "
        "cap<MB>mb<nnnn> must hold the grid's mailbox sizes (checked first; see --prefill, --write-prefill)",
    )
    p.add_argument("--smtp", metavar="URL", help="smtp://HOST:PORT for delete-cell refill (with --target)")
    add_rcpt_domain(p)
    p.add_argument("--password", help="password of every account on --target")
    p.add_argument("--cafile", help="CA file for --target's certificate")
    p.add_argument("--insecure", action="store_true", help="do not verify --target's certificate")
    p.add_argument(
        "--server-pid",
        type=int,
        help="PID of the --target server on this machine: CPU of it and its child processes is read "
        "(without it, CPU is not measured and no model is fitted)",
    )
    p.add_argument(
        "--prefill",
        action="store_true",
        help="with --target and --smtp: top each account up to its mailbox size over SMTP before the "
        "sweep and before every cell (delete cells drift)",
    )
    p.add_argument(
        "--write-prefill",
        metavar="DIR",
        help="write the messages each --target account must hold as DIR/<account>/*.eml and exit",
    )
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
    from pop3suite.load.capacity.analysis import analyse
    from pop3suite.load.capacity.grid import GridError, load_grid
    from pop3suite.load.capacity.guidance import render
    from pop3suite.load.capacity.sweep import run_sweep

    try:
        grid = load_grid(args.scenario)
    except GridError as error:
        return _fail(str(error))
    if args.write_prefill:
        return _write_prefill(grid, Path(args.write_prefill))
    if not args.target:
        given = [f for f in ("smtp", "password", "cafile", "server_pid") if getattr(args, f) is not None]
        if given or args.prefill or args.insecure:
            return _fail("--smtp, --password, --cafile, --insecure, --server-pid and --prefill need --target")
    out = Path(args.report or f"results/{grid.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    external = None
    held: dict = {}
    try:
        preflight.writable_dir(out, "--report")  # before the sweep, not after it
        if args.target:
            external, held = _external(args, grid)
    except ValueError as error:  # PreflightError and TargetError too
        return _fail(str(error))
    out.mkdir(parents=True, exist_ok=True)
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
            "server_pid": external.get("server_pid") if external else None,
            "cpu_measured": bool(external.get("server_pid")) if external else True,
            "mailboxes_at_start": {a: {"messages": n, "octets": o} for a, (n, o) in held.items()},
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
        from pop3suite.load.report import render_report
    except ImportError:
        print(
            "capacity: no pop3suite.load.report module; HTML report not rendered",
            file=sys.stderr,
        )
    else:
        try:
            render_report([out], out)
        except Exception as error:  # the report is a view; the JSON files are the results
            print(f"capacity: rendering the report failed: {type(error).__name__}: {error}", file=sys.stderr)
    _print_summary(cells, model_doc, guidance_doc, render)
    print(f"results: {out}")
    if interrupted:
        return 1
    if guidance_doc is None:
        return 0 if cells and model_doc is not None and model_doc.get("skipped") else 1
    return 0


def _external(args: argparse.Namespace, grid) -> tuple[dict, dict]:
    """The ``run.json`` fields of the external target, after checking that it
    can run the grid (pop3suite/load/capacity/external.py); and the mailboxes it holds.

    Raises:
        ValueError: bad options, or the target cannot run the grid (one line).
    """
    from pop3suite.load.capacity.external import preflight as check_external
    from pop3suite.load.capacity.sweep import select_cells
    from pop3suite.loadcmd import _target_run

    external = _target_run(args)  # URL syntax by the shared pre-flight (pop3suite/target/preflight.py)
    if not args.password:
        raise ValueError("--target needs --password (the password of every cap* account)")
    if args.cafile:
        preflight.readable_file(args.cafile, "--cafile")
    cells, _skipped = select_cells(grid, external=True, verbose=False)
    if any(c.behaviour == "delete" for c in cells) and not external.get("smtp_port"):
        raise ValueError(
            "delete cells refill the mailboxes over SMTP: give --smtp smtp://HOST:PORT "
            "(or run a grid of keep cells only)"
        )
    print(f"capacity: checking {', '.join(args.target)} (accounts, mailbox sizes) ...", file=sys.stderr)
    held = check_external(external, grid, cells, prefill=args.prefill)
    external["topup"] = bool(args.prefill)  # and before every cell (sweep.run_cell)
    if not external.get("server_pid"):
        print(
            "capacity: no --server-pid: server CPU is not measured; cells report polls, latency and "
            "errors only, and no cost model is fitted",
            file=sys.stderr,
        )
    return external, held


def _write_prefill(grid, directory: Path) -> int:
    """``--write-prefill DIR``: the messages an external target must hold."""
    from pop3suite.load.capacity.external import write_prefill
    from pop3suite.load.capacity.sweep import select_cells

    cells, _skipped = select_cells(grid, external=True, verbose=False)
    written = write_prefill(grid, cells, directory)
    for account, count in written.items():
        print(f"{account} {count} {directory / account}")
    print(
        f"wrote {sum(written.values())} messages for {len(written)} accounts under {directory}.\n"
        "Create these accounts (one password for all) on the server, then deliver each directory "
        "into its account, e.g.\n"
        f"  reference server: for d in {directory}/*/; do pop3suite deliver --config CONFIG "
        '"$(basename "$d")" "$d"*.eml; done\n'
        f"  Dovecot peer:     for d in {directory}/*/; do scripts/peers/dovecot.sh seed DIR "
        '"$(basename "$d")" "$d"*.eml; done\n'
        "or let `pop3suite capacity --target ... --smtp smtp://HOST:PORT --prefill` send them.",
        file=sys.stderr,
    )
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
