"""The conformance suite as a pytest plugin (entry point ``pytest11: pop3suite``).

Every run here is a real ``python -m pytest`` (or ``pop3suite check``) in
its own process, from a directory outside the checkout, with the plugin
loaded as an installed distribution's plugin is: it must leave other
projects' tests alone, run the suite from anywhere with ``--pop3-target``,
select cases by level marker, and put each case's id, level, section and
outcome into pytest's own JUnit XML with FAILED as ``<failure>`` and ERROR
as ``<error>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest

from pop3suite.conformance.plugin import OPTION_SPECS
from pop3suite.netutil import free_port
from tests.broken_server.cases import keyword_expression
from tests.broken_server.launch import broken_lab

pytestmark = pytest.mark.timeout(600)

#: Another project's tests: a pass, a failure, and two tests asking for
#: fixtures the suite's conftest has (``target``) or parametrises (``mode``).
OTHER_PROJECT = """
def test_passes():
    assert True

def test_fails():
    assert 1 == 2

def test_wants_target(target):
    pass

def test_wants_mode(mode):
    pass
"""


def pytest_run(cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def junit_cases(path: Path) -> dict[str, ElementTree.Element]:
    """The ``case_id`` property -> its ``<testcase>``."""
    found = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        properties = {p.get("name"): p.get("value") for p in case.iterfind("properties/property")}
        found[properties.get("case_id", case.get("name"))] = case
    return found


def properties_of(case: ElementTree.Element) -> dict[str, str | None]:
    return {p.get("name"): p.get("value") for p in case.iterfind("properties/property")}


def test_plugin_is_inert_in_another_projects_run(tmp_path: Path):
    """Loaded into every pytest session, the plugin adds nothing there: the
    normal outcomes and exit status, no suite fixtures, no ``mode``
    parametrisation, no pre-flight, no embedded server, no summary, and
    pytest's JUnit as pytest writes it.  ``--help`` lists the options."""
    (tmp_path / "test_other.py").write_text(OTHER_PROJECT)
    started = time.monotonic()
    result = pytest_run(tmp_path, "--strict-markers", "--junitxml", str(tmp_path / "junit.xml"), "-rA")
    took = time.monotonic() - started
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 failed, 1 passed, 2 errors" in result.stdout, result.stdout[-2000:]
    assert "fixture 'target' not found" in result.stdout and "fixture 'mode' not found" in result.stdout
    assert "pop3suite-" in result.stdout  # the header's plugin list: it was loaded ...
    assert "pop3suite conformance" not in result.stdout and "pre-flight" not in result.stdout + result.stderr
    assert took < 30, f"{took:.1f} s: something started"
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert (suite.get("failures"), suite.get("errors"), suite.get("tests")) == ("1", "2", "4")
    assert suite.find("testcase/properties") is None
    helped = pytest_run(tmp_path, "--help")
    assert helped.returncode == 0
    for name in OPTION_SPECS:
        assert f"--pop3-{name}" in helped.stdout, name


