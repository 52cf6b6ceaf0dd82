"""Figure: one UIDL/LIST/STAT on a big mailbox (``bulk``, 10,000 messages
by default) timed to the end of the body, and USER+PASS on it against an
empty mailbox (the difference is the mailbox scan at login)."""

from __future__ import annotations

import argparse
import statistics
import time

from pop3suite.client import Pop3Client

from .clients import ByteCounter
from .meters import CpuMeter
from .results import Row
from .targets import Target

KEYS = ("login_empty", "login_bulk", "stat", "uidl", "list")


def uidl_rows(count: int) -> dict[str, Row]:
    return {
        "login_empty": Row("uidl", "login USER+PASS, empty mailbox", "ms"),
        "login_bulk": Row("uidl", f"login USER+PASS, {count} msgs", "ms"),
        "stat": Row("uidl", f"STAT, {count} msgs (one command)", "ms"),
        "uidl": Row("uidl", f"UIDL, {count} msgs (one command)", "ms"),
        "list": Row("uidl", f"LIST, {count} msgs (one command)", "ms"),
    }


def _client(target: Target) -> Pop3Client:
    pop = Pop3Client(target.host, target.ports["none"], transcript=False, timeout=120)
    pop.connect()
    return pop


def check_bulk(target: Target, row: Row) -> None:
    """Untimed: STAT, UIDL and LIST of the bulk mailbox are right."""
    count, size = target.plan.bulk_messages, target.plan.bulk_size
    pop = _client(target)
    pop.login("bulk", target.password)
    got = pop.stat()
    if got != (count, size):
        row.add_errors(1, [f"{target.name}: STAT {got}, expected ({count}, {size})"])
    uids = pop.uidl()
    unique = set(uids.values())
    if len(uids) != count or len(unique) != count:
        row.add_errors(1, [f"{target.name}: UIDL {len(uids)} lines, {len(unique)} unique"])
    if target.bulk_uids is not None and unique != target.bulk_uids:
        row.add_errors(1, [f"{target.name}: UIDL differs from the delivered UIDs"])
    sizes = pop.list()
    if len(sizes) != count or sum(sizes.values()) != size:
        row.add_errors(1, [f"{target.name}: LIST {len(sizes)} lines, {sum(sizes.values())} octets"])
    pop.quit()


def uidl_round(target: Target, rows: dict[str, Row], args: argparse.Namespace) -> None:
    """One round: two logins, then ``uidl_repeats`` of each command."""
    pop = _client(target)
    t0 = time.perf_counter()
    pop.login("empty", target.password)
    rows["login_empty"].values.append(1000 * (time.perf_counter() - t0))
    pop.quit()

    pop = _client(target)
    meter, own = CpuMeter(target.root_pid), time.process_time()
    t0 = time.perf_counter()
    pop.login("bulk", target.password)
    elapsed = time.perf_counter() - t0
    meter.stop()
    rows["login_bulk"].values.append(1000 * elapsed)
    meter.record(rows["login_bulk"], elapsed, time.process_time() - own, ops=1)
    for command in ("UIDL", "LIST", "STAT"):
        row = rows[command.lower()]
        times = []
        meter, own = CpuMeter(target.root_pid), time.process_time()
        for _ in range(args.uidl_repeats):
            t0 = time.perf_counter()
            if command == "STAT":
                pop.stat()
            else:
                pop.multiline(command, sink=ByteCounter())
            times.append(time.perf_counter() - t0)
        meter.stop()
        row.values.append(1000 * statistics.median(times))
        meter.record(row, sum(times), time.process_time() - own, ops=len(times))
    pop.quit()
