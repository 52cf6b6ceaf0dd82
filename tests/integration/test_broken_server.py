"""The conformance suite tests itself: every fault of the broken server is
caught by the cases expected to catch it, and the clean server by none.

For each fault of ``tests/broken_server`` a fresh lab and a broken server
start, and the real ``pop3suite check`` runs against it, limited (``-k``)
to the cases the registry says catch that fault.  Each of them must be
FAILED, or NON-STRICT where the case is a SHOULD; none may end otherwise
(a case that could not run, or that crashed, proves nothing).  The clean
reference server, started the same way, must pass every one of those cases.

Each lab starts with the suite's fixture messages in alice's Maildir, as
a full run has them.  The checks run a few at a time in threads (they mostly wait on sockets and
on the 3 s idle timer), once per module; each fault is then its own test.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.broken_server.faults import FAULTS
from tests.broken_server.launch import CheckRun, broken_lab, run_check

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

#: Broken servers checked at once (each run is mostly waiting).
PARALLEL = 4
#: The grade that counts as "caught", by the case's level.
CAUGHT = {"MUST": "FAILED", "PROVIDER": "FAILED", "SHOULD": "NON-STRICT"}
#: Outcomes of the clean server that count as passing (UNIMPLEMENTED: the
#: clean server lacks what the case needs, e.g. a UTF8 capability or a
#: second session on a locked maildrop).
CLEAN = {"OK", "INFORMATIONAL", "UNIMPLEMENTED"}
#: Cases written because a fault got through every other case: the clean
#: server must pass them outright.
NEW_CASES = (
    "rfc1939/5/list-excludes-deleted",
    "rfc1939/6/rset-before-quit",
    "rfc1939/7/apop-needs-timestamp",
)

ALL_CASES = sorted({case_id for fault in FAULTS.values() for case_id in fault.catches})


def _check(fault: str, case_ids: list[str]) -> CheckRun | str:
    started = time.monotonic()
    try:
        with broken_lab(fault) as lab:
            run = run_check(lab, case_ids, timeout=400)
    except (RuntimeError, OSError) as error:  # the server did not start: say so in that fault's test
        return f"{fault}: {error}"
    run.output += f"\n[{fault}: {time.monotonic() - started:.1f} s]"
    return run


@pytest.fixture(scope="module")
def runs() -> dict[str, CheckRun | str]:
    """fault name (and "none") -> its check run."""
    jobs = {name: list(fault.catches) for name, fault in FAULTS.items() if fault.catches}
    jobs["none"] = ALL_CASES
    with ThreadPoolExecutor(PARALLEL) as pool:
        futures = {name: pool.submit(_check, name, ids) for name, ids in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_is_caught(runs, name):
    run = runs[name]
    assert not isinstance(run, str), run
    fault = FAULTS[name]
    levels = {record["id"]: record["level"] for record in run.records}
    for case_id in fault.catches:
        assert case_id in run.outcomes, f"{case_id} did not run against {name}:\n{run.output[-3000:]}"
        wanted = CAUGHT[levels[case_id]]
        assert run.outcomes[case_id] == wanted, (
            f"{name}: {case_id} is {run.outcomes[case_id]}, expected {wanted}:\n{run.output[-3000:]}"
        )
    errored = sorted(case_id for case_id, outcome in run.outcomes.items() if outcome == "ERROR")
    assert not errored, f"{name}: cases that could not judge: {errored}:\n{run.output[-3000:]}"
    assert run.returncode != 0 or all(levels[c] == "SHOULD" for c in fault.catches), run.output[-3000:]


def test_clean_server_passes_every_catching_case(runs):
    run = runs["none"]
    assert not isinstance(run, str), run
    missing = [case_id for case_id in ALL_CASES if case_id not in run.outcomes]
    assert not missing, f"cases that did not run against the clean server: {missing}"
    bad = {case_id: outcome for case_id, outcome in run.outcomes.items() if outcome not in CLEAN}
    assert not bad, f"the clean server is graded {bad}:\n{run.output[-3000:]}"
    assert run.returncode == 0, run.output[-3000:]
    assert {case_id: run.outcomes[case_id] for case_id in NEW_CASES} == dict.fromkeys(NEW_CASES, "OK")
