"""CPU and memory accounting for a server (a process tree) and the machine.

A server's CPU is that of its whole process tree: the root and every live
descendant (user + system), plus the children the root and they have
already reaped (``cutime``/``cstime``).  So Dovecot's short-lived ``pop3``
processes, one per session, are counted even when they exit inside the
window, and a single-process server is just the root.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import ssl
from typing import Any

import psutil

from pop3suite.load import monitor

_TICK = os.sysconf("SC_CLK_TCK")


def tree_pids(root: int) -> list[int]:
    """``root`` and its live descendants (empty if ``root`` is gone)."""
    try:
        proc = psutil.Process(root)
        return [root, *(child.pid for child in proc.children(recursive=True))]
    except psutil.Error:
        return []


def tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds used so far by ``root``'s process tree (see module doc;
    the reading is :func:`pop3suite.load.monitor.tree_cpu_seconds`); None once it is gone."""
    try:
        return monitor.tree_cpu_seconds(root)
    except psutil.Error:
        return None


def machine_busy_seconds() -> float | None:
    """CPU seconds all processes on the machine used so far (/proc/stat:
    user + nice + system; guest time is already inside user and nice)."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[0:3]) - sum(fields[8:10])) / _TICK


class CpuMeter:
    """Server-tree and whole-machine CPU seconds between two readings."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.server0 = tree_cpu_seconds(root)
        self.machine0 = machine_busy_seconds()
        self.server: float | None = None
        self.machine: float | None = None

    def stop(self) -> None:
        server1, machine1 = tree_cpu_seconds(self.root), machine_busy_seconds()
        if self.server0 is not None and server1 is not None:
            self.server = server1 - self.server0
        if self.machine0 is not None and machine1 is not None:
            self.machine = machine1 - self.machine0

    def record(self, row: Any, wall: float, client_cpu: float | None, ops: float | None = None) -> None:
        """Add CPU% figures to ``row`` (a :class:`~benchlib.results.Row`);
        with ``ops``, also the server's CPU milliseconds per operation."""
        if self.server is not None and wall > 0:
            row.server_cpu_pct.append(100 * self.server / wall)
            if ops:
                row.server_ms_per_op.append(1000 * self.server / ops)
        if client_cpu is not None and wall > 0:
            row.client_cpu_pct.append(100 * client_cpu / wall)
        if self.machine is not None and self.server is not None and wall > 0:
            other = self.machine - self.server - (client_cpu or 0.0)
            row.other_cpu_pct.append(max(0.0, 100 * other / wall))


def tree_memory_mb(root: int) -> dict[str, float]:
    """RSS and PSS summed over ``root``'s process tree, in MiB, and the
    number of processes.  RSS counts shared pages once per process (an
    overstatement for a forking server such as Dovecot); PSS splits them."""
    rss = pss = 0.0
    count = 0
    for pid in tree_pids(root):
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        count += 1
    return {"rss_mb": rss / 2**20, "pss_mb": pss / 2**20, "processes": count}


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM of one process in MiB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def raise_nofile() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit (children
    such as the servers inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: CPU, Python, OpenSSL, load at start."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "openssl": ssl.OPENSSL_VERSION,
    }
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = os.getloadavg()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    return info
