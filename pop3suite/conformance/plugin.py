"""The conformance suite's pytest plugin (entry point ``pytest11: pop3suite``).

Installed with pop3suite, it is loaded into every pytest session on the
machine, so it is inert unless asked: its options all start ``--pop3-``
(no clash with other plugins), and every hook acts only on items marked as
conformance cases, only after a ``--pop3-`` option was given, or only when
such cases ran.  The fixtures (``target``, ``pop``, ``mailbox`` ...) and the
markers live in the suite's own ``conftest.py``, which pytest loads only
when it collects the suite.

Ways in::

    pytest --pop3-target pop3://USER:PASS@HOST:PORT [--pop3-fast ...]   # from any directory
    pytest --pyargs pop3suite.conformance [-m must]                     # the embedded server
    pytest pop3suite/conformance [--pop3-...]                           # from a checkout
    pop3suite check [URL] [--fast ...]                                  # the CLI (runs this plugin)

Options: ``--pop3-target URL`` (none: the embedded reference server),
``--pop3-pop3s URL``, ``--pop3-smtp URL``, ``--pop3-apop-user U:P``,
``--pop3-second-user U:P``, ``--pop3-cafile FILE`` / ``--pop3-insecure``,
``--pop3-idle-timeout S``, ``--pop3-profile rfc|provider``, ``--pop3-seed``,
``--pop3-domain``, ``--pop3-allow-destructive``, ``--pop3-report DIR``,
``--pop3-fast``, ``--pop3-target-file FILE``, ``--pop3-expectations FILE``,
``--pop3-source-address``, ``--pop3-name``, ``--pop3-storage maildir|mbox``,
``--pop3-no-preflight`` (docs/conformance.md).

Grading: each case's pytest result is graded by its level
(:mod:`pop3suite.conformance.case`).  JUnit is pytest's own ``--junitxml``
(``--pop3-report DIR`` sets it to ``DIR/junit.xml`` unless given): every case
carries ``case_id``, ``level``, ``rfc``, ``section``, ``ref`` and ``outcome``
as properties, FAILED is a ``<failure>``, ERROR an ``<error>``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from pop3suite.client import Pop3Client
from pop3suite.target import preflight
from pop3suite.target.model import TargetError, load_expectations, load_file

from . import report as report_module
from .case import INFO, MAY, OBSERVATIONS, SHOULD, CaseFailure, CaseInfo, Outcome, is_suite_error

#: The plugin's name (its pytest11 entry point): ``-p pop3suite`` loads it, ``-p no:pop3suite`` keeps it out.
PLUGIN_NAME = "pop3suite"
#: The suite's package directory (collected when only ``--pop3-target`` is given).
SUITE_DIR = Path(__file__).resolve().parent
SUITE_MODULE = "pop3suite.conformance"
#: Where the embedded server's known deviations are recorded.
REFERENCE_EXPECTATIONS = SUITE_DIR / "expectations" / "reference.toml"

#: Exit statuses of a conformance run (docs/conformance.md).
EXIT_CONFORMANT, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3

CLIENTS = pytest.StashKey[list[Pop3Client]]()
RESULTS = pytest.StashKey["Results"]()
OPTIONS = pytest.StashKey[dict[str, Any]]()

#: ``--pop3-NAME`` options: NAME -> argparse keywords.  The dest is ``pop3_NAME`` (``-`` as ``_``).
_URL, _USER, _FILE, _FLAG = (
    {"metavar": "URL"},
    {"metavar": "USER:PASS"},
    {"metavar": "FILE"},
    {"action": "store_true"},
)
OPTION_SPECS: dict[str, dict[str, Any]] = {
    "target": {**_URL, "help": "pop3://USER:PASS@HOST:PORT or pop3s://...: run the suite against it"},
    "pop3s": {**_URL, "help": "the implicit-TLS endpoint of the same server, pop3s://USER:PASS@HOST:PORT"},
    "smtp": {**_URL, "help": "smtp://HOST:PORT of the same server (seeding, POP-before-SMTP)"},
    "apop-user": {**_USER, "help": "an account with APOP enabled"},
    "second-user": {**_USER, "help": "a second account (lock and isolation cases)"},
    "cafile": {**_FILE, "help": "CA certificate to verify the server against"},
    "insecure": {**_FLAG, "help": "do not verify the server certificate"},
    "idle-timeout": {"type": float, "metavar": "SECONDS", "help": "the server's configured idle timeout"},
    "profile": {"choices": ("rfc", "provider"), "help": "judge by the RFCs (default) or add provider rules"},
    "seed": {"metavar": "ROUTE", "help": "how fixtures get in: smtp (default), maildir:DIR, exec:CMD, none"},
    "domain": {"metavar": "DOMAIN", "help": "mail domain of the target user (example.test)"},
    "allow-destructive": {**_FLAG, "help": "allow DELE+QUIT of the suite's scratch messages"},
    "report": {"metavar": "DIR", "help": "write results.json, report.html and (pytest's) junit.xml here"},
    "fast": {**_FLAG, "help": "skip slow cases (real 120 s / 600 s timers) and big fixtures"},
    "target-file": {**_FILE, "help": "TOML file describing the target (keys as these options)"},
    "expectations": {**_FILE, "help": "known deviations of the target (TOML: 'case-id' = 'reason')"},
    "source-address": {"metavar": "ADDR", "help": "second local address for policy probes (127.0.0.2)"},
    "name": {"metavar": "NAME", "help": "the target's name in reports (default HOST:PORT)"},
    "storage": {"choices": ("maildir", "mbox"), "help": "mailbox format of the embedded server"},
    "no-preflight": {**_FLAG, "help": "skip the target pre-flight (pop3suite check did it)"},
}
#: Options that describe the target (``--pop3-target`` is ``url``), as a target file spells them.
TARGET_KEYS = (
    "pop3s", "smtp", "apop_user", "second_user", "cafile", "idle_timeout", "profile", "seed",
    "domain", "expectations", "source_address", "name",
)  # fmt: skip
TARGET_FLAGS = ("insecure", "allow_destructive", "fast")


def option(config: pytest.Config, name: str) -> Any:
    """The value of ``--pop3-NAME`` (``name`` with ``_``)."""
    return config.getoption("pop3_" + name)


# ------------------------------------------------------------------ options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pop3suite", "pop3suite conformance suite (pytest --pop3-target URL runs it)")
    for name, keywords in OPTION_SPECS.items():
        group.addoption("--pop3-" + name, dest="pop3_" + name.replace("-", "_"), **keywords)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """``pytest --pop3-target URL`` with no path collects the installed suite.

    The path is added before pytest loads the initial conftests, so the
    suite's ``conftest.py`` loads as one of them, wherever the package is
    installed and whatever the working directory holds."""
    namespace = early_config.known_args_namespace
    wanted = getattr(namespace, "pop3_target", None) or getattr(namespace, "pop3_target_file", None)
    if not wanted or namespace.file_or_dir:
        return
    suite = SUITE_MODULE if namespace.pyargs else str(SUITE_DIR)
    args.append(suite)
    namespace.file_or_dir = [suite]


def suite_options(config: pytest.Config) -> dict[str, Any]:
    """The target's options: ``--pop3-target-file`` values under the
    command line's (``url`` for the target URL; no key: not given)."""
    cached = config.stash.get(OPTIONS, None)
    if cached is not None:
        return dict(cached)
    values: dict[str, Any] = {}
    target_file = option(config, "target_file")
    if target_file:
        try:
            values.update(load_file(target_file))
        except TargetError as error:
            raise pytest.UsageError(f"--pop3-target-file: {error}") from None
    if option(config, "target") is not None:
        values["url"] = option(config, "target")
    for key in TARGET_KEYS:
        if option(config, key) is not None:
            values[key] = option(config, key)
    for flag in TARGET_FLAGS:
        if option(config, flag):
            values[flag] = True
    values.setdefault("profile", "rfc")
    config.stash[OPTIONS] = values
    return dict(values)


