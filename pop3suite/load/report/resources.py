"""Server resources over time (psutil samples of the server process and its
children, ``monitor.csv``): CPU, resident memory, open connections."""

from __future__ import annotations

import numpy as np

from .figures import Chart, missing, new_figure
from .inputs import RunData

MIB = 1024 * 1024


def resources_chart(run: RunData, name: str = "server_resources") -> Chart:
    title = "Server resources over time"
    monitor = run.monitor
    if not monitor or "t" not in monitor or monitor["t"].size == 0:
        error = (run.monitor_summary or {}).get("error")
        reason = f" ({error})" if error else " (external target without --server-pid?)"
        return missing(name, title, f"No server samples: monitor.csv absent or empty{reason}.")
    panels = [key for key in ("cpu_percent", "rss_bytes", "connections") if key in monitor]
    figure = new_figure(9.0, 1.9 * len(panels) + 0.8)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    labels = {
        "cpu_percent": "CPU (% of one core)",
        "rss_bytes": "RSS (MiB)",
        "connections": "TCP connections",
    }
    for ax, key in zip(axes, panels, strict=True):
        values = monitor[key] / MIB if key == "rss_bytes" else monitor[key]
        ax.plot(monitor["t"], values, color="C0" if key == "cpu_percent" else "C2")
        ax.set_ylabel(labels[key], fontsize=8)
        ax.grid(True, alpha=0.3)
        if key == "cpu_percent":
            ax.axhline(
                float(np.nanmean(values)),
                color="C1",
                linestyle="--",
                label=f"mean {np.nanmean(values):.1f} %",
            )
            ax.legend(fontsize=7, loc="upper right")
    axes[-1].set_xlabel("seconds since the monitor started")
    return Chart(
        name,
        title,
        "The server process (and its children) sampled once a second: CPU in percent of one core (100 % = a "
        "whole core busy; more is several cores), resident memory, and open TCP connections. CPU pinned near "
        "the core count, or memory that keeps growing, is the server's limit, not the network's.",
        figure,
    )
