"""Figure: memory of N idle sessions (connected -- plain, or implicit TLS
with the handshake done -- greeting read, no command sent), summed over
the server's whole process tree.

The connections come from several client processes (``N / procs`` each;
every process raises RLIMIT_NOFILE to the hard limit, 20,000 here), so
neither side needs more than ~10,000 descriptors in one process.  Idle
means before login: a logged-in idle session would need 10,000 accounts
(the maildrop lock is exclusive) and, on Dovecot, 10,000 ``pop3``
processes.
"""

from __future__ import annotations

import time
from typing import Any

from .clients import ClientPool
from .meters import tree_memory_mb
from .targets import Target


def idle_round(pool: ClientPool, target: Target, count: int, procs: int, tls: str = "none") -> dict[str, Any]:
    """Open ``count`` idle sessions, measure, close them; returns the memory
    before and with them, and the cost per session in KiB."""
    before = tree_memory_mb(target.root_pid)
    per = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
    started = time.monotonic()
    results = pool.run([target.task("idle_open", tls, count=n) for n in per if n])
    opened = sum(r["opened"] for r in results)
    errors = [e for r in results for e in r["errors"]]
    time.sleep(1.0)  # let the server finish the greetings' bookkeeping
    during = tree_memory_mb(target.root_pid)
    closing = pool.run([target.task("idle_close", "none") for n in per if n])
    alive = sum(r["alive"] for r in closing)
    delta = during["pss_mb"] - before["pss_mb"]
    return {
        "tls": tls,
        "requested": count,
        "opened": opened,
        "alive_at_end": alive,
        "open_seconds": round(time.monotonic() - started, 2),
        "before": before,
        "during": during,
        "kib_per_session_pss": 1024 * delta / opened if opened else None,
        "errors": errors[:5],
    }