def is_embedded(config: pytest.Config) -> bool:
    """No target given: the cases run against the embedded reference server."""
    return "url" not in suite_options(config)


# ------------------------------------------------------------------ results


@dataclass
class Results:
    target: str = ""
    profile: str = "rfc"
    records: list[dict[str, Any]] = field(default_factory=list)
    expectations: dict[str, str] | None = None
    started: float = field(default_factory=time.time)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Input errors before anything runs; ``--pop3-report DIR`` points
    pytest's own JUnit writer at ``DIR/junit.xml`` (tryfirst: before the
    junitxml plugin reads the path)."""
    config.stash[RESULTS] = Results()
    if option(config, "target_file") or option(config, "expectations"):
        expectations(config)  # a bad file is a usage error now, not after the run
    if option(config, "storage") and not is_embedded(config):
        raise pytest.UsageError("--pop3-storage is for the embedded server (no --pop3-target)")
    report_dir = option(config, "report")
    if report_dir and not config.option.xmlpath:
        config.option.xmlpath = str(Path(report_dir) / "junit.xml")


def expectations(config: pytest.Config) -> dict[str, str]:
    """Known deviations: ``--pop3-expectations``, else the target file's,
    else (embedded server) the reference server's own."""
    results = config.stash[RESULTS]
    if results.expectations is None:
        options = suite_options(config)
        path = options.get("expectations")
        if path is None and is_embedded(config):
            path = str(REFERENCE_EXPECTATIONS)
        try:
            results.expectations = load_expectations(path) if path else {}
        except TargetError as error:
            raise pytest.UsageError(f"--pop3-expectations: {error}") from None
    return results.expectations


