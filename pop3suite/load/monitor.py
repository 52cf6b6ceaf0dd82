"""Samples the server under test by PID (psutil): CPU, RSS, connections.

Runs as a thread next to the load (in ``pop3suite load``, a process that
does not import Locust) or in a Locust process (gevent turns the thread into
a greenlet; the psutil calls are short).  The samples go to
``monitor.csv`` and a summary to ``monitor.json`` in the run's results.

When the target serves Prometheus metrics (``run.json`` has ``metrics_port``:
the embedded reference server with ``[metrics] port``), the monitor scrapes
``/metrics`` too, and ``server_metrics.json`` gets the server-side latency
of every POP3 command over the run (the difference between the first and
the last scrape), beside the client-side latency Locust records.
"""

from __future__ import annotations

import csv
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from pop3suite.load.cputime import precise_cpu_seconds

#: The reference server's command-latency histogram (pop3suite.server.metrics).
COMMAND_HISTOGRAM = "pop3suite_command_seconds"


def metrics_url(run: dict) -> str | None:
    """The target's ``/metrics`` URL from ``run.json`` fields, if it has one."""
    port = run.get("metrics_port")
    return f"http://{run.get('host', '127.0.0.1')}:{port}/metrics" if port else None


def scrape_commands(url: str, timeout: float = 2.0) -> dict[str, dict]:
    """Per POP3 command: cumulative ``buckets`` [(le, count)], ``count``, ``sum``.

    Raises:
        OSError: the endpoint cannot be read.
    """
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode("utf-8", "replace")
    commands: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        if family.name != COMMAND_HISTOGRAM:
            continue
        for sample in family.samples:
            entry = commands.setdefault(
                sample.labels.get("command", ""), {"buckets": [], "count": 0, "sum": 0.0}
            )
            if sample.name.endswith("_bucket"):
                entry["buckets"].append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                entry["count"] = sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] = sample.value
    return commands


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus' histogram_quantile: linear inside the bucket."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 0)
        lower, below = bound, count
    return lower


def command_latency(first: dict[str, dict], last: dict[str, dict]) -> dict[str, dict]:
    """Server-side latency per command between two scrapes (ms)."""
    out: dict[str, dict] = {}
    for command, end in sorted(last.items()):
        start = first.get(command, {"buckets": [], "count": 0, "sum": 0.0})
        before = dict(start["buckets"])
        buckets = sorted((le, count - before.get(le, 0)) for le, count in end["buckets"])
        count = end["count"] - start["count"]
        if count <= 0:
            continue
        row = {"count": int(count), "mean_ms": round((end["sum"] - start["sum"]) / count * 1000, 3)}
        for name, q in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            value = _quantile(buckets, q)
            row[name] = None if value is None else round(value * 1000, 3)
        out[command] = row
    return out


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
    process's own time is read to the nanosecond (pop3suite/load/cputime.py): psutil's
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

    def __init__(self, pid: int, interval: float = 1.0, metrics_url: str | None = None) -> None:
        self.pid = pid
        self.interval = interval
        self.metrics_url = metrics_url
        self.scrapes: list[dict[str, dict]] = []  # the first and the latest
        self.scrape_error: str | None = None
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
        self._scrape()  # the baseline: commands before the run are not counted
        while not self._stop.wait(self.interval):
            if not root.is_running():
                self.error = f"PID {self.pid} exited during the run"
                return
            self.samples.append(self.sample(root, started))
            self._scrape()

    def _scrape(self) -> None:
        if self.metrics_url is None:
            return
        try:
            scraped = scrape_commands(self.metrics_url)
        except (OSError, ValueError) as error:  # URLError is an OSError
            self.scrape_error = f"cannot scrape {self.metrics_url}: {error}"
            return
        self.scrapes[1:] = [scraped] if self.scrapes else []
        if not self.scrapes:
            self.scrapes.append(scraped)

    def start(self) -> Monitor:
        self._thread = threading.Thread(target=self._run, name="pop3suite-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._scrape()  # up to the end of the run

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
        if self.metrics_url is not None:
            server = {
                "url": self.metrics_url,
                "scrapes": len(self.scrapes),
                "error": self.scrape_error,
                "commands": command_latency(self.scrapes[0], self.scrapes[-1]) if self.scrapes else {},
            }
            (directory / "server_metrics.json").write_text(
                json.dumps(server, indent=2) + "\n", encoding="utf-8"
            )
