"""Figure: RETR throughput (MB/s = 10^6 octets/s of message data), N
sessions at once each RETRing the whole ~20 MB mailbox; logins happen
before the clock starts.  Timed RETRs only count octets (checked against
LIST); :func:`verify_retr` checks every byte once, untimed."""

from __future__ import annotations

import argparse
import hashlib
import time

from .clients import ClientPool, context_for, new_client, sleep_until, split
from .meters import CpuMeter
from .results import Row
from .targets import Target

MB = 1_000_000


def retr_round(
    pool: ClientPool, target: Target, row: Row, tls: str, concurrency: int, args: argparse.Namespace
) -> None:
    accounts = target.retr_accounts[:concurrency]
    start_at = time.monotonic() + args.retr_lead
    tasks = [
        target.task("retr", tls, accounts=group, start_at=start_at, expect_sizes=target.plan.retr_sizes)
        for group in split(accounts, args.client_procs)
    ]
    pool.send(tasks)
    sleep_until(start_at)
    meter = CpuMeter(target.root_pid)
    results = pool.collect(len(tasks))
    meter.stop()
    collected = time.monotonic()
    for result in results:
        row.add_errors(result["error_count"], result["errors"])
        if result["late"]:
            row.notes.append(f"login not done before the start for {result['late']} (lead too short)")
    ends = [end for r in results for end in r["ends"]]
    octets = sum(o for r in results for o in r["octets"])
    if not ends:
        return
    row.values.append(octets / MB / (max(ends) - start_at))
    meter.record(row, collected - start_at, sum(r["cpu"] for r in results), ops=octets / MB)


def verify_retr(target: Target, tls: str) -> str:
    """'' if every message of the last RETR account comes back byte for
    byte, else what went wrong."""
    account = target.retr_accounts[-1]
    pop = new_client(target.task("verify", tls), context_for(target.task("verify", tls)))
    try:
        pop.connect()
        pop.login(account, target.password)
        count, _ = pop.stat()
        got = sorted(hashlib.sha256(pop.retr(n)).hexdigest() for n in range(1, count + 1))
        pop.quit()
    except Exception as error:
        pop.close()
        return f"{target.name} {account}: {type(error).__name__}: {error}"
    return "" if got == target.plan.retr_digests else f"{target.name}: RETR bodies differ from the mail"


def retr_cases(target: Target, concurrency: list[int]) -> list[tuple[Row, str, int]]:
    total = sum(target.plan.retr_sizes) / MB
    cases = []
    for tls, label in (("none", "plain"), ("implicit", "TLS")):
        for c in concurrency:
            cases.append((Row("retr", f"RETR {label:<5} c={c:<3} ({total:.0f} MB/session)", "MB/s"), tls, c))
    return cases
