"""Benchmarks of the reference server over real sockets (numbers, not tests).

The server runs as its own process (``pop3suite serve``); the load comes
from separate client processes (see :mod:`benchlib.clients`).  Groups:

1. ``sessions``: full sessions per second at several concurrency levels,
   plain and implicit TLS, for ``{PLAIN}`` accounts and scrypt accounts
   (``--scrypt-n``, default 2**14, and a cheap 2**10), so the share of
   password hashing shows as its own rows.
2. ``retr``: RETR throughput on a ~20 MB mailbox, plain and TLS.
3. ``uidl``: UIDL/LIST/STAT on a 10,000-message mailbox and the login time
   for it against an empty one.

Every figure is the median over ``--rounds`` rounds; rounds of the cases of
a group are interleaved.  ``compare.py`` runs the same figures against
Dovecot too.  See benchmarks/README.md.

Usage::

    python benchmarks/bench_server.py [--quick] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchlib import fig_retr, fig_sessions, fig_uidl
from benchlib.clients import ClientPool
from benchlib.meters import machine_info, peak_rss_mb, raise_nofile, tree_cpu_seconds
from benchlib.reflab import build_reference, log_problems, remove
from benchlib.results import Row, fmt, print_table, progress
from benchlib.targets import MailPlan, Target

from pop3suite.server import passwords

CHEAP_N = 2**10


def int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive numbers")
    return values


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options shared with compare.py."""
    parser.add_argument("--quick", action="store_true", help="short windows and 3 rounds")
    parser.add_argument("--rounds", type=int, help="rounds per figure (default 5, --quick 3)")
    parser.add_argument("--json", metavar="OUT", help="write every number to this JSON file")
    parser.add_argument("--concurrency", type=int_list, default=[1, 16, 64], help="session concurrency")
    parser.add_argument("--retr-concurrency", type=int_list, default=[1, 8], help="RETR concurrency")
    parser.add_argument("--client-procs", type=int, default=4, help="load client processes (default 4)")
    parser.add_argument("--window", type=float, help="seconds counted per sessions round (default 3)")
    parser.add_argument("--warmup", type=float, help="seconds before counting starts (default 0.5)")
    parser.add_argument("--retr-messages", type=int, default=20, help="messages in the RETR mailbox")
    parser.add_argument("--retr-message-size", type=int, default=2**20, help="octets per RETR message")
    parser.add_argument("--bulk-messages", type=int, default=10_000, help="messages in the UIDL mailbox")
    parser.add_argument("--keep", action="store_true", help="keep the temporary lab and print its path")
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra [server] line for the reference server (TOML value), e.g. event_loop='\"uvloop\"'",
    )


def finish_args(args: argparse.Namespace) -> argparse.Namespace:
    settings = {}
    for item in args.server_setting:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"--server-setting expects KEY=VALUE, got {item!r}")
        settings[key.strip()] = value.strip()
    args.server_settings = settings
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.window = args.window or (1.0 if args.quick else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 0.5)
    args.uidl_repeats = 5 if args.quick else 9
    args.pause = 0.1
    args.retr_lead = 1.2 if args.quick else 1.5
    return args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmarks of the pop3suite reference server.")
    add_common(parser)
    parser.add_argument(
        "--scrypt-n",
        type=int,
        default=passwords.DEFAULT_N,
        help=f"scrypt cost of the scrypt accounts (default {passwords.DEFAULT_N}); "
        f"{{PLAIN}} and a cheap {CHEAP_N} are always measured too",
    )
    parser.add_argument(
        "--only", choices=["sessions", "retr", "uidl"], action="append", help="run only these"
    )
    parser.add_argument(
        "--scheme",
        action="append",
        help="sessions rows only for these password schemes (PLAIN, 'scrypt n=2^10', ...)",
    )
    args = parser.parse_args(argv)
    if args.scrypt_n < 2 or args.scrypt_n & (args.scrypt_n - 1):
        parser.error("--scrypt-n must be a power of two")
    args.only = args.only or ["sessions", "retr", "uidl"]
    return finish_args(args)