def pytest_sessionstart(session: pytest.Session) -> None:
    """Pre-flight (pop3suite/target/preflight.py) before any case, only when a
    ``--pop3-`` option asked for it: ``--pop3-report`` is writable and an
    external target answers, is trusted and takes every login given.  A
    failure stops the run with one line and exit status 2, instead of a run
    of cases graded against a target the suite cannot use."""
    config = session.config
    if config.option.collectonly or config.option.help:
        return
    try:
        if option(config, "report"):
            preflight.writable_dir(option(config, "report"), "--pop3-report")
        if option(config, "no_preflight") or is_embedded(config):
            return
        options = suite_options(config)
        preflight.check_target_values(
            options, url_flag="--pop3-target" if option(config, "target") else "--pop3-target-file: url"
        )
    except (preflight.PreflightError, TargetError) as error:
        pytest.exit(f"pre-flight: {error}", returncode=EXIT_USAGE)


def case_info(item: pytest.Item) -> CaseInfo | None:
    """The case an item checks; None for any other test (left alone)."""
    marker = item.get_closest_marker("pop3case")
    return marker.args[0] if marker else None


DESTRUCTIVE_SKIP = "removes mail; needs --allow-destructive (pytest: --pop3-allow-destructive)"


def case_markers(info: CaseInfo) -> list[str]:
    """The markers a case carries for ``-m``: its level (``must``, ``should``,
    ``may``, ``provider``, ``info``), and ``slow``, ``destructive``,
    ``hardening`` where they apply (registered by the suite's conftest)."""
    names = [info.level.value.lower()]
    names += [name for name in ("slow", "destructive", "hardening") if getattr(info, name)]
    return names


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Cases only: the level markers (tryfirst, so ``-m`` sees them), the
    profile and ``--pop3-fast`` selection, and destructive cases skipped
    unless allowed."""
    keep, drop = [], []
    for item in items:
        info = case_info(item)
        if info is None:
            keep.append(item)
            continue
        options = suite_options(config)
        other_profile = info.profile == "provider" and options["profile"] != "provider"
        if other_profile or (info.slow and options.get("fast")):
            drop.append(item)
            continue
        for name in case_markers(info):
            item.add_marker(name)
        if info.destructive and not (options.get("allow_destructive") or is_embedded(config)):
            item.add_marker(pytest.mark.skip(reason=f"UNIMPLEMENTED: {DESTRUCTIVE_SKIP}"))
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# ------------------------------------------------------------------ grading


def grade(info: CaseInfo, failed: bool, error: BaseException | None = None) -> Outcome:
    """The outcome by level; ERROR when the case stopped on something that
    is not the server's doing (:func:`pop3suite.conformance.case.is_suite_error`)."""
    if failed and error is not None and is_suite_error(error):
        return Outcome.ERROR
    if info.level in (MAY, INFO):
        return Outcome.INFORMATIONAL
    if not failed:
        return Outcome.OK
    return Outcome.NON_STRICT if info.level is SHOULD or info.hardening else Outcome.FAILED


