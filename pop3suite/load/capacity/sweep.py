"""Run the cells of a capacity grid, one ordinary load run each.

Every cell gets its own scenario file (``DIR/cells/<id>/scenario.toml``,
from :func:`pop3suite.load.capacity.grid.cell_scenario_toml`), a fresh embedded
reference server with the cell's backend, pre-filled to the cell's mailbox
size (:func:`pop3suite.load.labsetup.start`), and is run by
:func:`pop3suite.load.run.run_load` exactly like ``pop3suite load`` runs a
scenario, with results in ``DIR/cells/<id>/``.  Server CPU is the CPU time
of the server's process tree (:func:`pop3suite.load.monitor.tree_cpu_seconds`) read
before and after the run, so other load on the machine does not count.
Cells are bounded (users, run time, Locust's own limit); Ctrl-C stops the
sweep after cleaning up the running cell and keeps the finished ones.

Against an external target (``--target``, pop3suite/load/capacity/external.py) a
cell polls the target's per-size accounts, delete cells are refilled by
Locust's SMTP users, the mailbox size is read by ``STAT`` before and after
the cell, CPU is the ``--server-pid`` process tree's (or not measured
without it), and the ledger's final ``TOP`` scan is skipped: its server
CPU would land inside the cell's CPU window.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from pop3suite.load.monitor import tree_cpu_seconds

from .external import TargetError, client_name, mailbox_octets, prefill_smtp
from .grid import Cell, Grid, cell_scenario_toml

POST_AUTH_STEPS = ("STAT", "UIDL", "LIST", "RETR", "DELE", "QUIT")
CV_WINDOWS = 6  # windows per cell for the CV (at least 2 s each)


def mbox_available() -> bool:
    """Is the mbox backend in this checkout (LabOptions.storage + open_store)?"""
    from pop3suite.server.lab import LabOptions

    try:
        from pop3suite.server.storage import open_store  # noqa: F401
    except ImportError:
        return False
    return "storage" in {f.name for f in dataclasses.fields(LabOptions)}


class Refiller:
    """Local delivery for delete cells: writes ``rate`` messages per second,
    round-robin over the cell's accounts, straight into the lab's store (as
    a local delivery agent would, so the POP server's CPU is not charged
    for it), for ``duration`` seconds.  The ledger events are appended to
    ``prefill.json``, which the Locust master reads at the end of the run."""

    def __init__(
        self, store, accounts: list[str], rate: float, grid: Grid, duration: float, events: Path
    ) -> None:
        self.store, self.accounts, self.rate, self.grid = store, accounts, rate, grid
        self.duration, self.events_file = duration, events
        self.delivered_bytes = 0
        self.delivered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capacity-refill", daemon=True)

    def _run(self) -> None:
        import random
        import uuid

        from pop3suite.load.accounting import digest, make_message

        rng = random.Random(self.grid.seed + 1)
        events = json.loads(self.events_file.read_text(encoding="utf-8"))
        started = time.monotonic()
        due = started
        while not self._stop.is_set() and due - started < self.duration:
            if self._stop.wait(max(0.0, due - time.monotonic())):
                break
            account = self.accounts[self.delivered % len(self.accounts)]
            nonce = uuid.uuid4().hex
            data = make_message(nonce, self.grid.message_sizes.sample(rng), account)
            self.store.deliver(account, data)
            events.append(["D", nonce, account, digest(data)])
            self.delivered += 1
            self.delivered_bytes += len(data)
            due += 1.0 / self.rate
        self.events_file.write_text(json.dumps(events), encoding="utf-8")

    def start(self) -> Refiller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class CpuSampler:
    """(unix time, CPU seconds) of a server's process tree every second, for
    the CV (the embedded server is one process; an external one may not be)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capacity-cpu", daemon=True)

    def read(self) -> float:
        return tree_cpu_seconds(self.pid)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.samples.append((time.time(), self.read()))
            except psutil.Error:
                return

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(3)