def run_groups(pool: ClientPool, target: Target, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    if "sessions" in args.only:
        cases = fig_sessions.session_cases(target, args.concurrency, getattr(args, "scheme", None))
        for round_no in range(args.rounds):
            for row, tls, accounts in cases:
                fig_sessions.sessions_round(pool, target, row, tls, accounts, args)
                time.sleep(args.pause)
            progress(f"sessions: round {round_no + 1}/{args.rounds} done")
        rows += [row for row, _, _ in cases]
    if "retr" in args.only:
        cases_r = fig_retr.retr_cases(target, args.retr_concurrency)
        for row, tls, _ in cases_r:
            if problem := fig_retr.verify_retr(target, tls):
                row.add_errors(1, [problem])
        for round_no in range(args.rounds):
            for row, tls, concurrency in cases_r:
                fig_retr.retr_round(pool, target, row, tls, concurrency, args)
                time.sleep(args.pause)
            progress(f"retr: round {round_no + 1}/{args.rounds} done")
        rows += [row for row, _, _ in cases_r]
    if "uidl" in args.only:
        uidl = fig_uidl.uidl_rows(args.bulk_messages)
        fig_uidl.check_bulk(target, uidl["uidl"])
        for _ in range(args.rounds):
            fig_uidl.uidl_round(target, uidl, args)
            time.sleep(args.pause)
        progress("uidl: done")
        rows += [uidl[key] for key in fig_uidl.KEYS]
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    raise_nofile()
    meta = {"machine": machine_info(), "args": {k: v for k, v in vars(args).items() if k != "json"}}
    directory = Path(tempfile.mkdtemp(prefix="pop3suite-bench-"))
    pool = ClientPool(args.client_procs)
    target: Target | None = None
    rows: list[Row] = []
    try:
        t0 = time.monotonic()
        plan = MailPlan.build(args.retr_messages, args.retr_message_size, args.bulk_messages)
        target = build_reference(
            directory,
            plan,
            max(args.concurrency),
            max(args.retr_concurrency),
            sorted({CHEAP_N, args.scrypt_n}),
            args.server_settings,
        )
        meta["setup_seconds"] = round(time.monotonic() - t0, 2)
        progress(f"lab ready in {meta['setup_seconds']} s: {directory}")
        rows = run_groups(pool, target, args)
        meta["server_peak_rss_mb"] = peak_rss_mb(target.root_pid)
        meta["server_cpu_seconds_total"] = tree_cpu_seconds(target.root_pid)
    finally:
        pool.close()
        if target is not None:
            target.stop()
        if args.keep:
            print(f"lab kept in {directory}", file=sys.stderr)
        else:
            remove(directory)
    meta["elapsed_seconds"] = round(time.monotonic() - started, 1)
    suspicious = log_problems(target) if target else []
    meta["server_log_problems"] = suspicious[-20:]
    machine = meta["machine"]
    print(
        f"\npop3suite server benchmarks: {machine.get('cpu_model', '?')}, {machine['cpus']} CPUs, "
        f"Python {machine['python']}, {machine['openssl']}"
    )
    print(
        f"rounds={args.rounds} window={args.window}s warmup={args.warmup}s "
        f"client procs={args.client_procs}; median/min/max over rounds; "
        f"CPU% = CPU seconds per wall second (100 = one core)\n"
    )
    print_table(rows)
    if suspicious:
        print("\nserver log problems:")
        for line in suspicious[-10:]:
            print(f"  {line}")
    print(
        f"\nserver peak RSS {fmt(meta['server_peak_rss_mb'])} MB; "
        f"total run {meta['elapsed_seconds']} s (set-up {meta.get('setup_seconds')} s)"
    )
    if args.json:
        payload = {"meta": meta, "results": [row.as_dict() for row in rows]}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"numbers written to {args.json}")
    return 1 if any(row.errors for row in rows) or suspicious else 0


if __name__ == "__main__":
    sys.exit(main())