#: ``outcome`` property -> terminal letter (KNOWN-DEVIATION: a FAILED case the expectations list).
SHORT = {
    "OK": ".",
    "NON-STRICT": "N",
    "FAILED": "F",
    "INFORMATIONAL": "i",
    "KNOWN-DEVIATION": "D",
    "ERROR": "E",
}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    info = case_info(item)
    if info is None:
        return report
    decisive = report.when == "call" or (report.when == "setup" and (report.skipped or report.failed))
    if not decisive:
        return report
    record = _record(item, info, report)
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        record["outcome"] = shown = Outcome.UNIMPLEMENTED.value
        record["actual"] = reason.removeprefix("Skipped: ").removeprefix("UNIMPLEMENTED: ")
    else:
        shown = _grade_report(item, info, report, call, record)
    properties = [("case_id", record["id"]), ("level", info.level.value), ("rfc", info.rfc)]
    properties += [("section", info.section), ("ref", info.ref), ("outcome", shown)]
    if record.get("deviation"):
        properties.append(("known_deviation", record["deviation"]))
    item.user_properties.extend(properties)  # the teardown report carries them to --junitxml
    report.user_properties.extend(properties)  # this one to pytest_report_teststatus
    observed = item.stash.get(OBSERVATIONS, [])
    if observed and not record["actual"]:
        record["actual"] = "; ".join(observed)
    clients = item.stash.get(CLIENTS, [])
    record["transcript"] = "\n".join(c.transcript_text() for c in clients)[-8000:]
    item.config.stash[RESULTS].records.append(record)
    return report


def _record(item: pytest.Item, info: CaseInfo, report: pytest.TestReport) -> dict[str, Any]:
    param = item.callspec.id if hasattr(item, "callspec") else ""
    return {
        "id": f"{info.id}[{param}]" if param else info.id,
        "level": info.level.value,
        "rfc": info.rfc,
        "section": info.section,
        "description": info.sentence,
        "ref": info.ref,
        "kind": "hardening" if info.hardening else "rfc",
        "probes": list(info.probes),
        "expected": "",
        "actual": "",
        "transcript": "",
        "duration_s": round(report.duration, 3),
        "nodeid": item.nodeid,
    }


def _grade_report(
    item: pytest.Item, info: CaseInfo, report: pytest.TestReport, call: pytest.CallInfo[None], record: dict
) -> str:
    """Grade a run case into ``record``; a graded failure that does not
    fail the run (NON-STRICT, INFORMATIONAL, a known deviation) passes in
    pytest's terms.  Returns the outcome as shown (``KNOWN-DEVIATION`` too)."""
    error = call.excinfo.value if report.failed and call.excinfo is not None else None
    outcome = grade(info, report.failed, error)
    record["outcome"] = outcome.value
    if error is not None:
        if isinstance(error, CaseFailure):
            record["expected"], record["actual"] = error.expected, error.actual
            record["message"] = error.message
        else:
            record["actual"] = f"{type(error).__name__}: {error}"
    known = expectations(item.config)
    deviation = known.get(info.id) or known.get(record["id"])
    if outcome is Outcome.FAILED and deviation:
        record["deviation"] = deviation
    shown = "KNOWN-DEVIATION" if record.get("deviation") else outcome.value
    if outcome is Outcome.ERROR:
        record["message"] = "the suite could not judge this case (not the server's failure)"
    if report.failed and outcome is not Outcome.ERROR and (outcome is not Outcome.FAILED or deviation):
        # Graded: does not fail the run.  A failed *setup* must not turn
        # into "passed", or pytest would go on to call the case without
        # its fixtures (and record a second, bogus KeyError outcome).
        if report.when == "setup":
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0, f"{shown}: {record['actual']}")
        else:
            report.outcome = "passed"
    return shown


def case_outcome(properties: list[tuple[str, object]]) -> str | None:
    """The ``outcome`` property of a case's report; None for other tests."""
    values = dict(properties)
    return str(values["outcome"]) if "case_id" in values and "outcome" in values else None


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    shown = case_outcome(report.user_properties)
    if shown in SHORT and report.when in ("setup", "call"):
        return shown.lower(), SHORT[shown], shown
    return None


