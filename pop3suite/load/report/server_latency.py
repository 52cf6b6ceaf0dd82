"""Server-side command latency beside the client's (``server_metrics.json``).

When the target served Prometheus metrics, :mod:`pop3suite.load.monitor` wrote the
reference server's own latency per POP3 command over the run; the client's
latency for the same step (steps.json) sits beside it, so the difference --
network, TLS, the client's own queueing -- shows at a glance.
"""

from __future__ import annotations

import json
from pathlib import Path

from .html import note, table
from .inputs import RunData


def server_latency_table(run: RunData) -> str:
    """One row per command: server count and p50/p95/p99, client p50/p95/p99 (ms)."""
    path = Path(run.path) / "server_metrics.json"
    try:
        server = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return note("No server-side latency: the target served no /metrics (server_metrics.json absent).")
    commands = server.get("commands") or {}
    if not commands:
        reason = server.get("error") or "no command was counted between scrapes"
        return note(f"No server-side latency: {reason}.")
    rows = []
    for name, row in sorted(commands.items()):
        client = run.steps.get(name) or {}
        server_row = [row.get("count"), row.get("p50_ms"), row.get("p95_ms"), row.get("p99_ms")]
        rows.append([name, *server_row, client.get("p50_ms"), client.get("p95_ms"), client.get("p99_ms")])
    headers = ["command", "server count", "server p50", "server p95", "server p99"]
    return table([*headers, "client p50", "client p95", "client p99"], rows) + note(
        "The server times a command from its parse to its last reply octet handed to the kernel; the client "
        "from send to last octet read. The client's AUTH step is the whole login (USER+PASS, APOP or AUTH), "
        "and it times RETR per message size class (the RETR[...] rows of the per-step table)."
    )
