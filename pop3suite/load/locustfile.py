"""The locustfile of a load run: ``locust -f pop3suite/load/locustfile.py`` works with
Locust's own UI and flags; ``pop3suite load SCENARIO`` runs the same file
headless.

Which scenario: ``--pop3-scenario NAME|FILE`` or ``POP3SUITE_SCENARIO``
(default ``smoke``).  User classes are made from the scenario's client mix
when this file is imported, so the scenario is read from the command line /
environment before Locust parses its arguments.

Where the target is: ``--pop3-run FILE`` or ``POP3SUITE_RUN``, a ``run.json``
written by ``pop3suite load`` (ports, CA file, password, mail root, PID).
Without one, the master (or a stand-alone process) builds a lab, pre-fills
it and starts ``pop3suite serve`` as its own process (never in this one:
gevent has patched its sockets), and writes the ``run.json`` workers need.

At the end the master (or stand-alone process) merges the workers' exact
histograms and ledger events, scans the mailboxes, evaluates the SLOs and
writes results; the exit code is 1 if a verdict failed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from pop3suite.load import accounting, verdicts
from pop3suite.load.scenario import load_scenario
from pop3suite.load.users import CONTEXT, make_pop3_class, make_smtp_class
from pop3suite.server.storage import make_store


def _early_option(flag: str, env: str, default: str | None = None) -> str | None:
    """A custom option's value before Locust parses the command line."""
    argv = sys.argv
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return os.environ.get(env, default)


SCENARIO = load_scenario(_early_option("--pop3-scenario", "POP3SUITE_SCENARIO", "smoke") or "smoke")
if _early_option("--pop3-users", "POP3SUITE_USERS"):
    SCENARIO = SCENARIO.with_users(int(_early_option("--pop3-users", "POP3SUITE_USERS") or 1))
_RUN_FILE = _early_option("--pop3-run", "POP3SUITE_RUN")
_WORKERS = int(_early_option("--pop3-workers", "POP3SUITE_WORKERS", "1") or 1)
CONTEXT.scenario = SCENARIO
if _RUN_FILE:
    CONTEXT.run = json.loads(Path(_RUN_FILE).read_text(encoding="utf-8"))
    _WORKERS = int(CONTEXT.run.get("workers", _WORKERS))
CONTEXT.run.setdefault("workers", _WORKERS)

# One Locust user class per client cell (+ the delivery user), by name only:
# Locust collects every user class it finds in this module's namespace.
globals().update({f"Pop3_{c.name}": make_pop3_class(c, SCENARIO.real_interval(c)) for c in SCENARIO.clients})
if make_smtp_class(SCENARIO, _WORKERS) is not None:
    globals()["SmtpDelivery"] = make_smtp_class(SCENARIO, _WORKERS)

_state: dict = {"finals": set(), "embedded": None, "monitor": None, "lab_dir": None}


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    """The ``--pop3-*`` options, added when Locust imports this file: runs,
    ``--list`` and the web UI see them; ``locust --help`` is printed before
    any import (locustio/locust#2917), so docs/load.md lists them."""
    group = parser.add_argument_group("pop3suite")
    group.add_argument("--pop3-scenario", default="smoke", help="scenario name or TOML file")
    group.add_argument("--pop3-run", default=None, help="run.json naming the target (default: embedded)")
    group.add_argument("--pop3-results", default=None, help="results directory (default results/<run>)")
    group.add_argument("--pop3-users", default=None, help="scale the client mix to N POP3 users")
    group.add_argument("--pop3-workers", default="1", help="number of workers (account striping)")
    group.add_argument("--pop3-run-time", type=float, default=None, help="stop gracefully after S seconds")
    group.add_argument("--pop3-progress", type=float, default=2.0, help="progress line every S s (0 = off)")


def _results_dir(environment) -> Path:
    option = getattr(environment.parsed_options, "pop3_results", None) or os.environ.get("POP3SUITE_RESULTS")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(option) if option else Path("results") / f"{SCENARIO.name}-{stamp}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@events.request.add_listener
def _record(request_type, name, response_time, response_length, exception=None, context=None, **_kw) -> None:
    cell = (context or {}).get("cell")
    CONTEXT.recorder.record(name, response_time, response_length or 0, exception, cell)


