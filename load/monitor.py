"""Samples the server under test by PID (psutil): CPU, RSS, connections.

Runs as a thread next to the load (in ``pop3suite load``, a process that
does not import Locust) or in a Locust process (gevent turns the thread into
a greenlet; the psutil calls are short).  The samples go to
``monitor.csv`` and a summary to ``monitor.json`` in the run's results.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from pathlib import Path

import psutil

from load.cputime import precise_cpu_seconds

FIELDS = ("t", "cpu_percent", "rss_bytes", "connections", "threads", "fds")


def process_tree(root: psutil.Process) -> list[psutil.Process]:
    """``root`` and its live descendants (a multi-process server such as
    Dovecot does most of its work outside the PID it was started as)."""
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid``, the children it and its
    descendants have reaped, and its live descendants.  A descendant's CPU
    moves into its parent's ``children_*`` when it is reaped, so the sum stays
    continuous across Dovecot's per-session ``pop3`` processes.  Each live
    process's own time is read to the nanosecond (load/cputime.py): psutil's
    10 ms ticks read 0 for a short cell that used a few ms.

    Raises:
        psutil.NoSuchProcess: ``pid`` is gone.
    """
    root = psutil.Process(pid)
    total = 0.0
    for proc in process_tree(root):
        try:
            t = proc.cpu_times()
        except psutil.Error:
            if proc is root:
                raise
            continue  # ended between listing and reading: its parent counts it once reaped
        own = precise_cpu_seconds(proc.pid)
        total += (own if own is not None else t.user + t.system) + t.children_user + t.children_system
    return total


class Monitor:
    """Sample process ``pid`` (and its children) every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def sample(self, root: psutil.Process, started: float) -> dict[str, float]:
        cpu = rss = conns = threads = fds = 0.0
        for proc in process_tree(root):
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                    threads += proc.num_threads()
                    fds += proc.num_fds()
                conns += len(proc.net_connections(kind="tcp"))
            except psutil.Error:
                continue
        return {
            "t": round(time.monotonic() - started, 3),
            "cpu_percent": round(cpu, 1),
            "rss_bytes": rss,
            "connections": conns,
            "threads": threads,
            "fds": fds,
        }

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
            root.cpu_percent(None)
        except psutil.Error as error:
            self.error = f"cannot watch PID {self.pid}: {error}"
            return
        started = time.monotonic()
        while not self._stop.wait(self.interval):
            if not root.is_running():
                self.error = f"PID {self.pid} exited during the run"
                return
            self.samples.append(self.sample(root, started))

    def start(self) -> Monitor:
        self._thread = threading.Thread(target=self._run, name="pop3suite-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def summary(self) -> dict:
        s = self.samples
        if not s:
            return {"pid": self.pid, "samples": 0, "error": self.error}
        return {
            "pid": self.pid,
            "samples": len(s),
            "interval_s": self.interval,
            "cpu_percent_mean": round(sum(x["cpu_percent"] for x in s) / len(s), 1),
            "cpu_percent_max": max(x["cpu_percent"] for x in s),
            "rss_bytes_max": max(x["rss_bytes"] for x in s),
            "connections_max": max(x["connections"] for x in s),
            "error": self.error,
        }

    def write(self, directory: str | Path) -> None:
        directory = Path(directory)
        with open(directory / "monitor.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, FIELDS)
            writer.writeheader()
            writer.writerows(self.samples)
        (directory / "monitor.json").write_text(json.dumps(self.summary(), indent=2) + "\n", encoding="utf-8")
