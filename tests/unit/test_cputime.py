"""Server CPU over a short capacity cell is read to the nanosecond, and a
cell that served polls never records 0 CPU.

The cause of the flaky ``test_sweep_against_the_server_measures_its_cpu``
(``server_cpu_s`` 0.0): psutil's ``cpu_times()`` are whole 10 ms clock
ticks, and a 3 s cell of a dozen cheap polls used ~15 ms of server CPU, so
the difference of two readings was 0 or 10 or 20 ms by where the ticks
fell.  Here a real child process burns a few milliseconds at a time; with
tick resolution each burst reads as 0 or 10 ms and the test fails."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pop3suite.load.capacity.sweep import cpu_figures
from pop3suite.load.cputime import precise_cpu_seconds
from pop3suite.load.monitor import tree_cpu_seconds

BURNER = """
import sys, time
for line in sys.stdin:
    start = time.process_time()
    while time.process_time() - start < float(line):
        pass
    print(time.process_time() - start, flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the per-process CPU clock is Linux's")
def test_short_bursts_of_cpu_are_measured_not_rounded_to_ticks() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write("0\n")  # wait until the interpreter has started (its start-up is CPU too)
        child.stdin.flush()
        child.stdout.readline()
        for _ in range(5):
            before = tree_cpu_seconds(child.pid)
            child.stdin.write("0.003\n")
            child.stdin.flush()
            burned = float(child.stdout.readline())  # the child's own CPU clock, to the ns
            used = tree_cpu_seconds(child.pid) - before
            # A 10 ms tick reading gives 0 or 0.01 here: outside both bounds.
            assert 0.8 * burned <= used <= burned + 0.005, (used, burned)
        assert precise_cpu_seconds(child.pid) == pytest.approx(tree_cpu_seconds(child.pid), abs=0.002)
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    assert precise_cpu_seconds(child.pid) is None  # reaped: no clock, the caller falls back


def test_a_cell_that_served_polls_never_records_zero_cpu() -> None:
    figures = cpu_figures(0.0, polls=12, run_time=3.0, pid=4242)
    assert figures["server_cpu_s"] is None and figures["cpu_per_poll_s"] is None
    assert "PID 4242" in figures["cpu_error"] and "12 polls" in figures["cpu_error"]
    assert "--server-pid" in figures["cpu_error"]
    measured = cpu_figures(0.015, polls=12, run_time=3.0, pid=4242)
    assert measured == {"server_cpu_s": 0.015, "cpu_util": 0.005, "cpu_per_poll_s": 0.00125}
    idle = cpu_figures(0.0, polls=0, run_time=3.0, pid=4242)  # nothing served: 0 is a true reading
    assert idle["server_cpu_s"] == 0.0 and idle["cpu_per_poll_s"] is None