@events.init.add_listener
def _init(environment, **_kw) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        if not CONTEXT.run.get("pop3_port"):
            raise SystemExit("pop3suite: a worker needs --pop3-run / POP3SUITE_RUN (the master's run.json)")

        @events.report_to_master.add_listener
        def _report(client_id, data) -> None:
            data["pop3suite"] = {"m": CONTEXT.recorder.snapshot(), "l": CONTEXT.ledger.drain()}

        @events.test_stop.add_listener
        def _final(environment, **_kw) -> None:
            payload = {"m": CONTEXT.recorder.snapshot(), "l": CONTEXT.ledger.drain()}
            environment.runner.send_message("pop3suite_final", payload)

        # Locust's own "stop" message makes a worker sleep --stop-timeout
        # before it handles "quit"; this one only stops the users.
        runner.register_message(
            "pop3suite_stop", lambda environment, msg, **_kw: runner.stop(), concurrent=True
        )
        return
    results = _results_dir(environment)
    _state["results"] = results
    if not CONTEXT.run.get("pop3_port"):
        _start_embedded(results)
    if isinstance(runner, MasterRunner):

        @events.worker_report.add_listener
        def _merge(client_id, data) -> None:
            _absorb(data.get("pop3suite"))

        def _final(environment, msg, **_kw) -> None:
            _absorb(msg.data)
            _state["finals"].add(msg.node_id)

        runner.register_message("pop3suite_final", _final)
    options = environment.parsed_options
    _state["run_time"] = _run_time_option(options)
    if options is not None and getattr(options, "pop3_run_time", None):
        gevent.spawn(_graceful_stop, environment, options.pop3_run_time)
    if options is not None and getattr(options, "headless", False) and options.pop3_progress > 0:
        gevent.spawn(_progress, environment, options.pop3_progress)


def _run_time_option(options) -> float | None:
    """The run time this process was told to run: ``--pop3-run-time`` (what
    ``pop3suite load --run-time`` passes), else Locust's own ``-t``; None
    when neither was given (the UI, or stopped by hand)."""
    for name in ("pop3_run_time", "run_time"):
        value = getattr(options, name, None) if options is not None else None
        if value:
            return float(value)
    return None


@events.test_start.add_listener
def _started(environment, **_kw) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        _state["started"] = time.monotonic()


@events.test_stop.add_listener
def _stopped(environment, **_kw) -> None:
    if not isinstance(environment.runner, WorkerRunner) and "started" in _state:
        _state["elapsed"] = time.monotonic() - _state["started"]


def _absorb(payload: dict | None) -> None:
    if payload:
        CONTEXT.recorder.merge(payload.get("m", {}))
        CONTEXT.ledger.extend(payload.get("l", []))


def _start_embedded(results: Path) -> None:
    from pop3suite.load import labsetup
    from pop3suite.load.monitor import Monitor, metrics_url

    lab_dir = Path(tempfile.mkdtemp(prefix="pop3suite-load-"))
    target = labsetup.start(SCENARIO, lab_dir / "lab", results, _WORKERS)
    CONTEXT.run.update(target.run)
    (results / "run.json").write_text(json.dumps(CONTEXT.run, indent=2), encoding="utf-8")
    _state.update(
        embedded=target,
        lab_dir=lab_dir,
        monitor=Monitor(target.run["server_pid"], metrics_url=metrics_url(target.run)).start(),
    )
    print(f"pop3suite: embedded reference server PID {target.run['server_pid']}; workers: "
          f"--pop3-run {results / 'run.json'}", file=sys.stderr)  # fmt: skip


def _graceful_stop(environment, seconds: float) -> None:
    """Stop users after the run time (each finishes its poll, bounded by
    --stop-timeout), collect every worker's final data, then quit."""
    runner = environment.runner
    while runner.state in ("ready", "spawning") and runner.user_count == 0:
        gevent.sleep(0.2)  # the clock starts when users spawn
    gevent.sleep(seconds)
    if isinstance(runner, MasterRunner):
        expected = len(runner.clients)
        runner.send_message("pop3suite_stop")
        deadline = time.monotonic() + environment.stop_timeout + 15
        while time.monotonic() < deadline and len(_state["finals"]) < expected:
            gevent.sleep(0.2)
        if len(_state["finals"]) < expected:
            print(
                f"pop3suite: only {len(_state['finals'])} of {expected} workers sent final data",
                file=sys.stderr,
            )
    else:
        runner.stop()
    runner.quit()


def _progress(environment, every: float) -> None:
    started = time.monotonic()
    stats = environment.stats
    while True:
        gevent.sleep(every)
        runner = environment.runner
        entries = list(stats.entries.items())
        sessions = sum(e.num_requests for (n, _m), e in entries if n == "SESSION")
        failed = sum(e.num_failures for (n, _m), e in entries if n == "SESSION")
        mail = sum(e.num_requests for (n, _m), e in entries if n.startswith("RETR"))
        delivered = sum(e.num_requests for (n, _m), e in entries if n.startswith("DELIVER"))
        print(
            f"[{SCENARIO.name} {time.monotonic() - started:5.0f} s] users {runner.user_count:>4}  "
            f"sessions {sessions:>6} (failed {failed})  "
            f"retrieved {mail:>6}  delivered {delivered:>5}  "
            f"requests/s {stats.total.current_rps:7.1f}  failures {stats.total.num_failures}",
            file=sys.stderr,
            flush=True,
        )


