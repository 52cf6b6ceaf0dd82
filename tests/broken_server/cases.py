"""From conformance case ids to a ``pop3suite check -k`` expression.

Case ids (``rfc1939/5/retr-byte-exact[dot-lines]``) are not pytest names;
the test functions carry them in their ``pop3case`` marker.  This module
reads those markers once, so a run can be limited to the cases a fault is
expected to trip.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import warnings
from collections.abc import Iterable

import pytest

from pop3suite import conformance
from pop3suite.conformance.case import CaseInfo


@functools.cache
def case_functions() -> dict[str, str]:
    """case id (without parameter) -> test function name, for every case."""
    found: dict[str, str] = {}
    for module_info in pkgutil.walk_packages(conformance.__path__, conformance.__name__ + "."):
        if not module_info.name.rsplit(".", 1)[-1].startswith("test_"):
            continue
        with warnings.catch_warnings():
            # The pop3case marker is registered by the suite's conftest,
            # which is not loaded in this process: only the markers are read.
            warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
            module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if not name.startswith("test_"):
                continue
            for mark in getattr(value, "pytestmark", []):
                if mark.name == "pop3case" and isinstance(mark.args[0], CaseInfo):
                    found[mark.args[0].id] = name
    return found


def split_id(case_id: str) -> tuple[str, str]:
    """``rfc1939/4/quit[after-user]`` -> (``rfc1939/4/quit``, ``after-user``)."""
    base, _, param = case_id.partition("[")
    return base, param.rstrip("]")


def keyword_expression(case_ids: Iterable[str]) -> str:
    """A ``-k`` expression selecting exactly these cases (and their
    parameters, where the id names one).

    Raises:
        KeyError: a case id no conformance test carries.
    """
    functions = case_functions()
    terms = []
    for case_id in sorted(set(case_ids)):
        base, param = split_id(case_id)
        function = functions[base]
        terms.append(f"{function}[{param}]" if param else function)
    return " or ".join(terms)
