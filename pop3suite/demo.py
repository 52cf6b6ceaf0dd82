"""``pop3suite demo``: the main job on the embedded reference server.

It builds a temporary lab, starts ``pop3suite serve`` as its own process (the
same command users run; a later load run must not share a process with the
asyncio server), delivers a set of awkward messages, and runs POP3 sessions
in every connection mode, checking each retrieved message byte for byte.
Later stages (conformance, a short load run, the report) hang off the same
lab.
"""

from __future__ import annotations

import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .client import Pop3Client
from .lab import ServerProcess, lab_server
from .proto import crlf_form

#: Messages that break careless servers (rfc-checklist.md, "most often wrong").
DEMO_MESSAGES: dict[str, bytes] = {
    "plain": b"From: a@example.test\r\nSubject: plain\r\n\r\nHello.\r\n",
    "dot-lines": b"Subject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\n+OK fake status\r\nend\r\n",
    "bare-lf": b"Subject: bare LF storage\n\nline one\n.dot after LF\nline three\n",
    "no-final-newline": b"Subject: no final newline\r\n\r\nlast line without CRLF",
    "8bit-utf8": (
        "Subject: =?UTF-8?B?w6TDtsO8?=\r\nX-Raw: caf\u00e9\r\n\r\nGr\u00fc\u00dfe \u2603\r\n".encode()
    ),
    "empty-body": b"Subject: empty body\r\n\r\n",
    "1mb": b"Subject: one megabyte\r\n\r\n" + (b"0123456789abcdef" * 4 + b"\r\n") * 15888,
}


#: What RETR must deliver, unstuffed: CRLF line ends, final CRLF.
expected_wire = crlf_form


def _modes(lab: object, server: ServerProcess) -> dict[str, Callable[[], Pop3Client]]:
    context = ssl.create_default_context(cafile=str(lab.ca_file))  # type: ignore[attr-defined]
    pop3, pop3s = server.endpoints["pop3"], server.endpoints["pop3s"]
    return {
        "plain": lambda: Pop3Client("127.0.0.1", pop3),
        "stls": lambda: Pop3Client("127.0.0.1", pop3, tls="stls", ssl_context=context),
        "implicit-tls": lambda: Pop3Client("127.0.0.1", pop3s, tls="implicit", ssl_context=context),
    }


def run_conformance(results: Path) -> tuple[int, dict[str, int]]:
    """Stage 2: ``pop3suite check --fast`` on the embedded server (its own
    process and lab), reports in ``results``.  Returns (exit code, counts)."""
    import json

    print("\npop3suite demo: conformance suite (fast profile) on the embedded reference server ...")
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "pop3suite", "check", "--fast", "--report", str(results)],
        capture_output=True,
        text=True,
    )
    counts: dict[str, int] = {}
    try:
        counts = json.loads((results / "results.json").read_text())["counts"]
    except (OSError, ValueError, KeyError):
        print(completed.stdout[-3000:] + completed.stderr[-3000:])
    took = time.perf_counter() - started
    print("  " + "   ".join(f"{k}: {v}" for k, v in counts.items()) + f"   ({took:.0f} s)")
    for line in completed.stdout.splitlines():
        verdict = line.startswith(("FAILED ", "NON-STRICT ", "ERROR "))
        if verdict or line.strip().startswith(("Expected:", "Actual:")):
            print("  " + line)
    print(f"  report: {results / 'report.html'}")
    return completed.returncode, counts


def run_load(results: Path, run_time: int = 15) -> tuple[int, str]:
    """Stage 3: a short load run (the ``smoke`` scenario) on the embedded
    server in its own process.  Returns (exit code, one-line summary)."""
    import json

    print(
        f"\npop3suite demo: {run_time} s load run (scenario smoke: every TLS mode, APOP, SMTP delivery) ..."
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pop3suite",
            "load",
            "smoke",
            "--run-time",
            str(run_time),
            "--report",
            str(results),
        ],
        capture_output=True,
        text=True,
    )
    try:
        verdicts = json.loads((results / "verdicts.json").read_text())
        ledger = json.loads((results / "ledger.json").read_text())
        steps = json.loads((results / "steps.json").read_text())
    except (OSError, ValueError):
        print(completed.stdout[-3000:] + completed.stderr[-3000:])
        return completed.returncode or 1, "load run produced no results"
    failed = [c["check"] for c in verdicts.get("checks", []) if not c.get("passed")]
    session = steps.get("SESSION", {}) if isinstance(steps, dict) else {}
    summary = (
        f"  SLO verdicts: {'PASS' if verdicts.get('passed') else 'FAIL ' + ', '.join(failed)}; "
        f"ledger: delivered {ledger['delivered']}, retrieved {ledger['retrieved_distinct']}, "
        f"left {ledger['left']}, lost {ledger['lost']}, duplicated {ledger['duplicated']}"
    )
    if session:
        summary += (
            f"\n  POP3 sessions: {session.get('ok', '?')} ok of {session.get('requests', '?')}, "
            f"p50 {session.get('p50_ms', '?')} ms, p95 {session.get('p95_ms', '?')} ms"
        )
    print(summary)
    print(f"  report: {results / 'locust.html'} (+ histograms, monitor, ledger, verdicts JSON)")
    return completed.returncode, summary


