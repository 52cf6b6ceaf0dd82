"""Every security probe ends with the same two checks, done here once
(security-probes.md §3): ALIVE (a fresh connection gets +OK and the canary
login works) and no state change (the canary maildrop is as before).

The ``guard`` fixture snapshots the canary maildrop before the probe; a
``pytest_runtest_call`` wrapper runs the checks right after the probe body,
inside the call phase, so a failure is graded like any check of the case.
A probe that delivers mail to the canary on purpose calls
``guard.allow_new_messages()``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from pop3suite.conformance.case import CaseFailure
from pop3suite.conformance.conftest import CLIENTS, home_mode
from pop3suite.conformance.mailbox import MailboxIndex
from pop3suite.target.model import Target

from .probe import canary_state


@dataclass
class Guard:
    target: Target
    mode: str
    before: Counter[tuple[str, int]]
    allow_new: bool = False

    def allow_new_messages(self) -> None:
        self.allow_new = True

    def check(self) -> None:
        after = canary_state(self.target, self.mode)
        lost = self.before - after
        added = after - self.before
        if lost or (added and not self.allow_new):
            raise CaseFailure(
                "no state change: the canary maildrop must be as before the probe",
                f"{sum(self.before.values())} messages, none removed or added",
                f"removed {sorted(lost)[:5]}, added {sorted(added)[:5]}",
            )


GUARD = pytest.StashKey[Guard]()


@pytest.fixture(autouse=True)
def guard(
    request: pytest.FixtureRequest, target: Target, capabilities: dict[str, str], mailbox: MailboxIndex
) -> Guard:
    # ``mailbox`` first: the fixture messages are seeded before the snapshot
    # (probes such as P7 need messages to DELE).
    del mailbox
    mode = home_mode(target, capabilities)
    state = Guard(target, mode, canary_state(target, mode))
    request.node.stash[GUARD] = state
    return state


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    result = yield  # a failing or UNIMPLEMENTED probe raises here: no checks
    state = item.stash.get(GUARD, None)
    if state is not None:
        for client in item.stash.get(CLIENTS, []):
            client.close()  # release the maildrop lock before the canary login
        state.check()
    return result
