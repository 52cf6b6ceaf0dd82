"""How much load one Locust process generates, and how many users it holds.

Numbers, not tests.  Two measurements against the reference server
(``pop3suite serve`` as its own process, a lab with cheap password hashes
and empty mailboxes, so a poll is CONNECT, USER/PASS, STAT, QUIT):

1. ``polls/s per core``: the Locust POP3 user (pop3suite/load/users.py, back-to-back
   polls, plain POP3) against a raw asyncio client loop doing the same
   commands, in the same run on the same server.  The figure is polls per
   second of *client* CPU (user + sys), so it does not depend on how fast
   the server is.  Locust's start-up and final accounting are cancelled by
   running it twice (short and long) and taking the difference.
2. ``idle users per GB``: Locust processes holding N users that poll every
   600 s (so they sit idle); RSS is measured after every user spawned, at
   two user counts; the slope is the memory per user, and 1 GiB divided by
   it (after the fixed base) is an *extrapolation*, not a measurement.

Usage::

    python benchmarks/bench_load_client.py [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from pop3suite.lab import start_server
from pop3suite.load import labsetup
from pop3suite.load.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

SCENARIO = """
name = "{name}"
run_time = 60
spawn_rate = 2000
[[clients]]
name = "bench"
users = {users}
tls = "none"
behaviour = "delete"
poll_interval = {interval}
timeout = 30
[slo]
error_rate = 1.0
min_sessions = 0
"""


def write_scenario(directory: Path, name: str, users: int, interval: float) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(SCENARIO.format(name=name, users=users, interval=interval))
    return path


def locust_cmd(scenario: Path, run_file: Path, users: int, run_time: float, results: Path) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", str(ROOT / "pop3suite" / "load" / "locustfile.py"),
        "--headless", "--only-summary", "--loglevel", "ERROR",
        "-u", str(users), "-r", "2000",
        "--pop3-scenario", str(scenario), "--pop3-run", str(run_file),
        "--pop3-run-time", str(run_time), "--pop3-results", str(results), "--pop3-progress", "0",
    ]  # fmt: skip


def run_locust(
    scenario: Path, run_file: Path, users: int, run_time: float, results: Path
) -> tuple[int, float]:
    """(SESSION count, client CPU seconds) of one whole Locust run."""
    env = {**os.environ, "POP3SUITE_SCENARIO": str(scenario), "POP3SUITE_RUN": str(run_file)}
    proc = subprocess.Popen(
        locust_cmd(scenario, run_file, users, run_time, results),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0
    steps = json.loads((results / "steps.json").read_text())
    return steps.get("SESSION", {}).get("ok", 0), usage.ru_utime + usage.ru_stime


async def raw_poll_loop(port: int, accounts: list[str], password: str, seconds: float) -> int:
    """Back-to-back polls, one coroutine per account; returns completed polls."""
    deadline = time.monotonic() + seconds
    count = 0

    async def one(account: str) -> None:
        nonlocal count
        user, pw = f"USER {account}\r\n".encode(), f"PASS {password}\r\n".encode()
        while time.monotonic() < deadline:
            reader, writer = await asyncio.open_connection(HOST, port)
            await reader.readline()
            for command in (user, pw, b"STAT\r\n", b"QUIT\r\n"):
                writer.write(command)
                line = await reader.readline()
                if not line.startswith(b"+OK"):
                    raise RuntimeError(f"{command!r}: {line!r}")
            writer.close()
            await writer.wait_closed()
            count += 1

    await asyncio.gather(*(one(a) for a in accounts))
    return count


def measure_raw(port: int, accounts: list[str], password: str, seconds: float) -> tuple[int, float]:
    cpu0 = time.process_time()
    polls = asyncio.run(raw_poll_loop(port, accounts, password, seconds))
    return polls, time.process_time() - cpu0


def rss_with_users(scenario: Path, run_file: Path, users: int, settle: float, results: Path) -> float:
    """RSS of a Locust process once ``users`` idle users have spawned."""
    env = {**os.environ, "POP3SUITE_SCENARIO": str(scenario), "POP3SUITE_RUN": str(run_file)}
    proc = subprocess.Popen(
        locust_cmd(scenario, run_file, users, 600, results),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(settle + users / 2000)
        return psutil.Process(proc.pid).memory_info().rss
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--users", type=int, default=20, help="concurrent pollers for the polls/s test")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    short, long = (4.0, 10.0) if args.quick else (5.0, 20.0)
    idle_counts = (200, 1000) if args.quick else (500, 2500)
    work = Path(tempfile.mkdtemp(prefix="pop3suite-bench-load-"))
    out: dict = {"cpu_count": os.cpu_count(), "users": args.users}
    try:
        busy = write_scenario(work, "busy", args.users, 0.001)
        idle = write_scenario(work, "idle", max(idle_counts), 600.0)
        lab, _ = labsetup.prepare(load_scenario(idle), work / "lab")
        server = start_server(lab.config_path)
        try:
            run = {
                "host": HOST,
                "pop3_port": server.endpoints["pop3"],
                "pop3s_port": server.endpoints.get("pop3s"),
                "password": labsetup.PASSWORD,
                "mail_root": str(lab.settings.mail_root),
                "cafile": str(lab.ca_file),
                "workers": 1,
            }
            run_file = work / "run.json"
            run_file.write_text(json.dumps(run))
            accounts = [f"bench{i:04d}" for i in range(args.users)]
            server_proc = psutil.Process(server.process.pid)

            # 1. polls per client-CPU-second, Locust vs raw asyncio, interleaved.
            print(f"polls/s per core: {args.users} pollers, back to back, plain POP3, empty mailboxes")
            s0 = sum(server_proc.cpu_times()[:2])
            polls_a, cpu_a = run_locust(busy, run_file, args.users, short, work / "r1")
            raw_a, raw_cpu_a = measure_raw(run["pop3_port"], accounts, run["password"], short)
            polls_b, cpu_b = run_locust(busy, run_file, args.users, long, work / "r2")
            raw_b, raw_cpu_b = measure_raw(run["pop3_port"], accounts, run["password"], long)
            server_cpu = sum(server_proc.cpu_times()[:2]) - s0
            locust_rate = (polls_b - polls_a) / max(1e-9, cpu_b - cpu_a)
            raw_rate = (raw_a + raw_b) / max(1e-9, raw_cpu_a + raw_cpu_b)
            out["locust"] = {"polls": [polls_a, polls_b], "cpu_s": [round(cpu_a, 2), round(cpu_b, 2)]}
            out["raw"] = {"polls": [raw_a, raw_b], "cpu_s": [round(raw_cpu_a, 2), round(raw_cpu_b, 2)]}
            out["locust_polls_per_core_s"] = round(locust_rate, 1)
            out["raw_polls_per_core_s"] = round(raw_rate, 1)
            out["locust_wall_polls_per_s"] = round((polls_b - polls_a) / (long - short), 1)
            out["raw_wall_polls_per_s"] = round((raw_a + raw_b) / (short + long), 1)
            out["server_cpu_s"] = round(server_cpu, 2)
            print(f"  Locust POP3 user : {locust_rate:8.1f} polls per client CPU-second "
                  f"({out['locust_wall_polls_per_s']} polls/s wall)")  # fmt: skip
            print(f"  raw asyncio loop : {raw_rate:8.1f} polls per client CPU-second "
                  f"({out['raw_wall_polls_per_s']} polls/s wall)")  # fmt: skip
            print(f"  ratio raw/Locust : {raw_rate / max(1e-9, locust_rate):8.2f}")

            # 2. idle users per GB.
            print(
                f"idle users per GB: Locust RSS with {idle_counts[0]} and {idle_counts[1]} users"
                " polling every 600 s"
            )
            rss = [rss_with_users(idle, run_file, n, 6.0, work / f"i{n}") for n in idle_counts]
            per_user = (rss[1] - rss[0]) / (idle_counts[1] - idle_counts[0])
            base = rss[0] - per_user * idle_counts[0]
            per_gb = (2**30 - base) / per_user if per_user > 0 else float("inf")
            out.update(
                idle_rss_bytes=dict(zip(map(str, idle_counts), rss, strict=True)),
                rss_per_user_bytes=round(per_user),
                rss_base_bytes=round(base),
                idle_users_per_gib_extrapolated=int(per_gb),
            )
            for n, r in zip(idle_counts, rss, strict=True):
                print(f"  {n:>6} users: RSS {r / 2**20:7.1f} MiB")
            print(f"  {per_user / 1024:.1f} KiB per user, base {base / 2**20:.1f} MiB -> "
                  f"~{int(per_gb):,} idle users in 1 GiB (extrapolated from the slope)")  # fmt: skip
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
