"""``pop3suite load``: a scenario from pop3suite/scenarios/ run headless on Locust.

This process never imports Locust (which patches sockets with gevent): it
builds the embedded target (a lab, pre-filled mailboxes, ``pop3suite serve``
as its own process) unless ``--target`` names one, starts the monitor on the
server's PID, writes ``run.json`` and runs ``locust -f pop3suite/load/locustfile.py``
(one stand-alone process, or a master and ``--workers`` worker processes on
loopback).  The locustfile evaluates the verdicts; the exit status is
Locust's: 0 when every SLO and the ledger passed, 1 otherwise, 2 for usage
errors and a failed pre-flight (pop3suite/target/preflight.py: ``--report`` cannot be
written, or ``--target`` cannot be reached, trusted or logged in to).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from pop3suite.target import preflight

EXIT_USAGE = 2


def add_load_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load",
        help="run a load scenario on Locust (default target: the embedded reference server)",
        description="Run a load scenario (pop3suite/scenarios/NAME.toml or a file) headless on Locust. "
        "Results go to results/<scenario>-<time>/ (or --report DIR).",
    )
    p.add_argument("scenario", help="scenario name (smoke, specmail2001, ...) or a TOML file")
    p.add_argument(
        "--target",
        action="append",
        metavar="URL",
        help="pop3://HOST:PORT and/or pop3s://HOST:PORT of the server under test (repeatable)",
    )
    p.add_argument("--smtp", metavar="URL", help="smtp://HOST:PORT for the delivery users (with --target)")
    add_rcpt_domain(p)
    p.add_argument("--password", help="password of every scenario account on --target")
    p.add_argument("--cafile", help="CA file for --target's certificate")
    p.add_argument("--insecure", action="store_true", help="do not verify --target's certificate")
    p.add_argument("--server-pid", type=int, help="PID of the --target server to monitor (same machine)")
    p.add_argument("--report", metavar="DIR", help="results directory (default results/<scenario>-<time>)")
    p.add_argument("--users", type=int, help="scale the client mix to N POP3 users")
    p.add_argument("--run-time", type=float, metavar="S", help="override the scenario's run time")
    p.add_argument("--workers", type=int, default=0, help="run a master and N local worker processes")
    p.add_argument("--keep-lab", action="store_true", help="keep the embedded lab directory")
    p.set_defaults(func=cmd_load)


def _fail(message: str) -> int:
    print(f"pop3suite: error: {message}", file=sys.stderr)
    return EXIT_USAGE


#: Recipients of SMTP deliveries are ``ACCOUNT@DOMAIN`` (the embedded lab's domain).
DEFAULT_RCPT_DOMAIN = "example.test"


def add_rcpt_domain(parser: argparse.ArgumentParser) -> None:
    """``--rcpt-domain``, shared by ``load`` and ``capacity``."""
    parser.add_argument(
        "--rcpt-domain",
        metavar="DOMAIN",
        help=f"with --smtp: deliver to ACCOUNT@DOMAIN, a domain the target's SMTP accepts "
        f"(default {DEFAULT_RCPT_DOMAIN})",
    )


def check_target(args: argparse.Namespace, accounts: dict) -> None:
    """The pre-flight of ``load --target`` (pop3suite/target/preflight.py): every
    ``--target`` answers with a trusted ``+OK`` greeting, and ``--password``
    logs in to the first and the last account of every client class (the
    accounts of a class are one numbered range: a range that is missing or
    too short shows at its ends), so a run never starts against a target
    whose every login would fail.

    Raises:
        preflight.PreflightError: one line naming the flag and what was found.
    """
    endpoints = [preflight.parse_url(url, "--target")[0] for url in args.target]
    ends: dict[str, list[str]] = {}
    for account, client in accounts.items():
        ends.setdefault(client.name, []).append(account)
    chosen = sorted({name for names in ends.values() for name in (names[0], names[-1])})
    logins = [preflight.Account("--password", name, args.password or "") for name in chosen]
    preflight.check_target(endpoints, logins, cafile=args.cafile, insecure=args.insecure)


def _target_run(args: argparse.Namespace) -> dict:
    run: dict = {"host": None, "pop3_port": None, "pop3s_port": None, "smtp_port": None}
    for url in args.target:
        preflight.parse_url(url, "--target")  # scheme, host and port, one line if wrong
        parts = urlsplit(url)
        if parts.scheme not in ("pop3", "pop3s") or not parts.hostname:
            raise ValueError(f"--target {url}: expected pop3://HOST:PORT or pop3s://HOST:PORT")
        if run["host"] not in (None, parts.hostname):
            raise ValueError(f"--target {url}: every --target must name the same host ({run['host']})")
        run["host"] = parts.hostname
        default = 995 if parts.scheme == "pop3s" else 110
        run[f"{parts.scheme}_port"] = parts.port or default
    if args.smtp:
        parts = urlsplit(args.smtp)
        if parts.scheme != "smtp" or not parts.hostname:
            raise ValueError(f"--smtp {args.smtp}: expected smtp://HOST:PORT")
        if parts.hostname != run["host"]:
            raise ValueError(f"--smtp {args.smtp}: must be on the --target host {run['host']}")
        run["smtp_port"] = parts.port or 25
    run.update(password=args.password or "", cafile=args.cafile, insecure=args.insecure)
    run["rcpt_domain"] = getattr(args, "rcpt_domain", None) or DEFAULT_RCPT_DOMAIN
    run["server_pid"] = args.server_pid
    return run


def cmd_load(args: argparse.Namespace) -> int:
    from pop3suite.load.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as error:
        return _fail(str(error))
    if args.users:
        scenario = scenario.with_users(args.users)
    if args.run_time:
        scenario = scenario.with_run_time(args.run_time)
    results = Path(args.report or f"results/{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        preflight.writable_dir(results, "--report")
    except preflight.PreflightError as error:
        return _fail(str(error))
    workers = max(0, args.workers)
    stride = max(1, workers)
    target = None
    lab_dir = None
    try:
        if args.target:
            run = _target_run(args)
            if scenario.delivery.rate > 0 and not run["smtp_port"]:
                return _fail(f"scenario {scenario.name} delivers mail: give --smtp smtp://HOST:PORT")
            check_target(args, scenario.accounts(stride))
            results.mkdir(parents=True, exist_ok=True)
        else:
            from pop3suite.load import labsetup

            results.mkdir(parents=True, exist_ok=True)
            lab_dir = Path(tempfile.mkdtemp(prefix="pop3suite-load-"))
            print(f"pop3suite load {scenario.name}: preparing the embedded lab ...", file=sys.stderr)
            target = labsetup.start(scenario, lab_dir / "lab", results, stride)
            run = target.run
            print(
                f"  {len(scenario.accounts(stride))} accounts, {run['prefilled']} pre-filled messages; "
                f"server PID {run['server_pid']} (pop3 :{run['pop3_port']}, pop3s :{run['pop3s_port']}, "
                f"smtp :{run['smtp_port']})",
                file=sys.stderr,
            )
    except (ValueError, RuntimeError, OSError) as error:
        if lab_dir:
            shutil.rmtree(lab_dir, ignore_errors=True)
        return _fail(str(error))
    run["workers"] = stride
    try:
        code = run_load(scenario, results, run, workers, args.users)
    finally:
        if target is not None:
            target.stop()
        if lab_dir and not args.keep_lab:
            shutil.rmtree(lab_dir, ignore_errors=True)
        elif lab_dir:
            print(f"lab kept in {lab_dir}", file=sys.stderr)
    if not (results / "verdicts.json").exists():
        print(f"pop3suite load: Locust ended without verdicts (exit {code})", file=sys.stderr)
        return code or 1
    return code


# Moved to the load package (the layer that runs Locust), so that pop3suite/load/capacity
# does not import this command module; the names stay here for callers.
from pop3suite.load.run import locustfile, run_load  # noqa: E402,F401
