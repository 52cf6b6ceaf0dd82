"""Offered vs achieved load over time: users and the planned poll rate
against the sessions and requests the server actually completed."""

from __future__ import annotations

import numpy as np

from .figures import Chart, gapped, missing, new_figure
from .inputs import RunData


def planned_poll_rate(run: RunData) -> tuple[float, str] | None:
    """Polls per second the scenario asks for (each POP3 user polls once per
    real interval), when the scenario can be found and the run used its
    unscaled mix (Locust's user count equals the scenario's); else None,
    rather than a guess."""
    name = (run.verdicts or {}).get("scenario") or run.run.get("scenario")
    aggregated = run.history.get("Aggregated")
    if not name or aggregated is None or not np.isfinite(aggregated.users).any():
        return None
    try:
        from pop3suite.load.scenario import load_scenario

        scenario = load_scenario(str(run.run.get("scenario_file") or name))
    except (OSError, ValueError):
        return None
    if int(np.nanmax(aggregated.users)) != scenario.total_users:
        return None
    rate = sum(c.users / scenario.real_interval(c) for c in scenario.clients)
    return rate, f"scenario {scenario.name}: {scenario.pop_users} POP3 users"


def achieved_session_rate(run: RunData) -> float | None:
    """Mean completed sessions per second over the run (steps.json SESSION
    count / the run time in verdicts.json)."""
    session = run.steps.get("SESSION") or {}
    run_time = (run.verdicts or {}).get("run_time")
    if not session.get("requests") or not run_time:
        return None
    return session["requests"] / float(run_time)


def load_chart(run: RunData, name: str = "offered_vs_achieved") -> Chart:
    title = "Offered vs achieved load over time"
    aggregated = run.history.get("Aggregated")
    if aggregated is None or aggregated.t.size < 2:
        return missing(name, title, "No Locust history (locust_stats_history.csv absent or a single row).")
    figure = new_figure(9.0, 5.2)
    top, bottom = figure.subplots(2, 1, sharex=True)
    top.step(
        *gapped(aggregated.t, aggregated.users),
        where="post",
        color="C0",
        label="simulated clients (Locust users)",
    )
    top.set_ylabel("users")
    top.grid(True, alpha=0.3)
    handles, labels = top.get_legend_handles_labels()
    planned = planned_poll_rate(run)
    achieved = achieved_session_rate(run)
    rate_ax = top.twinx()
    if planned is not None:
        rate_ax.axhline(planned[0], color="C2", linestyle="--", label=f"planned polls/s ({planned[1]})")
    if achieved is not None:
        rate_ax.axhline(achieved, color="C3", linestyle=":", label="achieved sessions/s (run mean)")
    session = run.history.get("SESSION")
    if session is not None:
        rate_ax.plot(*gapped(session.t, session.rps), color="C3", label="completed sessions/s")
        rate_ax.plot(*gapped(session.t, session.fps), color="C1", label="failed sessions/s")
    rate_ax.set_ylabel("polls or sessions per second")
    rate_ax.set_ylim(bottom=0)
    more_handles, more_labels = rate_ax.get_legend_handles_labels()
    top.legend(handles + more_handles, labels + more_labels, fontsize=7, loc="lower right")
    bottom.plot(*gapped(aggregated.t, aggregated.rps), color="C0", label="requests/s (all steps)")
    bottom.plot(*gapped(aggregated.t, aggregated.fps), color="C1", label="failures/s (all steps)")
    bottom.set_ylabel("per second")
    bottom.set_xlabel("seconds since start")
    bottom.grid(True, alpha=0.3)
    bottom.legend(fontsize=7, loc="upper left")
    how = (
        "Top: the simulated clients and, when known, the poll rate the scenario plans against the sessions "
        "completed. Bottom: every protocol step per second and the failures. Achieved below planned, or "
        "failures rising, means the server (or the load generator) could not keep up."
    )
    if planned is None:
        how += (
            " (The planned rate is not drawn: the scenario file was not found or the run scaled its users.)"
        )
    return Chart(name, title, how, figure)
