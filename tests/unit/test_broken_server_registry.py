"""The broken server's fault registry is well formed (no server started:
tests/integration/test_broken_server.py runs the faults)."""

from __future__ import annotations

import pytest

from tests.broken_server.cases import case_functions, keyword_expression, split_id
from tests.broken_server.faults import AREAS, FAULTS


def test_at_least_thirty_faults_over_every_area():
    assert len(FAULTS) >= 30
    assert {fault.area for fault in FAULTS.values()} == set(AREAS)


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_every_fault_names_cases_that_exist(name):
    fault = FAULTS[name]
    assert fault.catches, f"{name}: no case is expected to catch it"
    assert fault.description.endswith(".")
    for case_id in fault.catches:
        assert split_id(case_id)[0] in case_functions(), f"{name}: no conformance case {case_id}"
    keyword_expression(fault.catches)


def test_keyword_expression_selects_parameters():
    expression = keyword_expression(["rfc1939/4/quit[after-user]", "rfc1939/5/dele-marks-only"])
    assert expression == "test_quit_in_authorization[after-user] or test_dele_marks_and_later_references_fail"
    with pytest.raises(KeyError):
        keyword_expression(["rfc1939/5/no-such-case"])
