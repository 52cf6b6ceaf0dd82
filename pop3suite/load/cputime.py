"""CPU time of another process to the nanosecond (Linux), not the clock tick.

psutil's ``cpu_times()`` reads ``/proc/PID/stat``, whose user and system
times are whole clock ticks (10 ms with USER_HZ = 100), each truncated on
its own.  A capacity cell of a few seconds in which the server spends
~15 ms of CPU then reads 0.00 or 0.01 s depending on where the ticks fall:
``tests/integration/test_capacity_external.py`` saw ``server_cpu_s`` 0.0
for a cell that served polls.  The kernel keeps the exact figure (the
scheduler's runtime) and exposes it as the process's CPU-time clock, which
``clock_gettime`` reads for any PID: clock id ``(~pid << 3) | 2``
(CPUCLOCK_SCHED of the whole thread group, the same clock as
``clock_getcpuclockid(3)`` returns), counting live and ended threads.
"""

from __future__ import annotations

import sys
import time

#: The CPU clock's kind in a Linux clock id: CPUCLOCK_SCHED (scheduler runtime, ns).
_CPUCLOCK_SCHED = 2


def process_cpu_clock_id(pid: int) -> int:
    """Linux's clock id for the CPU time of process ``pid`` (all threads)."""
    return ((~pid) << 3) | _CPUCLOCK_SCHED


def precise_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system, every thread) of ``pid`` to the
    nanosecond; None where the clock is not available (not Linux, the
    process is gone or not visible): callers then use psutil's ticks."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return time.clock_gettime_ns(process_cpu_clock_id(pid)) / 1e9
    except OSError:
        return None
