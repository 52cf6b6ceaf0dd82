"""When is a cell saturated?  Rules on one cell's measurements, plus the
latency knee across cells that differ only in offered load.

Per cell (:func:`cell_reasons`):

* ``errors``: failed polls / polls above the SLO error rate;
* ``timeouts``: any client timeout (no complete answer in time);
* ``idle-timeout``: the server closed a logged-in session (see
  :func:`pop3suite.load.capacity.sweep` for how those are counted);
* ``rate``: achieved polls/s below 90 % of the offered polls/s;
* ``slo``: SESSION p95 above the SLO.

Across cells (:func:`knee_reasons`): cells with the same backend, TLS mode,
mailbox size and behaviour, sorted by offered polls/s.  Going from one load
point to the next, if p95 grows by more than ``slack`` times the growth of
offered load (i.e. faster than linear) and is at least ``floor_ms`` and
twice the lowest-load p95, the higher point and every one above it are past
the knee.  The floor keeps millisecond jitter on an idle server from
counting as a knee.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable

RATE_SHARE = 0.9
KNEE_SLACK = 1.5
KNEE_FLOOR_MS = 50.0


def cell_reasons(measured: dict, slo_p95_ms: float, slo_error_rate: float) -> list[str]:
    """The saturation reasons one cell shows on its own (empty: not saturated)."""
    reasons = []
    polls = measured.get("polls") or 0
    if polls == 0:
        return ["no polls completed"]
    if measured.get("errors", 0) / polls > slo_error_rate:
        reasons.append(f"errors: {measured['errors']} of {polls} polls failed")
    if measured.get("timeouts", 0):
        reasons.append(f"timeouts: {measured['timeouts']}")
    if measured.get("idle_timeouts", 0):
        reasons.append(f"idle-timeout: {measured['idle_timeouts']} sessions closed by the server")
    offered = measured.get("offered_polls_per_s") or 0
    achieved = measured.get("polls_per_s") or 0
    if offered and achieved < RATE_SHARE * offered:
        reasons.append(f"rate: {achieved:.3g} polls/s achieved < 90 % of {offered:.3g} offered")
    p95 = measured.get("p95_ms")
    if p95 is not None and p95 > slo_p95_ms:
        reasons.append(f"slo: SESSION p95 {p95:.0f} ms > {slo_p95_ms:g} ms")
    return reasons


def knee_reasons(
    points: Iterable[tuple[str, tuple, float, float | None]],
    slack: float = KNEE_SLACK,
    floor_ms: float = KNEE_FLOOR_MS,
) -> dict[str, str]:
    """``points``: (cell id, group key, offered polls/s, p95 ms).  Returns
    cell id -> reason for the cells at or past a latency knee."""
    groups: dict[tuple, list[tuple[str, float, float]]] = defaultdict(list)
    for cell_id, key, offered, p95 in points:
        if p95 is not None and offered > 0:
            groups[key].append((cell_id, offered, p95))
    out: dict[str, str] = {}
    for rows in groups.values():
        rows.sort(key=lambda r: r[1])
        if len(rows) < 2:
            continue
        base = rows[0][2]
        knee = None
        for (_, load0, p0), (cell_id, load1, p1) in itertools.pairwise(rows):
            if load1 <= load0 or p0 <= 0:
                continue
            if p1 / p0 > slack * (load1 / load0) and p1 >= floor_ms and p1 >= 2 * base:
                knee = cell_id
                break
        if knee is None:
            continue
        past = False
        for cell_id, load, p95 in rows:
            past = past or cell_id == knee
            if past:
                out[cell_id] = f"knee: p95 {p95:.0f} ms grows faster than offered load ({load:.3g} polls/s)"
    return out
