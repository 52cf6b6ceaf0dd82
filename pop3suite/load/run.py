"""Run one load scenario on a target that is already up: write ``run.json``,
monitor the server process and run Locust (master plus optional workers).

It lives in the load package, not in ``pop3suite/loadcmd.py``, so that both
``pop3suite load`` and ``pop3suite capacity`` (``pop3suite/load/capacity/sweep.py``, one
call per cell) run a scenario the same way without the load layer importing a
command module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_load(
    scenario, results: Path, run: dict, workers: int = 0, users: int | None = None, log: Path | None = None
) -> int:
    """Write ``results/run.json``, monitor ``run["server_pid"]`` and run Locust
    on a target that is already up; returns Locust's exit code.  Shared by
    ``pop3suite load`` and ``pop3suite capacity`` (one call per cell), so both
    run a scenario the same way.  ``log``: Locust's stdout/stderr go there
    instead of this process's."""
    from pop3suite.load.monitor import Monitor, metrics_url

    run_file = results / "run.json"
    run["run_time"] = scenario.run_time  # the locustfile rewrites it with the run time actually run
    run_file.write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    monitor = (
        Monitor(run["server_pid"], metrics_url=metrics_url(run)).start() if run.get("server_pid") else None
    )
    try:
        return _run_locust(scenario, users, results, run_file, workers, log)
    finally:
        if monitor is not None:
            monitor.stop()
            monitor.write(results)


def locustfile() -> Path:
    return Path(__file__).resolve().parent / "locustfile.py"


def _run_locust(
    scenario, users: int | None, results: Path, run_file: Path, workers: int, log: Path | None = None
) -> int:
    env = {
        **os.environ,
        "POP3SUITE_SCENARIO": str(scenario.path),
        "POP3SUITE_RUN": str(run_file.resolve()),
        "POP3SUITE_WORKERS": str(max(1, workers)),
        "PYTHONUNBUFFERED": "1",
    }
    if users:
        env["POP3SUITE_USERS"] = str(users)
    base = [sys.executable, "-m", "locust", "-f", str(locustfile())]
    common = ["--pop3-scenario", str(scenario.path), "--pop3-run", str(run_file.resolve())]
    stop_timeout = str(int(scenario.stop_timeout))
    main = [
        *base,
        *common,
        "--headless",
        "--only-summary",
        "-u", str(scenario.total_users),
        "-r", str(scenario.spawn_rate),
        "--stop-timeout", stop_timeout,
        "--pop3-run-time", str(scenario.run_time),
        "--pop3-results", str(results),
        "--csv", str(results / "locust"), "--csv-full-history",
        "--html", str(results / "locust.html"),
        "--loglevel", "WARNING",
    ]  # fmt: skip
    procs: list[subprocess.Popen] = []
    if workers:
        from pop3suite.netutil import free_port

        port = free_port()
        main += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
        main += ["--expect-workers", str(workers), "--expect-workers-max-wait", "30"]
        for _ in range(workers):
            worker = [*base, *common, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
            worker += ["--loglevel", "WARNING"]
            procs.append(subprocess.Popen(worker, env=env))
    print(
        f"pop3suite load {scenario.name}: {scenario.total_users} users, {scenario.run_time:g} s"
        + (f", master + {workers} workers" if workers else "")
        + f"; results in {results}",
        file=sys.stderr,
    )
    # Bounded: the run time, the graceful stop and the final accounting.
    limit = scenario.run_time + float(stop_timeout) + 120
    output = open(log, "ab") if log else None  # noqa: SIM115 - closed below
    master = subprocess.Popen(main, env=env, stdout=output, stderr=output)
    try:
        code = master.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        master.kill()
        master.wait()
        code = 1
        print(f"pop3suite load: Locust did not finish within {limit:.0f} s; killed", file=sys.stderr)
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches Locust too; a SIGINT sent to this process alone does not.
        master.terminate()
        try:
            master.wait(timeout=30)
        except subprocess.TimeoutExpired:
            master.kill()
        raise
    finally:
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if output is not None:
            output.close()
    return code