def _tree_bytes(root: str | Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def cpu_cv(samples: list[tuple[float, float]], history: Path) -> float | None:
    """Coefficient of variation of server CPU per request over about six
    windows of the active run (requests per poll are fixed within a cell, so
    this is the CV of CPU per poll).  CPU time ticks are 10 ms, so short
    cells at low load overstate it.  None with fewer than 3 usable windows."""
    if len(samples) < 3 or not history.exists():
        return None
    counts: list[tuple[float, float]] = []
    with open(history, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row.get("Name") == "Aggregated" and float(row.get("User Count") or 0) > 0:
                counts.append((float(row["Timestamp"]), float(row["Total Request Count"])))
    if len(counts) < 3:
        return None

    def at(series: list[tuple[float, float]], t: float) -> float:
        value = series[0][1]
        for ts, v in series:
            if ts > t:
                break
            value = v
        return value

    start = max(samples[0][0], counts[0][0])
    end = min(samples[-1][0], counts[-1][0])
    window = max(2.0, (end - start) / CV_WINDOWS)
    ratios = []
    t = start
    while t + window <= end + 1e-9:
        requests = at(counts, t + window) - at(counts, t)
        cpu = at(samples, t + window) - at(samples, t)
        if requests > 0:
            ratios.append(cpu / requests)
        t += window
    if len(ratios) < 3 or statistics.fmean(ratios) <= 0:
        return None
    return statistics.pstdev(ratios) / statistics.fmean(ratios)


def cpu_figures(cpu: float, polls: int, run_time: float, pid: int) -> dict:
    """The CPU part of a cell's ``measured`` block from the server's CPU
    seconds over the cell.  A server that served polls used CPU: a reading
    of 0 (or less) is not a measurement, so the figures are None and
    ``cpu_error`` says why rather than a 0 the cost model would fit."""
    if cpu <= 0 and polls > 0:
        return {
            "server_cpu_s": None,
            "cpu_util": None,
            "cpu_per_poll_s": None,
            "cpu_error": f"the CPU time of PID {pid} and its children did not advance ({cpu:.6f} s) while "
            f"{polls} polls were served: is it the process that serves them (--server-pid)?",
        }
    return {
        "server_cpu_s": cpu,
        "cpu_util": cpu / run_time,
        "cpu_per_poll_s": cpu / polls if polls else None,
    }


def start_era_target(grid: Grid, scenario, lab_dir: Path, cell_dir: Path):
    """The cell's embedded server as the era ran it (pop3suite/load/capacity/era.py):
    an RSA certificate, ``[era]`` in its config, AES-NI off in its
    environment; the Locust clients offer the era suite."""
    from pop3suite.load import labsetup

    from .era import client_ciphers, write_rsa_certificate

    era = grid.era

    def configure(lab) -> None:
        cert, key = write_rsa_certificate(lab_dir / "era-tls", int(era["rsa_bits"]))
        shutil.copyfile(cert, lab.settings.tls_cert)
        shutil.copyfile(key, lab.settings.tls_key)
        shutil.copyfile(cert, lab.ca_file)  # self-signed: the client trusts it directly
        with open(lab.config_path, "a", encoding="utf-8") as handle:
            handle.write(era.server_config())

    saved = {k: os.environ.get(k) for k in era.server_environment()}
    os.environ.update(era.server_environment())  # read by the server process at start-up only
    try:
        target = labsetup.start(scenario, lab_dir, cell_dir, configure=configure)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    target.run["tls_ciphers"] = client_ciphers(era)
    target.run["era"] = True
    return target


def measure(cell_dir: Path, cell: Cell, real_interval: float, run_time: float) -> dict:
    """The cell's ``measured`` block from its steps.json (no CPU yet)."""
    steps_file = cell_dir / "steps.json"
    steps = json.loads(steps_file.read_text(encoding="utf-8")) if steps_file.exists() else {}
    session = steps.get("SESSION", {})
    polls = int(session.get("requests", 0))
    failure_types = dict(session.get("failure_types", {}))
    idle = 0
    for name, row in steps.items():
        if name.startswith(POST_AUTH_STEPS):
            idle += int(row.get("failure_types", {}).get("Pop3ConnectionError", 0))
    delivered = sum(r.get("octets", 0) for n, r in steps.items() if n.startswith("DELIVER"))
    offered = cell.users / real_interval
    return {
        "polls": polls,
        "polls_per_s": polls / run_time if run_time else 0.0,
        "offered_polls_per_s": offered,
        "server_cpu_s": None,
        "cpu_per_poll_s": None,
        "cpu_util": None,
        "bytes_scanned_per_poll": None,
        "bytes_sent_per_poll": session.get("octets", 0) / polls if polls else 0.0,
        "delivered_bytes_per_poll": delivered / polls if polls else 0.0,
        "p50_ms": session.get("p50_ms"),
        "p95_ms": session.get("p95_ms"),
        "p99_ms": session.get("p99_ms"),
        "max_ms": session.get("max_ms"),
        "errors": int(session.get("failures", 0)),
        "timeouts": int(failure_types.get("Pop3Timeout", 0)),
        "idle_timeouts": idle,
        "error_types": failure_types,
    }


def _mean_octets(held: dict[str, tuple[int, int]]) -> float:
    """Mean mailbox size in octets of ``account -> (messages, octets)``."""
    return sum(octets for _n, octets in held.values()) / max(1, len(held))


def _eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def run_cell(grid: Grid, cell: Cell, out: Path, run_time: float, external: dict | None) -> dict:
    """Run one cell; returns its capacity.json entry."""
    from pop3suite.load import labsetup
    from pop3suite.load.run import run_load
    from pop3suite.load.scenario import load_scenario

    cell_dir = out / "cells" / cell.id
    if cell_dir.exists():
        shutil.rmtree(cell_dir)
    cell_dir.mkdir(parents=True)
    scenario_file = cell_dir / "scenario.toml"
    if external is None:
        text = cell_scenario_toml(grid, cell, run_time)
    else:
        text = cell_scenario_toml(grid, cell, run_time, client=client_name(cell), refill="smtp")
    scenario_file.write_text(text, encoding="utf-8")
    scenario = load_scenario(scenario_file)
    real_interval = grid.real_interval(cell)
    lab_dir: Path | None = None
    target = None
    sampler: CpuSampler | None = None
    refiller: Refiller | None = None
    cpu0 = cpu1 = None
    size_before = size_after = None
    try:
        if external is None:
            lab_dir = Path(tempfile.mkdtemp(prefix="pop3suite-capacity-"))
            if grid.era is None:
                target = labsetup.start(scenario, lab_dir / "lab", cell_dir)
            else:
                target = start_era_target(grid, scenario, lab_dir / "lab", cell_dir)
            run = target.run
            size_before = _tree_bytes(run["mail_root"]) / cell.users
        else:
            run = {**external, "scan_pop3": False}
            if grid.era is not None:  # an era daemon behind --target: offer the era suite
                from .era import client_ciphers

                run["tls_ciphers"] = client_ciphers(grid.era)
            accounts = list(scenario.accounts())
            held = mailbox_octets(run, accounts)
            # --prefill: delete cells drift, so top up before every cell (outside the CPU window).
            topup = run.pop("topup", False)
            if topup and prefill_smtp(run, grid, dict.fromkeys(accounts, cell.mailbox_mb), held):
                held = mailbox_octets(run, accounts)
            size_before = _mean_octets(held)
        if external is None and cell.behaviour == "delete" and grid.refill == "local":
            from pop3suite.load.labsetup import open_lab_store

            rate = cell.users * grid.delete_per_poll / real_interval
            accounts = list(scenario.accounts())
            events = Path(run["prefill"])
            refiller = Refiller(open_lab_store(target.lab), accounts, rate, grid, run_time, events).start()
        if run.get("server_pid"):
            sampler = CpuSampler(int(run["server_pid"]))
            cpu0 = sampler.read()
            sampler.start()
        code = run_load(scenario, cell_dir, run, 0, None, log=cell_dir / "locust.log")
        if sampler is not None:
            cpu1 = sampler.read()
            sampler.stop()
        if external is None:
            size_after = _tree_bytes(run["mail_root"]) / cell.users
        else:
            try:
                size_after = _mean_octets(mailbox_octets(run, accounts))
            except TargetError as error:  # keep the cell; its size is then the nominal one
                print(f"capacity:   mailbox size after the cell not read: {error}", file=sys.stderr)
    finally:
        if sampler is not None:
            sampler.stop()
        if refiller is not None:
            refiller.stop()
        if target is not None:
            target.stop()
        if lab_dir is not None:
            shutil.rmtree(lab_dir, ignore_errors=True)
    measured = measure(cell_dir, cell, real_interval, run_time)
    measured["locust_exit"] = code
    refill = grid.refill if external is None else "smtp"
    measured["refill"] = refill if cell.behaviour == "delete" else None
    if external is not None:
        measured["ledger_checked"] = False  # the final TOP scan would bill its CPU to the cell
    if refiller is not None and measured["polls"]:
        measured["delivered_bytes_per_poll"] = refiller.delivered_bytes / measured["polls"]
        measured["refill_messages"] = refiller.delivered
    if size_before is not None and size_after is not None:
        measured["bytes_scanned_per_poll"] = (size_before + size_after) / 2
        measured["mailbox_bytes_start"] = size_before
        measured["mailbox_bytes_end"] = size_after
    else:
        measured["bytes_scanned_per_poll"] = cell.mailbox_mb * 1e6  # not read: the nominal size
    if cpu0 is not None and cpu1 is not None:
        measured.update(cpu_figures(cpu1 - cpu0, measured["polls"], run_time, int(run["server_pid"])))
        if measured["server_cpu_s"] is not None:
            measured["cpu_per_poll_cv"] = cpu_cv(
                sampler.samples if sampler else [], cell_dir / "locust_stats_history.csv"
            )
    return {
        "id": cell.id,
        "dir": f"cells/{cell.id}",
        "params": {
            "backend": cell.backend,
            "tls": cell.tls,
            "mailbox_bytes": round(measured["bytes_scanned_per_poll"]),
            "mailbox_mb": cell.mailbox_mb,
            "messages": grid.messages(cell),
            "poll_interval_s": cell.poll_interval,
            "real_poll_interval_s": real_interval,
            "behaviour": cell.behaviour,
            "users": cell.users,
            "run_time_s": run_time,
            "idle_timeout_s": grid.idle_timeout,
        },
        "measured": measured,
        "saturated": False,
        "saturation_reasons": [],
        "held_out": False,
    }


def select_cells(grid: Grid, external: bool, verbose: bool = True) -> tuple[list[Cell], list[dict]]:
    """The cells to run and the skipped ones (``{"id", "reason"}``): an
    external target has one store whatever the grid's ``backend`` axis says,
    and the embedded server may lack the mbox backend."""
    cells = list(grid.cells)
    skipped: list[dict] = []
    if external:
        backends = {c.backend for c in cells}
        if len(backends) > 1:
            keep = sorted(backends)[0]
            skipped += [
                {"id": c.id, "reason": "external target: one backend"} for c in cells if c.backend != keep
            ]
            cells = [c for c in cells if c.backend == keep]
            if verbose:
                print(
                    f"capacity: an external target has one store; running the {keep} cells only "
                    f"(skipping {len(skipped)})",
                    file=sys.stderr,
                )
    elif any(c.backend == "mbox" for c in cells) and not mbox_available():
        skipped += [
            {"id": c.id, "reason": "mbox backend not in this checkout"} for c in cells if c.backend == "mbox"
        ]
        cells = [c for c in cells if c.backend != "mbox"]
        print(
            f"capacity: the mbox backend is not available; skipping {len(skipped)} mbox cells",
            file=sys.stderr,
        )
    return cells, skipped


def run_sweep(
    grid: Grid,
    out: Path,
    quick: bool = False,
    external: dict | None = None,
    on_cell: Callable[[list[dict]], None] | None = None,
) -> tuple[list[dict], list[dict], bool]:
    """Run every cell.  Returns (cell entries, skipped cells, interrupted).
    ``on_cell`` is called with the entries so far after each cell, so the
    caller can keep ``capacity.json`` current."""
    run_time = min(grid.cell_time, grid.quick_cell_time) if quick else grid.cell_time
    cells, skipped = select_cells(grid, external is not None)
    done: list[dict] = []
    started = time.monotonic()
    per_cell_guess = run_time + 15.0  # lab, Locust start-up and accounting
    for i, cell in enumerate(cells, 1):
        elapsed = time.monotonic() - started
        per_cell = elapsed / len(done) if done else per_cell_guess
        print(
            f"capacity: cell {i}/{len(cells)} {cell.id}: {cell.backend}, tls {cell.tls}, "
            f"{cell.mailbox_mb:g} MB ({grid.messages(cell)} msgs), poll every {cell.poll_interval:g} s "
            f"({grid.real_interval(cell):g} s real), {cell.behaviour}, {cell.users} users, {run_time:g} s; "
            f"ETA {_eta(per_cell * (len(cells) - i + 1))}",
            file=sys.stderr,
            flush=True,
        )
        try:
            entry = run_cell(grid, cell, out, run_time, external)
        except KeyboardInterrupt:
            print(
                f"capacity: interrupted in cell {cell.id}; keeping {len(done)} finished cells",
                file=sys.stderr,
            )
            return done, skipped, True
        except (TargetError, psutil.NoSuchProcess) as error:
            if external is None:
                raise
            # The external server went away (or stopped answering) mid-sweep.
            print(
                f"capacity: cell {cell.id}: {error}; stopping the sweep, keeping {len(done)} finished cells",
                file=sys.stderr,
            )
            return done, skipped, True
        m = entry["measured"]
        nan = float("nan")
        cv = m.get("cpu_per_poll_cv")
        if m["server_cpu_s"] is None:
            cpu = f"CPU not measured ({m.get('cpu_error') or 'no --server-pid'})"
        else:
            cpp = m["cpu_per_poll_s"] * 1000 if m["cpu_per_poll_s"] is not None else nan
            cpu = f"CPU/poll {cpp:.2f} ms, cv {cv if cv is not None else nan:.2f}"
        print(
            f"capacity:   {m['polls']} polls ({m['polls_per_s']:.2f}/s of "
            f"{m['offered_polls_per_s']:.2f} offered), {cpu}, "
            f"p95 {m['p95_ms'] or 0:.0f} ms, errors {m['errors']}",
            file=sys.stderr,
            flush=True,
        )
        done.append(entry)
        if on_cell is not None:
            on_cell(done)
    return done, skipped, False
