"""The reference server side by side with Dovecot (numbers, not tests).

One set of load-client processes drives both servers alternately (round 1:
A then B, round 2: B then A, ...), with the same accounts, the same mail
bytes and the same password scheme (``{PLAIN}``: Dovecot's peer keeps its
passwords in a passwd-file that way).  The reference server's scrypt rows
are shown too, against Dovecot's ``{PLAIN}``, to show what hashing costs.
Printed per figure: both medians, the ratio reference/Dovecot and the
target from docs/performance.md; next to them the machine's load and the
physical ceilings (AES-128-GCM and loopback TCP speed).

Dovecot comes from ``scripts/peers/dovecot.sh`` (root and apt-get needed;
without them the run stops with the reason).

Usage::

    python benchmarks/compare.py [--quick] [--rounds N] [--json OUT]
        [--only sessions|retr|uidl|idle|ceilings] [--idle 10000]
        [--server-setting KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_server import add_common, finish_args
from benchlib import ceilings, fig_idle, fig_retr, fig_sessions, fig_uidl
from benchlib.clients import ClientPool
from benchlib.dovecot import DovecotUnavailable, build_dovecot, dovecot_version
from benchlib.meters import machine_busy_seconds, machine_info, raise_nofile
from benchlib.reflab import build_reference, log_problems, remove
from benchlib.results import Row, fmt, median, print_problems, progress
from benchlib.targets import MailPlan, Target

#: figure key -> (target ratio reference/Dovecot, higher is better)
TARGETS = {
    "sessions": (1.0, True),
    "retr plain": (0.8, True),
    "retr TLS": (0.9, True),
    "uidl": (1 / 1.5, True),  # latency: Dovecot/reference >= 1/1.5
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The reference server side by side with Dovecot.")
    add_common(parser)
    parser.add_argument(
        "--only",
        choices=["sessions", "retr", "uidl", "idle", "ceilings"],
        action="append",
        help="run only these",
    )
    parser.add_argument("--idle", type=int, default=10_000, help="idle sessions per server (default 10000)")
    parser.add_argument(
        "--scrypt-n", type=int, action="append", help="also measure reference scrypt accounts (default 2^14)"
    )
    args = parser.parse_args(argv)
    args.only = args.only or ["ceilings", "sessions", "retr", "uidl", "idle"]
    args.scrypt_n = args.scrypt_n or [2**14]
    return finish_args(args)


def alternate(targets: list[Target], round_no: int) -> list[Target]:
    """A B in even rounds, B A in odd ones: drift hits both alike."""
    return targets if round_no % 2 == 0 else targets[::-1]


def run_sessions(pool: ClientPool, targets: list[Target], args: argparse.Namespace) -> list[dict[str, Any]]:
    ref, dov = targets
    cases = []  # (figure name, reference case, dovecot case or None)
    for tls, label in fig_sessions.MODES:
        for c in args.concurrency:
            cases.append((f"sessions {label} c={c} PLAIN", ref, dov, tls, c, "PLAIN"))
        for scheme in ref.session_accounts:
            if scheme != "PLAIN":
                c = 16 if 16 in args.concurrency else max(args.concurrency)
                cases.append(
                    (f"sessions {label} c={c} ref {scheme} vs dovecot PLAIN", ref, dov, tls, c, scheme)
                )
    rows = {
        name: (Row("sessions", name, "sessions/s"), Row("sessions", name, "sessions/s")) for name, *_ in cases
    }
    for round_no in range(args.rounds):
        for name, a, b, tls, c, scheme in cases:
            for target in alternate([a, b], round_no):
                row = rows[name][0 if target is a else 1]
                accounts = target.session_accounts[scheme if target is a else "PLAIN"][:c]
                fig_sessions.sessions_round(pool, target, row, tls, accounts, args)
                time.sleep(args.pause)
        progress(f"sessions: round {round_no + 1}/{args.rounds} done")
    return [pair("sessions", *rows[name]) for name, *_ in cases]


def run_retr(pool: ClientPool, targets: list[Target], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: dict[str, tuple[Row, Row]] = {}
    for target in targets:
        for tls in ("none", "implicit"):
            if problem := fig_retr.verify_retr(target, tls):
                raise RuntimeError(problem)
    cases = [(tls, label, c) for tls, label in fig_sessions.MODES for c in args.retr_concurrency]
    for _, label, c in cases:
        name = f"RETR {label} c={c}"
        rows[name] = (Row("retr", name, "MB/s"), Row("retr", name, "MB/s"))
    for round_no in range(args.rounds):
        for tls, label, c in cases:
            for target in alternate(targets, round_no):
                row = rows[f"RETR {label} c={c}"][targets.index(target)]
                fig_retr.retr_round(pool, target, row, tls, c, args)
                time.sleep(args.pause)
        progress(f"retr: round {round_no + 1}/{args.rounds} done")
    return [pair(f"retr {label}", *rows[f"RETR {label} c={c}"]) for _, label, c in cases]


def run_uidl(targets: list[Target], args: argparse.Namespace) -> list[dict[str, Any]]:
    per = [fig_uidl.uidl_rows(args.bulk_messages) for _ in targets]
    for target, rows in zip(targets, per, strict=True):
        fig_uidl.check_bulk(target, rows["uidl"])  # also warms Dovecot's index
    for round_no in range(args.rounds):
        for target in alternate(targets, round_no):
            fig_uidl.uidl_round(target, per[targets.index(target)], args)
            time.sleep(args.pause)
    progress("uidl: done")
    return [pair("uidl", per[0][key], per[1][key], higher_better=False) for key in fig_uidl.KEYS]


def pair(figure: str, ref: Row, dov: Row, higher_better: bool = True) -> dict[str, Any]:
    """One comparison line: both rows, the ratio and the target verdict."""
    a, b = ref.median, dov.median
    ratio = None
    if a and b:
        ratio = a / b if higher_better else b / a  # > 1: the reference is better
    goal = TARGETS.get(figure.split(" c=")[0] if figure.startswith("retr") else figure, (None, True))[0]
    if "scrypt" in ref.name or ref.name.startswith(("login", "STAT", "LIST")):
        goal = None
    return {
        "figure": ref.name,
        "unit": ref.unit,
        "reference": ref.as_dict(),
        "dovecot": dov.as_dict(),
        "ratio": ratio,
        "target": goal,
        "met": None if goal is None or ratio is None else ratio >= goal,
    }


def print_pairs(pairs: list[dict[str, Any]]) -> None:
    head = (
        f"{'figure':<46} {'unit':<10} {'reference':>10} {'dovecot':>10} {'ratio':>6} {'target':>7} "
        f"{'ref ms/op':>9} {'dov ms/op':>9} {'oth CPU%':>8} {'err':>4}"
    )
    print(head)
    print("-" * len(head))
    for p in pairs:
        ref, dov = p["reference"], p["dovecot"]
        other = [v for side in (ref, dov) if side["other_cpu_pct"] for v in [side["other_cpu_pct"]["median"]]]
        target = "-" if p["target"] is None else f"{p['target']:.2f}{' ok' if p['met'] else ' NO'}"
        ms = [(s["server_cpu_ms_per_op"] or {}).get("median") for s in (ref, dov)]
        print(
            f"{p['figure']:<46} {p['unit']:<10} {fmt(ref['median'], 2):>10} {fmt(dov['median'], 2):>10} "
            f"{fmt(p['ratio'], 2):>6} {target:>7} {fmt(ms[0], 2):>9} {fmt(ms[1], 2):>9} "
            f"{fmt(median(other), 0):>8} {ref['errors'] + dov['errors']:>4}"
        )
    print(
        "ratio = reference/Dovecot for rates, Dovecot/reference for latencies: > 1 means the reference wins"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    limit = raise_nofile()
    meta: dict[str, Any] = {"machine": machine_info(), "nofile": limit, "args": vars(args).copy()}
    meta["args"].pop("json", None)
    results: dict[str, Any] = {"meta": meta, "pairs": [], "idle": {}, "ceilings": {}}
    if "ceilings" in args.only:
        results["ceilings"] = {
            "aes_128_gcm_mbps_one_core": round(ceilings.aes_gcm_mbps(0.5 if args.quick else 1.5), 1),
            "loopback_tcp_mbps": round(ceilings.loopback_mbps(), 1),
        }
        progress(f"ceilings: {results['ceilings']}")
    directory = Path(tempfile.mkdtemp(prefix="pop3suite-compare-"))
    pool = ClientPool(args.client_procs)
    targets: list[Target] = []
    busy0, wall0 = machine_busy_seconds(), time.monotonic()
    try:
        plan = MailPlan.build(args.retr_messages, args.retr_message_size, args.bulk_messages)
        top, retr = max(args.concurrency), max(args.retr_concurrency)
        targets.append(build_reference(directory, plan, top, retr, args.scrypt_n, args.server_settings))
        try:
            targets.append(build_dovecot(plan, top, retr))
        except DovecotUnavailable as error:
            print(f"compare: Dovecot cannot run here: {error}", file=sys.stderr)
            return 4
        meta["dovecot"] = dovecot_version()
        progress(f"targets ready after {time.monotonic() - started:.1f} s")
        pairs = results["pairs"]
        if "sessions" in args.only:
            pairs += run_sessions(pool, targets, args)
        if "retr" in args.only:
            pairs += run_retr(pool, targets, args)
        if "uidl" in args.only:
            pairs += run_uidl(targets, args)
        if "idle" in args.only:
            for tls, label in fig_sessions.MODES:
                for target in targets:
                    key = f"{target.name} {label}"
                    results["idle"][key] = fig_idle.idle_round(
                        pool, target, args.idle, args.client_procs, tls
                    )
                    progress(f"idle {key}: {results['idle'][key]['during']}")
        meta["reference_log_problems"] = log_problems(targets[0])[-20:]
    finally:
        pool.close()
        for target in targets:
            target.stop()
        if not args.keep:
            remove(directory)
    busy1, wall1 = machine_busy_seconds(), time.monotonic()
    meta["machine_busy_pct_during_run"] = round(100 * (busy1 - busy0) / (wall1 - wall0), 1) if busy0 else None
    meta["loadavg_at_end"] = os.getloadavg()
    meta["elapsed_seconds"] = round(time.monotonic() - started, 1)
    report(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
        print(f"numbers written to {args.json}")
    errors = sum(p["reference"]["errors"] + p["dovecot"]["errors"] for p in results["pairs"])
    return 1 if errors or meta["reference_log_problems"] else 0


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    meta, machine = results["meta"], results["meta"]["machine"]
    print(
        f"\nreference server vs Dovecot {meta.get('dovecot', '?')}: {machine.get('cpu_model', '?')}, "
        f"{machine['cpus']} CPUs, Python {machine['python']}, {machine['openssl']}"
    )
    print(
        f"rounds={args.rounds} (alternating order) window={args.window}s client procs={args.client_procs}; "
        f"loadavg start {machine.get('loadavg_at_start')} "
        f"end {tuple(round(v, 2) for v in meta['loadavg_at_end'])}; "
        f"whole machine busy {meta['machine_busy_pct_during_run']}% of one core during the run "
        f"(this benchmark included); run {meta['elapsed_seconds']} s\n"
    )
    if results["pairs"]:
        print_pairs(results["pairs"])
        rows = [Row(p["reference"]["group"], p["figure"], p["unit"]) for p in results["pairs"]]
        for row, p in zip(rows, results["pairs"], strict=True):
            row.add_errors(
                p["reference"]["errors"] + p["dovecot"]["errors"],
                p["reference"]["error_samples"] + p["dovecot"]["error_samples"],
            )
            row.notes = p["reference"]["notes"] + p["dovecot"]["notes"]
        print_problems(rows)
    ceil = results["ceilings"]
    if ceil:
        print(
            f"\nceilings: AES-128-GCM {fmt(ceil['aes_128_gcm_mbps_one_core'])} MB/s on one core; "
            f"loopback TCP {fmt(ceil['loopback_tcp_mbps'])} MB/s"
        )
        for p in results["pairs"]:
            if p["figure"].startswith("RETR"):
                limit = (
                    ceil["loopback_tcp_mbps"] if "plain" in p["figure"] else ceil["aes_128_gcm_mbps_one_core"]
                )
                shares = [(p[s]["median"] or 0) / limit for s in ("reference", "dovecot")]
                print(
                    f"  {p['figure']:<20} reference {shares[0]:.0%}, Dovecot {shares[1]:.0%} of that ceiling"
                )
    for name, idle in results["idle"].items():
        d = idle["during"]
        kib = idle["kib_per_session_pss"]
        print(
            f"\nidle {name}: {idle['opened']}/{idle['requested']} sessions open "
            f"({idle['alive_at_end']} alive at the end), {d['processes']} processes, "
            f"RSS {d['rss_mb']:.0f} MiB, PSS {d['pss_mb']:.0f} MiB "
            f"(before: PSS {idle['before']['pss_mb']:.0f} MiB); {fmt(kib)} KiB PSS per session"
            + (f"; errors {idle['errors']}" if idle["errors"] else "")
        )
    if meta.get("reference_log_problems"):
        print("\nreference server log problems:")
        for line in meta["reference_log_problems"][-10:]:
            print(f"  {line}")


if __name__ == "__main__":
    sys.exit(main())