def run_status(records: list[dict[str, Any]]) -> int:
    """0 conformant, 1 some case FAILED (not a known deviation), 3 the run
    finished but some case could not be judged (ERROR); FAILED wins."""
    if any(r["outcome"] == Outcome.FAILED.value and not r.get("deviation") for r in records):
        return EXIT_FAILED
    if any(r["outcome"] == Outcome.ERROR.value for r in records):
        return EXIT_ERROR
    return EXIT_CONFORMANT


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After a run with cases: the exit status from the graded records, not
    from pytest's pass/fail (an ERROR case is a failed pytest test but not a
    FAILED case); JUnit's failure/error split by outcome; the reports.

    trylast: pytest's junitxml has written its file by now."""
    config = session.config
    results = config.stash[RESULTS]
    if not results.records:
        return
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        session.exitstatus = run_status(results.records)
    xmlpath = config.option.xmlpath
    if xmlpath and Path(xmlpath).is_file() and not hasattr(config, "workerinput"):
        split_failures_and_errors(Path(xmlpath))
    if option(config, "report"):
        report_module.write_reports(Path(option(config, "report")), results)


def split_failures_and_errors(path: Path) -> None:
    """pytest's junitxml files a failed call as ``<failure>`` and a failed
    setup as ``<error>``; for a conformance case the outcome decides: FAILED
    is a ``<failure>`` (the server's), ERROR an ``<error>`` (the suite could
    not judge), whatever the phase.  The suite counts follow; other tests'
    elements are left as pytest wrote them."""
    tree = ElementTree.parse(path)
    wanted = {"FAILED": "failure", "ERROR": "error"}
    for suite in tree.iter("testsuite"):
        for case in suite.iter("testcase"):
            found = case.iterfind("properties/property")
            tag = wanted.get(case_outcome([(p.get("name"), p.get("value")) for p in found]) or "")
            if tag is None:
                continue
            for element in case:
                if element.tag in ("failure", "error") and element.tag != tag:
                    element.tag = tag
                    if tag == "error":
                        element.set("message", "suite could not judge: " + (element.get("message") or ""))
        suite.set("failures", str(len(suite.findall("testcase/failure"))))
        suite.set("errors", str(len(suite.findall("testcase/error"))))
    tree.write(path, encoding="utf-8", xml_declaration=True)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    results = config.stash[RESULTS]
    if not results.records:
        return
    write = terminalreporter.write_line
    terminalreporter.section("pop3suite conformance")
    write(f"target: {results.target}   profile: {results.profile}")
    counts: dict[str, int] = {}
    for record in results.records:
        counts[record["outcome"]] = counts.get(record["outcome"], 0) + 1
    graded = [o for o in Outcome if o is not Outcome.ERROR]
    write("server:   " + "   ".join(f"{o.value}: {counts.get(o.value, 0)}" for o in graded))
    write(f"suite:    ERROR: {counts.get(Outcome.ERROR.value, 0)}   (cases the suite could not judge; "
          "not the server's failure)")  # fmt: skip
    for record in results.records:
        if record["outcome"] in ("FAILED", "NON-STRICT"):
            note = f"  (known deviation: {record['deviation']})" if record.get("deviation") else ""
            if record.get("kind") == "hardening":
                note += "  (hardening gap, not an RFC violation)"
            where = f"[{record['level']}] RFC {record['rfc']} §{record['section']}"
            write(f"{record['outcome']:<11} {record['id']}  {where}{note}")
            if record.get("expected"):
                write(f"            Expected: {record['expected'][:300]}")
            write(f"            Actual:   {record['actual'][:300]}")
    errors = [r for r in results.records if r["outcome"] == Outcome.ERROR.value]
    if errors:
        write("could not judge (ERROR: a suite bug, our TLS trust setting, or the target unreachable):")
        for record in errors:
            write(f"ERROR       {record['id']}  {record['actual'][:300]}")
    report_dir = option(config, "report")
    if report_dir:
        paths = [Path(report_dir) / name for name in report_module.REPORT_FILES]
        if config.option.xmlpath:
            paths.append(Path(config.option.xmlpath))
        write(f"reports: {', '.join(str(p) for p in paths)}")
