"""The tables of a load run: parameters, server load, per-step latency, per
cell sessions, SLO verdicts, SPECmail2001 compliance and the ledger."""

from __future__ import annotations

from .figures import grouped
from .html import esc, note, table, verdict_cell
from .inputs import RunData

MIB = 1024 * 1024
HIDDEN_RUN_KEYS = {"password"}  # never print the accounts' password
PERCENTILES = ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "p99.9_ms", "max_ms")


def parameters_table(run: RunData) -> str:
    """What ran: scenario, the run time actually run (the per-second figures
    divide by it; ``scenario_run_time`` is the file's, ``elapsed_s`` the
    measured time from the first user to the stop), workers (verdicts.json)
    and the target (run.json, minus the password)."""
    rows: list[tuple[str, object]] = []
    verdicts = run.verdicts or {}
    for key in ("scenario", "run_time", "scenario_run_time", "elapsed_s", "workers", "workers_reported"):
        if key in verdicts:
            rows.append((key, verdicts[key]))
    for key, value in run.run.items():
        if key not in HIDDEN_RUN_KEYS and key not in verdicts and not isinstance(value, dict | list):
            rows.append((key, value))
    return table(["parameter", "value"], [(k, v) for k, v in rows], 2)


def machine_table(run: RunData) -> str:
    """The server's load during the run (monitor.json); the machine's load
    average when the run recorded it."""
    summary = run.monitor_summary or {}
    rows: list[tuple[str, object]] = []
    if summary.get("samples"):
        rows += [
            ("server CPU mean (% of one core)", summary.get("cpu_percent_mean")),
            ("server CPU max (% of one core)", summary.get("cpu_percent_max")),
            (
                "server RSS max (MiB)",
                round(summary["rss_bytes_max"] / MIB, 1) if summary.get("rss_bytes_max") else None,
            ),
            ("server TCP connections max", summary.get("connections_max")),
            ("monitor samples", summary.get("samples")),
        ]
    machine = run.run.get("machine") or {}
    for key in ("cpus", "loadavg_before", "loadavg_after"):
        if key in machine:
            rows.append(
                (
                    f"machine {key}",
                    ", ".join(map(str, machine[key])) if isinstance(machine[key], list) else machine[key],
                )
            )
    if not rows:
        reason = summary.get("error") or "monitor.json absent (external target without --server-pid?)"
        return note(f"No server load figures: {reason}.")
    text = table(["measure", "value"], rows)
    if not machine:
        text += note("The run did not record the machine's load average (run.json has no 'machine').")
    return text


def throughput_table(run: RunData) -> str:
    """Run means of what capacity planners count: sessions, messages and
    bytes retrieved, messages delivered, per second (counts / run time)."""
    run_time = (run.verdicts or {}).get("run_time")
    if not run.steps or not run_time:
        return note("No throughput figures (steps.json or the run time in verdicts.json absent).")
    steps, seconds = run.steps, float(run_time)

    def total(prefix: str, key: str) -> int:
        return sum(
            int(r.get(key) or 0) for n, r in steps.items() if n == prefix or n.startswith(prefix + "[")
        )

    rows = [
        ("POP3 sessions completed", total("SESSION", "ok")),
        ("messages retrieved (RETR)", total("RETR", "ok")),
        ("octets retrieved (RETR)", total("RETR", "octets")),
        ("messages delivered (SMTP)", total("DELIVER", "ok")),
        ("octets delivered (SMTP)", total("DELIVER", "octets")),
    ]
    return table(
        ["measure", "total", "per second"], [(k, v, round(v / seconds, 3)) for k, v in rows], 1
    ) + note(f"Per second = total / the run time actually run ({seconds:g} s).")


def step_table(steps: dict) -> str:
    """Per protocol step: counts and exact percentiles (HdrHistogram, ms,
    successes only) and the share within SPECmail2001's limit."""
    names = [n for _group, members in grouped(list(steps)) for n in members]
    names += [n for n in steps if n not in names and not n.startswith("~")]
    if not names:
        return note("No per-step results (steps.json absent or empty).")
    rows = []
    for name in names:
        row = steps[name]
        requests = row.get("requests") or 0
        within = 100.0 * row.get("spec_within", 0) / requests if requests else None
        rows.append(
            [name, requests, row.get("ok"), row.get("failures"), row.get("mean_ms")]
            + [row.get(p) for p in PERCENTILES]
            + [row.get("octets"), round(within, 2) if within is not None else None]
        )
    headers = ["step", "requests", "ok", "failed", "mean ms", "p50", "p90", "p95", "p99", "p99.9", "max"]
    return table([*headers, "octets", "% within SPEC limit"], rows)