def test_level_markers_select_cases(tmp_path: Path):
    """``-m must`` runs MUST cases only (embedded server, ``--pyargs`` from an
    empty directory, strict markers); ``-m slow`` and ``-m "not slow"``
    split the collection."""
    report = tmp_path / "report"
    run = pytest_run(
        tmp_path, "--pyargs", "pop3suite.conformance", "-m", "must", "-k", "rfc1939 and s05",
        "--pop3-fast", "--strict-markers", "-q", "--pop3-report", str(report),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    document = json.loads((report / "results.json").read_text())
    assert len(document["cases"]) >= 10
    assert {case["level"] for case in document["cases"]} == {"MUST"}
    assert document["target"] == "reference"
    levels = {properties_of(case)["level"] for case in junit_cases(report / "junit.xml").values()}
    assert levels == {"MUST"}

    def collected(*args: str) -> int:
        listing = pytest_run(
            tmp_path, "--pyargs", "pop3suite.conformance", "--co", "-q", "--strict-markers", *args
        )
        assert listing.returncode == 0, listing.stdout[-2000:] + listing.stderr[-2000:]
        return sum(1 for line in listing.stdout.splitlines() if "::" in line)

    slow, not_slow, every = collected("-m", "slow"), collected("-m", "not slow"), collected()
    assert 0 < slow < every and slow + not_slow == every
    assert 0 < collected("-m", "should") < every


def _plugin_args(lab) -> list[str]:
    """``pop3suite check`` arguments of a broken lab as the plugin's options,
    without ``--cafile``: the TLS cases then cannot trust the server (ERROR)."""
    check = lab.check_args()
    args = ["--pop3-target", check[0]]
    values = iter(check[1:])
    for flag in values:
        if flag in ("--allow-destructive", "--fast"):
            args.append("--pop3-" + flag[2:])
            continue
        value = next(values)
        if flag != "--cafile":
            args += ["--pop3-" + flag[2:], value]
    return args


@pytest.mark.parametrize("collect", [(), ("--pyargs", "pop3suite.conformance")], ids=["no-path", "pyargs"])
def test_pop3_target_from_any_directory_and_junit_split(tmp_path: Path, collect: tuple[str, ...]):
    """``pytest --pop3-target URL`` from an empty directory (no path, or
    ``--pyargs pop3suite.conformance``) runs the installed suite against a
    served (broken) lab.  In pytest's JUnit XML
    every case has its properties; the fault makes ``quit[after-user]``
    FAILED, a ``<failure>``; the untrusted certificate makes the
    implicit-TLS greeting ERROR, an ``<error>`` (not a failure); the plain
    greeting is OK.  FAILED wins the exit status (1)."""
    cases = ["rfc1939/4/quit[after-user]", "rfc1939/3/greeting[plain]", "rfc1939/3/greeting[implicit]"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with broken_lab("quit-after-user-silent") as lab:
        args = [*collect, *_plugin_args(lab), "--pop3-no-preflight", "-k", keyword_expression(cases), "-q"]
        result = pytest_run(
            empty, *args, "--junitxml", str(tmp_path / "junit.xml"), "--pop3-report", str(tmp_path)
        )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert list(empty.iterdir()) == []
    found = junit_cases(tmp_path / "junit.xml")
    assert set(found) == set(cases), sorted(found)
    failed, plain, untrusted = (found[case] for case in cases)
    failed_properties = properties_of(failed)
    assert set(failed_properties) == {"case_id", "level", "rfc", "section", "ref", "outcome"}
    assert (
        failed_properties["case_id"] == "rfc1939/4/quit[after-user]" and failed_properties["level"] == "MUST"
    )
    assert failed_properties["rfc"] == "1939" and failed_properties["section"].startswith("4")
    assert failed_properties["ref"].startswith("rfc1939/") and failed_properties["outcome"] == "FAILED"
    assert failed.find("failure") is not None and failed.find("error") is None
    assert properties_of(untrusted)["outcome"] == "ERROR"
    assert untrusted.find("error") is not None and untrusted.find("failure") is None
    assert untrusted.find("error").get("message").startswith("suite could not judge")
    assert properties_of(plain)["outcome"] == "OK" and len(plain) == 1  # properties only
    suite = ElementTree.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert (suite.get("failures"), suite.get("errors"), suite.get("tests")) == ("1", "1", "3")
    document = json.loads((tmp_path / "results.json").read_text())
    assert {c["id"]: c["outcome"] for c in document["cases"]} == dict(
        zip(cases, ("FAILED", "OK", "ERROR"), strict=True)
    )


def test_check_loads_the_plugin_itself_and_ignores_the_cwd_config(tmp_path: Path):
    """``pop3suite check`` with plugin autoload off (it passes ``-p
    pop3suite``), and with it on (no second registration), from a directory
    whose pytest.ini would break any run that read it; ``--report`` gets
    pytest's junit.xml with the case properties."""
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option -p no:pop3suite\n")
    for autoload_off in (True, False):
        env = {k: v for k, v in os.environ.items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
        if autoload_off:
            env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        report = tmp_path / f"report-{autoload_off}"
        command = [
            sys.executable,
            "-m",
            "pop3suite",
            "check",
            "--fast",
            "-k",
            "greeting",
            "--report",
            str(report),
        ]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert "warning" not in result.stdout.lower(), result.stdout[-3000:]
        found = junit_cases(report / "junit.xml")
        assert found and all(properties_of(case)["outcome"] == "OK" for case in found.values())
        assert len(json.loads((report / "results.json").read_text())["cases"]) == len(found)


def test_suite_without_its_plugin_says_how_to_load_it(tmp_path: Path):
    """``-p no:pop3suite`` and then the suite by path: a usage error naming ``-p pop3suite``."""
    suite = Path(__file__).resolve().parents[2] / "pop3suite" / "conformance"
    result = pytest_run(tmp_path, "-p", "no:pop3suite", str(suite), "--co", "-q")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout[-2000:] + result.stderr[-2000:]
    assert "-p pop3suite" in result.stderr


@pytest.mark.parametrize("collect", [(), ("--pyargs", "pop3suite.conformance")], ids=["no-path", "pyargs"])
def test_pop3_target_preflight_stops_the_run(tmp_path: Path, collect: tuple[str, ...]):
    """A closed port: exit 2 with one ``pre-flight`` line, before any case
    (the suite's conftest is not an initial one under ``--pyargs``: the
    pre-flight is the plugin's), and no junit.xml written."""
    url = f"pop3://alice:x@127.0.0.1:{free_port()}"
    result = pytest_run(
        tmp_path, *collect, "--pop3-target", url, "--pop3-report", str(tmp_path / "out"), timeout=60
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "pre-flight" in result.stderr and "connection refused" in result.stderr
    assert not (tmp_path / "out" / "junit.xml").exists()
