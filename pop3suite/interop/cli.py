"""``pop3suite clients``: the real-client interop matrix from the command line.

Without a target the embedded reference server is tested.  ``--target``
(with ``--pop3s``, ``--cafile``, ``--seed``...) names any server;
``--peer dovecot`` starts the Dovecot peer; ``--reference`` adds the
embedded server to those, so one report compares them.  ``--target`` and
``--report`` pass the shared pre-flight (pop3suite/target/preflight.py) before any
client runs.  Exit status: 0 when no cell failed, 1 when one did, 2 for bad
options, a failed pre-flight or a target that could not start.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from pop3suite.target import preflight
from pop3suite.target.model import TargetError
from pop3suite.target.seeding import SeedError

from . import CLIENTS
from .base import AUTHS, BEHAVIOURS, MODES
from .matrix import summary, write
from .runner import MaildropError, MatrixRun, Runner, maildrop_count
from .targets import TargetUnavailable, embedded, from_url, peer


def _names(text: str, allowed: tuple[str, ...] | list[str], option: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{option}: unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(allowed)}"
        )
    return names


def add_clients_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "clients",
        help="run real POP3 clients (curl, fetchmail, getmail, mpop, mutt, poplib) against a server",
        description="The client interop matrix: each real client retrieves a fixed fixture set in every "
        "mode (plain, stls, implicit), login (user, apop, sasl) and keep/delete behaviour it supports; "
        "every message is compared byte for byte. Default target: the embedded reference server.",
    )
    p.add_argument("--target", metavar="URL", help="pop3://USER:PASS@HOST:PORT (or pop3s://...)")
    p.add_argument("--pop3s", metavar="URL", help="the implicit-TLS endpoint of the same server")
    p.add_argument("--cafile", metavar="FILE", help="CA that signed the server certificate")
    p.add_argument("--seed", metavar="ROUTE", default="smtp", help="maildir:DIR, exec:CMD or smtp (default)")
    p.add_argument("--smtp", metavar="URL", help="smtp://HOST:PORT for --seed smtp")
    p.add_argument("--apop-user", metavar="USER:PASS", help="an account with APOP enabled")
    p.add_argument("--apop-seed", metavar="ROUTE", help="seed route for the APOP account (default: derived)")
    p.add_argument("--name", help="the target's name in the matrix (default HOST:PORT)")
    p.add_argument("--peer", action="append", default=[], metavar="NAME", help="start scripts/peers/NAME.sh")
    p.add_argument("--reference", action="store_true", help="also test the embedded reference server")
    p.add_argument("--clients", default=",".join(CLIENTS), help=f"comma list (default {','.join(CLIENTS)})")
    p.add_argument("--modes", default=",".join(MODES), help="comma list of plain,stls,implicit")
    p.add_argument("--auths", default=",".join(AUTHS), help="comma list of user,apop,sasl")
    p.add_argument("--behaviours", default=",".join(BEHAVIOURS), help="comma list of keep,delete")
    p.add_argument("--report", default="results/clients", metavar="DIR", help="default results/clients/")
    p.set_defaults(func=cmd_clients)


def cmd_clients(args: argparse.Namespace) -> int:
    try:
        clients = _names(args.clients, list(CLIENTS), "--clients")
        modes = _names(args.modes, MODES, "--modes")
        auths = _names(args.auths, AUTHS, "--auths")
        behaviours = _names(args.behaviours, BEHAVIOURS, "--behaviours")
    except argparse.ArgumentTypeError as error:
        print(f"pop3suite: error: {error}", file=sys.stderr)
        return 2
    try:
        preflight.writable_dir(args.report, "--report")
        if args.target:
            preflight.check_pop_target(
                args.target, pop3s=args.pop3s, apop_user=args.apop_user, cafile=args.cafile
            )
    except preflight.PreflightError as error:
        print(f"pop3suite: error: {error}", file=sys.stderr)
        return 2
    runner = Runner(
        [CLIENTS[name]() for name in clients],
        progress=lambda line: print(line, flush=True),
        apop_seed=args.apop_seed,
        modes=modes,
        auths=auths,
        behaviours=behaviours,
    )
    run = MatrixRun(started=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    try:
        with contextlib.ExitStack() as stack:
            targets = []
            if args.reference or not (args.target or args.peer):
                targets.append(stack.enter_context(embedded()))
            if args.target:
                targets.append(
                    from_url(
                        args.target,
                        pop3s=args.pop3s,
                        cafile=args.cafile,
                        seed=args.seed,
                        smtp=args.smtp,
                        apop_user=args.apop_user,
                        name=args.name,
                    )
                )
            for name in args.peer:
                print(f"starting peer {name} ...", flush=True)
                targets.append(stack.enter_context(peer(name)))
            for target in targets:
                print(f"target {target.name}: {target.describe()}", flush=True)
                maildrop_count(target, target.user)  # fail fast: wrong port, login or CA
                runner.run(target, into=run)
    except (TargetError, TargetUnavailable, SeedError, MaildropError) as error:
        print(f"pop3suite: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # the embedded server did not start
        print(f"pop3suite: error: {error}", file=sys.stderr)
        return 2
    paths = write(run, Path(args.report))
    counts = summary(run)
    print("clients: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    print("report: " + " ".join(str(p) for p in paths))
    return 1 if run.failed else 0