def run_demo(keep: bool = False, sessions: int = 20, results: str | Path = "results/demo") -> int:
    """Run the demo; return the exit status (0 when every check passed)."""
    from pop3suite.server.storage import open_store

    results = Path(results)
    print("pop3suite demo: starting a temporary lab with the reference server ...")
    failures: list[str] = []
    with lab_server(keep) as (lab, server):
        settings = lab.settings  # type: ignore[attr-defined]
        password = lab.password  # type: ignore[attr-defined]
        print(f"  server: pop3 :{server.endpoints['pop3']}  pop3s :{server.endpoints['pop3s']}")
        store = open_store(settings, fsync=False)
        for data in DEMO_MESSAGES.values():
            store.deliver("alice", data)
        expected = [expected_wire(data) for data in DEMO_MESSAGES.values()]
        total = sum(len(e) for e in expected)
        print(f"  delivered {len(expected)} awkward messages ({total} octets) to alice")
        print(f"\n  {'mode':<14}{'login':<8}{'sessions':>9}{'ok':>5}{'median ms':>11}{'sessions/s':>12}")
        for mode, factory in _modes(lab, server).items():
            for login in ("USER", "SASL"):
                times, passed = [], 0
                started = time.perf_counter()
                for _ in range(sessions):
                    t0 = time.perf_counter()
                    try:
                        with factory() as pop:
                            if login == "USER":
                                pop.login("alice", password)
                            else:
                                pop.auth_plain("alice", password)
                            count, size = pop.stat()
                            sizes = pop.list()
                            bodies = [pop.retr(n) for n in range(1, count + 1)]
                            pop.quit()
                        problems = _compare(expected, bodies, sizes, size)
                        if problems:
                            failures.append(f"{mode}/{login}: {problems}")
                        else:
                            passed += 1
                    except Exception as error:  # report, don't crash the demo
                        failures.append(f"{mode}/{login}: {type(error).__name__}: {error}")
                    times.append(time.perf_counter() - t0)
                elapsed = time.perf_counter() - started
                print(
                    f"  {mode:<14}{login:<8}{sessions:>9}{passed:>5}"
                    f"{statistics.median(times) * 1000:>11.1f}{sessions / elapsed:>12.1f}"
                )
        # APOP for carol, then a delete-after-retrieve session for alice.
        store.deliver("carol", DEMO_MESSAGES["dot-lines"])
        try:
            with _modes(lab, server)["plain"]() as pop:
                pop.apop("carol", password)
                ok = pop.retr(1) == expected_wire(DEMO_MESSAGES["dot-lines"])
                pop.quit()
            print(
                f"  {'plain':<14}{'APOP':<8}{1:>9}{int(ok):>5}"
                "   (carol; APOP is weak: MD5 challenge-response)"
            )
            if not ok:
                failures.append("APOP retrieval differed")
        except Exception as error:
            failures.append(f"APOP: {type(error).__name__}: {error}")
        try:
            with _modes(lab, server)["plain"]() as pop:
                pop.login("alice", password)
                count, _ = pop.stat()
                for n in range(1, count + 1):
                    pop.dele(n)
                pop.quit()
            with _modes(lab, server)["plain"]() as pop:
                pop.login("alice", password)
                left = pop.stat()[0]
                pop.quit()
            print(f"\n  delete-after-retrieve: {count} deleted, {left} left (expected 0)")
            if left:
                failures.append(f"{left} messages left after DELE+QUIT")
        except Exception as error:
            failures.append(f"delete session: {type(error).__name__}: {error}")
    code, counts = run_conformance(results / "conformance")
    if code != 0:
        failures.append(f"conformance: {counts.get('FAILED', '?')} FAILED cases (exit {code})")
    code, summary = run_load(results / "load")
    if code != 0:
        failures.append(f"load run: exit {code}: {summary.strip()}")
    try:  # the HTML report with charts of the load run (pop3suite/load/report/)
        from pop3suite.load.report import render_report

        print(f"  load report with charts: {render_report([results / 'load'], results / 'load')}")
    except Exception as error:  # a broken report must not hide the load verdict above
        failures.append(f"load report: {type(error).__name__}: {error}")
    if failures:
        print(f"\npop3suite demo: {len(failures)} FAILED checks:")
        for failure in failures[:20]:
            print(f"  - {failure}")
        return 1
    print(f"\npop3suite demo: all checks passed (byte-exact retrieval in every mode; reports in {results}).")
    return 0


def _compare(expected: list[bytes], bodies: list[bytes], sizes: dict[int, int], stat_size: int) -> str:
    if len(bodies) != len(expected):
        return f"{len(bodies)} messages, expected {len(expected)}"
    for number, (want, got) in enumerate(zip(expected, bodies, strict=True), 1):
        if want != got:
            return f"message {number} differs ({len(got)} octets, expected {len(want)})"
        if sizes[number] != len(got):
            return f"LIST {number} says {sizes[number]}, RETR sent {len(got)}"
    if stat_size != sum(len(b) for b in bodies):
        return f"STAT size {stat_size} != retrieved {sum(len(b) for b in bodies)}"
    return ""