@events.quitting.add_listener
def _finish(environment, **_kw) -> None:
    if isinstance(environment.runner, WorkerRunner) or "results" not in _state:
        return
    results: Path = _state["results"]
    run = CONTEXT.run
    ledger = accounting.Ledger()
    if run.get("prefill"):
        ledger.extend(json.loads(Path(run["prefill"]).read_text(encoding="utf-8")))
    ledger.extend(CONTEXT.ledger.events)
    accounts = SCENARIO.accounts(int(run.get("workers", 1)))
    left = None
    try:
        if run.get("mail_root"):
            store = make_store(run.get("storage", "maildir"), run["mail_root"], fsync=False)
            left = accounting.scan_store(store, accounts)
        elif run.get("scan_pop3", True):
            left = _scan_remote(accounts)
    except Exception as error:  # report it; the ledger then says lost = unknown
        print(f"pop3suite: cannot scan the mailboxes: {error}", file=sys.stderr)
    report = ledger.reconcile(left)
    summary = CONTEXT.recorder.summary()
    # The run time actually run (not the scenario file's, which --run-time overrides):
    # per-second figures and the SLO minimums are computed over it.
    elapsed = _state.get("elapsed")
    run_time = _state.get("run_time") or (round(elapsed, 3) if elapsed else SCENARIO.run_time)
    verdict = verdicts.evaluate(SCENARIO.slo, summary, report, run_time, SCENARIO.run_time)
    verdict.update(scenario=SCENARIO.name, run_time=run_time, workers=run.get("workers", 1))
    verdict.update(scenario_run_time=SCENARIO.run_time, elapsed_s=round(elapsed, 3) if elapsed else None)
    run["run_time"] = run_time
    (results / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    if isinstance(environment.runner, MasterRunner):
        verdict["workers_reported"] = len(_state["finals"])
    _write_results(results, summary, report, verdict)
    monitor = _state.get("monitor")
    if monitor is not None:
        monitor.stop()
        monitor.write(results)
    target = _state.get("embedded")
    if target is not None:
        target.stop()
        shutil.rmtree(_state["lab_dir"], ignore_errors=True)
    print(f"\npop3suite load {SCENARIO.name}: results in {results}", file=sys.stderr)
    print(
        f"  ledger: delivered {report['delivered']}, retrieved {report['retrievals']}, "
        f"removed {report['removed']}, left {report['left']}, lost {report['lost']}, "
        f"duplicated {report['duplicated']}, corrupted {report['corrupted']}",
        file=sys.stderr,
    )
    for cell, sub in sorted(CONTEXT.recorder.cells.items()):
        row = sub.summary().get("SESSION", {})
        print(
            f"  cell {cell:<14} sessions {row.get('ok', 0):>6}  failed {row.get('failures', 0):>4}  "
            f"SESSION p50 {row.get('p50_ms', 0):8.1f} ms  p95 {row.get('p95_ms', 0):8.1f} ms  "
            f"p99 {row.get('p99_ms', 0):8.1f} ms  octets {row.get('octets', 0)}",
            file=sys.stderr,
        )
    print(verdicts.render(verdict), file=sys.stderr, flush=True)
    environment.process_exit_code = 0 if verdict["passed"] else 1


def _scan_remote(accounts) -> dict[str, str]:
    from pop3suite.client import Pop3Client

    run = CONTEXT.run
    implicit = not run.get("pop3_port")

    def connect() -> Pop3Client:
        port = run["pop3s_port"] if implicit else run["pop3_port"]
        tls = "implicit" if implicit else "none"
        pop = Pop3Client(run["host"], port, tls=tls, ssl_context=CONTEXT.tls_context(), transcript=False)
        pop.connect()
        return pop

    return accounting.scan_pop3(connect, {a: run.get("password", "") for a in accounts})


def _write_results(results: Path, summary: dict, report: dict, verdict: dict) -> None:
    histograms = results / "histograms"
    histograms.mkdir(exist_ok=True)
    blobs = {}
    for name, h in CONTEXT.recorder.histograms.items():
        blobs[name] = h.encode().decode("ascii")
        safe = "".join(c if c.isalnum() else "_" for c in name).strip("_")
        with open(histograms / f"{safe}.hgrm", "wb") as handle:
            h.output_percentile_distribution(handle, 1000)  # microseconds -> ms
    (histograms / "encoded.json").write_text(json.dumps(blobs, indent=1) + "\n", encoding="utf-8")
    cells = {cell: sub.summary() for cell, sub in CONTEXT.recorder.cells.items()}
    (results / "steps.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (results / "cells.json").write_text(json.dumps(cells, indent=2) + "\n", encoding="utf-8")
    (results / "ledger.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (results / "verdicts.json").write_text(json.dumps(verdict, indent=2) + "\n", encoding="utf-8")