def cells_table(cells: dict) -> str:
    """Per client cell (keep vs delete, TLS modes ...): the whole-session row."""
    if not cells:
        return note("No per-cell results (cells.json absent or empty).")
    rows = []
    for cell_name, steps in sorted(cells.items()):
        s = steps.get("SESSION") or {}
        rows.append(
            [
                cell_name,
                s.get("requests"),
                s.get("ok"),
                s.get("failures"),
                s.get("p50_ms"),
                s.get("p95_ms"),
                s.get("p99_ms"),
                s.get("max_ms"),
                s.get("octets"),
            ]
        )
    return table(["cell", "sessions", "ok", "failed", "p50 ms", "p95 ms", "p99 ms", "max ms", "octets"], rows)


def verdict_table(verdicts: dict | None) -> str:
    if not verdicts or not verdicts.get("checks"):
        return note("No SLO verdicts (verdicts.json absent: the run did not finish its accounting).")
    rows = [
        [c["check"], verdict_cell(c.get("passed")), str(c.get("actual")), str(c.get("limit"))]
        for c in verdicts["checks"]
        if " SPEC " not in c["check"]
    ]
    overall = verdicts.get("passed")
    css, word = ("pass", "PASSED") if overall else ("fail", "FAILED")
    head = f'<p>Overall: <span class="{css}">{word}</span></p>'
    return head + table(["check", "verdict", "actual", "limit"], rows, 4)


def spec_rows(verdicts: dict | None, steps: dict) -> list[list[object]]:
    """SPECmail2001 QoS rows: step, rule, requests, % within, required %, verdict."""
    out = []
    for check in (verdicts or {}).get("checks", []):
        if ": SPEC " not in check["check"]:
            continue
        step, rule = check["check"].split(": SPEC ", 1)
        actual, limit = check.get("actual"), check.get("limit")
        out.append(
            [
                step,
                rule,
                (steps.get(step) or {}).get("requests"),
                round(100 * actual, 3) if isinstance(actual, int | float) else actual,
                round(100 * limit, 3) if isinstance(limit, int | float) else limit,
                verdict_cell(check.get("passed"), "meets", "misses"),
            ]
        )
    return out


def spec_table(verdicts: dict | None, steps: dict) -> str:
    rows = spec_rows(verdicts, steps)
    if not rows:
        return note("SPECmail2001 QoS was not evaluated in this run (scenario without [slo] spec_qos).")
    return (
        table(["step", "limit", "requests", "% within limit", "required %", "verdict"], rows, 2)
        + '<p class="how">SPECmail2001 §6: each request type independently must have at least the required '
        "share of its requests answered within 5 s (RETR and delivery: 5 s + size/3000 B/s, a half-speed "
        "56k modem). The run meets SPEC QoS when every row meets it.</p>"
    )


def ledger_table(ledger: dict | None) -> str:
    if not ledger:
        return note("No ledger (ledger.json absent): lost and duplicated mail unknown.")
    keys = (
        "delivered",
        "delivery_outcome_unknown",
        "retrievals",
        "retrieved_distinct",
        "removed",
        "left",
        "lost",
        "duplicated",
        "corrupted",
        "unexpected",
    )
    rows = []
    for key in keys:
        if key in ledger:
            must_be_zero = key in ("lost", "duplicated", "corrupted")
            rows.append([key, ledger[key], verdict_cell(ledger[key] == 0) if must_be_zero else ""])
    text = table(["messages", "count", "verdict"], rows)
    examples = {k: v for k, v in (ledger.get("examples") or {}).items() if v}
    for key, items in examples.items():
        text += f"<p>Examples of {esc(key)}: <code>{esc(', '.join(map(str, items[:10])))}</code></p>"
    return text
