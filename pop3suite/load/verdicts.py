"""SLO verdicts at the end of a run: one check per rule, all must pass.

Rules (scenario ``[slo]``):

* ``error_rate``: failed / all requests over the protocol steps (SESSION
  entries excluded, they repeat a step's failure), at most this.
* ``steps.NAME`` = ``{p95_ms = .., p99_ms = .., max_ms = .., error_rate = ..}``:
  per request name; ``NAME`` may end in ``*`` (``RETR*``) to match a family.
  Percentiles come from the merged HdrHistograms (successes only).
* ``spec_qos``: SPECmail2001 §6, per request type independently: at least
  ``spec_share`` (95 %) within 5 s, RETR within 5 s + bytes/3000.
* ``min_sessions``: at least this many whole SESSIONs succeeded (a run that
  did nothing does not pass).  The minimum is written for the scenario's
  ``run_time``; a run of another length (``--run-time``) needs it scaled
  by the run time actually run (:func:`scaled_minimum`).
* The ledger: lost = duplicated = corrupted = 0, always.
"""

from __future__ import annotations

import fnmatch
import math

from .scenario import Slo

SESSION_NAMES = ("SESSION", "SESSION(CO)")


def _check(name: str, passed: bool, actual: object, limit: object) -> dict:
    return {"check": name, "passed": bool(passed), "actual": actual, "limit": limit}


def scaled_minimum(minimum: int, run_time: float | None, planned: float | None) -> int:
    """A count minimum written for ``planned`` seconds, for a run of
    ``run_time`` seconds: proportional, rounded up, at least 1 when the
    scenario asked for any (a run that did nothing never passes)."""
    if minimum <= 0 or not run_time or not planned or run_time == planned:
        return minimum
    return max(1, math.ceil(minimum * run_time / planned - 1e-9))


def evaluate(
    slo: Slo,
    summary: dict[str, dict],
    ledger: dict | None,
    run_time: float | None = None,
    planned_run_time: float | None = None,
) -> dict:
    """Returns ``{"passed": bool, "checks": [...]}``.  ``run_time``: the
    seconds actually run; ``planned_run_time``: the scenario's, for which
    its minimums are written."""
    checks = []
    steps = {n: r for n, r in summary.items() if n not in SESSION_NAMES and not n.startswith("~")}
    requests = sum(r["requests"] for r in steps.values())
    failures = sum(r["failures"] for r in steps.values())
    rate = failures / requests if requests else 0.0
    checks.append(_check("error_rate", rate <= slo.error_rate, round(rate, 5), slo.error_rate))
    sessions = summary.get("SESSION", {}).get("ok", 0)
    minimum = scaled_minimum(slo.min_sessions, run_time, planned_run_time)
    checks.append(_check("min_sessions", sessions >= minimum, sessions, minimum))
    for pattern, limits in slo.steps.items():
        matched = [n for n in summary if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            checks.append(_check(f"{pattern}: present", False, "no requests", "some"))
        for name in matched:
            row = summary[name]
            for metric, limit in limits.items():
                if metric == "error_rate":
                    actual = row["failures"] / row["requests"] if row["requests"] else 0.0
                else:
                    actual = row.get(metric)
                    if actual is None:
                        checks.append(_check(f"{name}: {metric}", False, "no successful requests", limit))
                        continue
                checks.append(_check(f"{name}: {metric}", actual <= limit, actual, limit))
    if slo.spec_qos:
        for name, row in steps.items():
            share = row["spec_within"] / row["requests"] if row["requests"] else 1.0
            rule = "5 s + bytes/3000" if name.startswith(("RETR", "DELIVER")) else "5 s"
            checks.append(
                _check(f"{name}: SPEC {rule}", share >= slo.spec_share, round(share, 5), slo.spec_share)
            )
    if ledger is not None:
        for key in ("lost", "duplicated", "corrupted"):
            value = ledger.get(key)
            checks.append(_check(f"ledger: {key}", value == 0, value, 0))
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def render(verdicts: dict) -> str:
    lines = []
    for c in verdicts["checks"]:
        mark = "PASS" if c["passed"] else "FAIL"
        lines.append(f"  {mark}  {c['check']}: {c['actual']} (limit {c['limit']})")
    lines.append(f"  verdict: {'PASSED' if verdicts['passed'] else 'FAILED'}")
    return "\n".join(lines)
