"""The conformance suite's pytest plugin: options, the target, fixtures,
grading and reports.

Options (mirrored by ``pop3suite check``)::

    --target URL          pop3://USER:PASS@HOST:PORT or pop3s://...; none: the embedded server
    --pop3s URL           the implicit-TLS endpoint of the same server
    --smtp URL            smtp://HOST:PORT for seeding and POP-before-SMTP cases
    --apop-user U:P       an account with APOP on
    --second-user U:P     another account (lock and isolation cases)
    --cafile FILE | --insecure
    --idle-timeout S      the server's configured idle timeout (timeout cases use it)
    --profile rfc|provider
    --seed smtp|maildir:DIR|exec:COMMAND|none
    --domain DOMAIN       mail domain for SMTP seeding (example.test)
    --allow-destructive   allow DELE+QUIT of the suite's own scratch messages
    --report DIR          results.json, junit.xml, report.html
    --fast                skip slow cases (real 120 s / 600 s timers), small fixtures only
    --target-file FILE    a TOML file with the same keys
    --expectations FILE   known deviations of this target (TOML: case id = reason)
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pop3suite.client import ErrResponse, Pop3Client
from pop3suite.target import preflight
from pop3suite.target.model import Credentials, Target, TargetError, build, load_expectations, load_file
from pop3suite.target.seeding import Seeder

from . import report as report_module
from .case import (
    INFO,
    MAY,
    OBSERVATIONS,
    SHOULD,
    CaseFailure,
    CaseInfo,
    Outcome,
    is_suite_error,
    unimplemented,
)
from .mailbox import MailboxIndex, build_index

CLIENTS = pytest.StashKey[list[Pop3Client]]()
#: Per-operation client timeout.  Generous on purpose: Dovecot holds a second
#: login ~10 s waiting for the maildrop lock, and its auth penalty delays
#: repeated failed logins from one address by up to 15 s.
CLIENT_TIMEOUT = 40.0
RESULTS = pytest.StashKey["Results"]()
MODES = ("plain", "stls", "implicit")


# ------------------------------------------------------------------ options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pop3suite", "pop3suite conformance target")
    add = group.addoption
    add("--target", metavar="URL", help="pop3://USER:PASS@HOST:PORT (default: embedded reference server)")
    add("--pop3s", metavar="URL", help="implicit-TLS endpoint, pop3s://USER:PASS@HOST:PORT")
    add("--smtp", metavar="URL", help="smtp://HOST:PORT of the same server")
    add("--apop-user", metavar="USER:PASS", help="an account with APOP enabled")
    add("--second-user", metavar="USER:PASS", help="a second account")
    add("--cafile", metavar="FILE", help="CA certificate to verify the server against")
    add("--insecure", action="store_true", help="do not verify the server certificate")
    add("--idle-timeout", type=float, metavar="SECONDS", help="the server's idle timeout")
    add("--profile", choices=("rfc", "provider"), default=None, help="rfc (default) or provider")
    add("--seed", metavar="ROUTE", help="smtp (default), maildir:DIR, exec:COMMAND or none")
    add("--domain", metavar="DOMAIN", help="mail domain of the target user (example.test)")
    add("--allow-destructive", action="store_true", help="allow DELE+QUIT of scratch messages")
    add("--report", metavar="DIR", help="write results.json, junit.xml and report.html here")
    add("--fast", action="store_true", help="skip slow cases and the 1 MB / 10 MB fixtures")
    add("--target-file", metavar="FILE", help="TOML file describing the target")
    add("--expectations", metavar="FILE", help="TOML file of known deviations: 'case-id' = 'reason'")
    add("--source-address", metavar="ADDR", help="second loopback address for policy probes (127.0.0.2)")
    add("--name", metavar="NAME", help="the target's name in reports (default HOST:PORT)")
    add("--no-preflight", action="store_true", help="skip the target pre-flight (pop3suite check did it)")


def _options(config: pytest.Config) -> dict[str, Any]:
    """Command-line options over target-file values."""
    values: dict[str, Any] = {}
    if config.getoption("target_file"):
        values.update(load_file(config.getoption("target_file")))
    for key in (
        "target", "pop3s", "smtp", "apop_user", "second_user", "cafile", "idle_timeout",
        "profile", "seed", "domain", "expectations", "source_address", "name",
    ):  # fmt: skip
        value = config.getoption(key)
        if value is not None:
            values["url" if key == "target" else key] = value
    for flag in ("insecure", "allow_destructive", "fast"):
        if config.getoption(flag):
            values[flag] = True
    values.setdefault("profile", "rfc")
    return values


def _is_embedded(config: pytest.Config) -> bool:
    return "url" not in _options(config)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Pre-flight (pop3suite/preflight.py) before any case: ``--report`` is
    writable and an external target answers, is trusted and takes every
    login given.  A failure stops the run with one line and exit status 2,
    instead of a run of cases graded against a target the suite cannot use."""
    config = session.config
    if config.option.collectonly or config.option.help:
        return
    try:
        if config.getoption("report", None):
            preflight.writable_dir(config.getoption("report"), "--report")
        if config.getoption("no_preflight") or _is_embedded(config):
            return
        options = _options(config)
        preflight.check_pop_target(
            options["url"],
            pop3s=options.get("pop3s"),
            apop_user=options.get("apop_user"),
            second_user=options.get("second_user"),
            cafile=options.get("cafile"),
            insecure=bool(options.get("insecure")),
            server_hostname=options.get("server_hostname"),
        )
    except (preflight.PreflightError, TargetError) as error:
        pytest.exit(f"pre-flight: {error}", returncode=EXIT_USAGE)


# ------------------------------------------------------------------ results


@dataclass
class Results:
    target: str = ""
    profile: str = "rfc"
    records: list[dict[str, Any]] = field(default_factory=list)
    expectations: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pop3case(info): a conformance case (pop3suite.conformance.case.case)")
    results = Results()
    path = config.getoption("expectations", None)
    target_file = config.getoption("target_file", None)
    if target_file:  # read it now: a bad file is a usage error before anything runs
        try:
            path = path or load_file(target_file).get("expectations")
        except TargetError as error:
            raise pytest.UsageError(f"--target-file: {error}") from None
    if path is None and config.getoption("target", None) is None and not target_file:
        path = str(Path(__file__).parent / "expectations" / "reference.toml")  # the embedded server
    if path:
        try:
            results.expectations = load_expectations(path)
        except TargetError as error:
            raise pytest.UsageError(f"--expectations: {error}") from None
    config.stash[RESULTS] = results


def case_info(item: pytest.Item) -> CaseInfo | None:
    marker = item.get_closest_marker("pop3case")
    return marker.args[0] if marker else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    options = _options(config)
    profile, fast = options["profile"], options.get("fast", False)
    destructive_ok = options.get("allow_destructive", False) or _is_embedded(config)
    keep, drop = [], []
    for item in items:
        info = case_info(item)
        if info is None:
            keep.append(item)
            continue
        if (info.profile == "provider" and profile != "provider") or (info.slow and fast):
            drop.append(item)
            continue
        if info.destructive and not destructive_ok:
            item.add_marker(pytest.mark.skip(reason="UNIMPLEMENTED: removes mail; needs --allow-destructive"))
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking ``mode`` runs once per connection mode (STYLE.md:
    one body over plain, STLS and implicit TLS)."""
    explicit = any("mode" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize"))
    if "mode" in metafunc.fixturenames and not explicit:
        metafunc.parametrize("mode", MODES)


def _grade(info: CaseInfo, failed: bool, error: BaseException | None = None) -> Outcome:
    """The outcome by level; ERROR when the case stopped on something that
    is not the server's doing (:func:`pop3suite.conformance.case.is_suite_error`)."""
    if failed and error is not None and is_suite_error(error):
        return Outcome.ERROR
    if info.level in (MAY, INFO):
        return Outcome.INFORMATIONAL
    if not failed:
        return Outcome.OK
    return Outcome.NON_STRICT if info.level is SHOULD or info.hardening else Outcome.FAILED


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    info = case_info(item)
    if info is None:
        return report
    decisive = report.when == "call" or (report.when == "setup" and (report.skipped or report.failed))
    if not decisive:
        return report
    results = item.config.stash[RESULTS]
    param = item.callspec.id if hasattr(item, "callspec") else ""
    case_id = f"{info.id}[{param}]" if param else info.id
    record: dict[str, Any] = {
        "id": case_id,
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
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        record["outcome"] = Outcome.UNIMPLEMENTED.value
        record["actual"] = reason.removeprefix("Skipped: ").removeprefix("UNIMPLEMENTED: ")
    else:
        error = call.excinfo.value if report.failed and call.excinfo is not None else None
        outcome = _grade(info, report.failed, error)
        record["outcome"] = outcome.value
        if report.failed and call.excinfo is not None:
            error = call.excinfo.value
            if isinstance(error, CaseFailure):
                record["expected"], record["actual"] = error.expected, error.actual
                record["message"] = error.message
            else:
                record["actual"] = f"{type(error).__name__}: {error}"
        deviation = results.expectations.get(info.id) or results.expectations.get(case_id)
        if outcome is Outcome.FAILED and deviation:
            record["deviation"] = deviation
        shown = "KNOWN-DEVIATION" if record.get("deviation") else record["outcome"]
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
        report.user_properties.append(("pop3suite_outcome", shown))
    observed = item.stash.get(OBSERVATIONS, [])
    if observed and not record["actual"]:
        record["actual"] = "; ".join(observed)
    clients = item.stash.get(CLIENTS, [])
    record["transcript"] = "\n".join(c.transcript.render() for c in clients)[-8000:]
    results.records.append(record)
    return report


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    for key, value in report.user_properties:
        if key == "pop3suite_outcome" and report.when in ("setup", "call"):
            short = {
                "OK": ".",
                "NON-STRICT": "N",
                "FAILED": "F",
                "INFORMATIONAL": "i",
                "KNOWN-DEVIATION": "D",
                "ERROR": "E",
            }
            short = short.get(value, "?")
            return value.lower(), short, value
    return None


#: Exit statuses of ``pytest pop3suite/conformance`` and ``pop3suite check`` (docs/conformance.md).
EXIT_CONFORMANT, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3


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
    """The run's exit status from the graded records, not from pytest's
    pass/fail (an ERROR case is a failed pytest test but not a FAILED case)."""
    records = session.config.stash[RESULTS].records
    if records and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        session.exitstatus = run_status(records)


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
    report_dir = config.getoption("report", None)
    if report_dir:
        paths = report_module.write_reports(Path(report_dir), results)
        write(f"reports: {', '.join(str(p) for p in paths)}")


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The server under test (the embedded reference server by default)."""
    config = request.config
    options = _options(config)
    results = config.stash[RESULTS]
    if "url" not in options:
        from pop3suite.lab.embedded import start_embedded

        embedded = start_embedded(options["profile"], options.get("fast", False), options.get("idle_timeout"))
        results.target, results.profile = embedded.target.name, options["profile"]
        chosen = embedded.target
        if options.get("source_address"):  # a second loopback address for the POP-before-SMTP cases
            chosen = dataclasses.replace(chosen, source_address=options["source_address"])
        yield chosen
        embedded.stop()
        return
    options.pop("expectations", None)
    url = options.pop("url")
    try:
        built = build(url, **options)
    except (TargetError, TypeError) as error:
        raise pytest.UsageError(f"target: {error}") from None
    results.target, results.profile = built.name, built.profile
    yield built


@pytest.fixture(scope="session")
def capabilities(target: Target) -> dict[str, str]:
    """CAPA before login on the plain port (or 995): tag -> arguments.
    Empty if CAPA is not implemented."""
    mode = "plain" if target.pop3 else "implicit"
    with target.client(mode) as pop:
        response = pop.command("CAPA", check=False)
        if not response.ok:
            pop.quit()
            return {}
        body, _ = pop.read_body()
        pop.quit()
    caps = {}
    for line in body.decode("utf-8", "replace").split("\r\n"):
        if line:
            tag, _, args = line.partition(" ")
            caps[tag.upper()] = args
    return caps


@pytest.fixture(scope="session")
def seeder(target: Target) -> Seeder:
    return Seeder(target)


@pytest.fixture(scope="session")
def mailbox(target: Target, seeder: Seeder, capabilities: dict[str, str]) -> MailboxIndex:
    """The fixture messages in the target user's maildrop (seeded once)."""
    return build_index(target, seeder, set(capabilities))


# RFC 1939's optional commands, older than CAPA: a server without CAPA can
# only be asked by trying them.
PROBED_WITHOUT_CAPA = ("TOP", "UIDL")


@pytest.fixture(scope="session")
def probed_commands(
    request: pytest.FixtureRequest, target: Target, capabilities: dict[str, str]
) -> frozenset[str]:
    """For a server without CAPA (such as popa3d): which of TOP and UIDL work,
    found by trying them on the seeded maildrop.  Empty when CAPA exists,
    since then the suite goes by what CAPA advertises."""
    if capabilities:
        return frozenset()
    request.getfixturevalue("mailbox")  # TOP needs a message to try it on
    found = set()
    with target.client("plain" if target.pop3 else "implicit") as pop:
        pop.login(target.user.user, target.user.password)
        if pop.command("UIDL", check=False).ok:
            pop.read_body()
            found.add("UIDL")
        if pop.stat()[0] and pop.command("TOP 1 0", check=False).ok:
            pop.read_body()
            found.add("TOP")
        pop.quit()
    return frozenset(found)


@pytest.fixture
def need(request: pytest.FixtureRequest, capabilities: dict[str, str]) -> Callable[[str], str]:
    """``need("TOP")``: the capability's arguments, or UNIMPLEMENTED.  Without
    CAPA at all, TOP and UIDL count if they work (:func:`probed_commands`)."""

    def require(tag: str) -> str:
        if tag in capabilities:
            return capabilities[tag]
        if not capabilities and tag in PROBED_WITHOUT_CAPA:
            if tag in request.getfixturevalue("probed_commands"):
                return ""
            unimplemented(f"CAPA is not implemented and {tag} does not work")
        unimplemented(f"{tag} is not advertised in CAPA")

    return require


@pytest.fixture
def pop(
    request: pytest.FixtureRequest, target: Target, capabilities: dict[str, str]
) -> Iterator[Callable[..., Pop3Client]]:
    """``pop(mode="plain", login=True, user=None)``: a connected client.

    Every client is recorded so a failing case shows the wire transcript.
    A mode the target does not offer makes the case UNIMPLEMENTED.
    """
    clients: list[Pop3Client] = []
    request.node.stash[CLIENTS] = clients

    def connect(
        mode: str | None = None,
        login: bool = True,
        user: Credentials | None = None,
        timeout: float = CLIENT_TIMEOUT,
        source: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Pop3Client:
        mode = mode or home_mode(target, capabilities)
        if mode == "implicit" and target.pop3s is None:
            unimplemented("no implicit-TLS endpoint (give --pop3s URL)")
        if mode in ("plain", "stls") and target.pop3 is None:
            unimplemented("no plain POP3 endpoint")
        if mode == "stls" and "STLS" not in capabilities:
            unimplemented("STLS is not advertised in CAPA")
        client = target.client(mode, timeout=timeout, source=source, ssl_context=ssl_context)
        clients.append(client)
        client.connect()
        if login:
            credentials = user or target.user
            login_with_delay(client, credentials, capabilities)
        return client

    yield connect
    for client in clients:
        close_and_wait(client)


#: How long a case's teardown waits for the server to drop a session it left open.
TEARDOWN_CLOSE_WAIT = 3.0


def close_and_wait(client: Pop3Client, timeout: float = TEARDOWN_CLOSE_WAIT) -> None:
    """End a session the case left open without QUIT (no UPDATE state), and
    wait up to ``timeout`` s for the server to close its end too.

    Exists because the next case logs in at once: a server that aborts the
    session only after reading our EOF (GNU Mailutils releases the maildrop
    lock, then closes) would otherwise still hold the lock and answer the
    next case's PASS with ``[IN-USE]``.
    """
    sock = client.sock
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while sock.recv(65536) and time.monotonic() < deadline:
            pass
    except (OSError, ValueError):
        pass  # reset, timeout or a TLS error: the session is over for us either way
    finally:
        client.close()


@pytest.fixture
def fixture_number(mailbox: MailboxIndex) -> Callable[[Pop3Client, str], int]:
    """``fixture_number(pop, "dot-lines")``: its message number in this
    session, or UNIMPLEMENTED when the fixture is not in the maildrop."""

    def locate(client: Pop3Client, name: str) -> int:
        if name not in mailbox.fixtures:
            unimplemented(f"fixture {name!r} is not part of this run")
        number = mailbox.locate(client, name)
        if number is None:
            unimplemented(f"fixture {name!r} is not in the maildrop (seed it with --seed)")
        return number

    return locate


@pytest.fixture
def scratch(seeder: Seeder, target: Target) -> Callable[[int], list[str]]:
    """``scratch(n)``: deliver n throw-away messages; their nonces."""

    def deliver(count: int = 1) -> list[str]:
        if not seeder.can_deliver:
            unimplemented("no delivery route for scratch messages (--seed smtp with --smtp, maildir:, exec:)")
        return seeder.deliver_scratch(count)

    return deliver


def home_mode(target: Target, capabilities: dict[str, str]) -> str:
    """The mode to log in with when a case does not care: plain if the
    server allows cleartext USER before TLS, else STLS, else implicit TLS
    (Dovecot refuses cleartext logins by default except from localhost)."""
    if target.pop3 is None:
        return "implicit"
    if "USER" in capabilities or not capabilities or "STLS" not in capabilities:
        return "plain"
    return "stls"


#: Longest LOGIN-DELAY the suite waits out; above it, use an account without one.
MAX_LOGIN_DELAY_WAIT = 15
#: How long a login retries ``[IN-USE]`` left by the previous case's session.
IN_USE_WAIT = 10


def login_with_delay(client: Pop3Client, credentials: Credentials, capabilities: dict[str, str]) -> None:
    """USER/PASS, waiting out a short advertised LOGIN-DELAY (RFC 2449 §6.5)
    once, so a server with LOGIN-DELAY can still be tested.

    ``[IN-USE]`` is retried for up to IN_USE_WAIT s: the previous case's
    clients are closed without QUIT at teardown, and a server that refuses
    a locked maildrop at once (GNU Mailutils) may still be tearing that
    session down when the next case logs in (RFC 1939 §6 sets no timing).
    Cases about ``[IN-USE]`` itself log in with ``login=False``."""
    deadline = time.monotonic() + IN_USE_WAIT
    while True:
        try:
            client.login(credentials.user, credentials.password)
            return
        except ErrResponse as error:
            if error.response.code != ("IN-USE",) or time.monotonic() > deadline:
                _login_delay(client, credentials, capabilities, error)
                return
        time.sleep(0.25)
        client.close()
        client.connect()


def _login_delay(
    client: Pop3Client, credentials: Credentials, capabilities: dict[str, str], error: ErrResponse
) -> None:
    """Wait out a short LOGIN-DELAY once and log in again, else re-raise ``error``."""
    delay = capabilities.get("LOGIN-DELAY", "").split()
    if error.response.code != ("LOGIN-DELAY",) or not delay or not delay[0].isdigit():
        raise error
    if int(delay[0]) > MAX_LOGIN_DELAY_WAIT:
        unimplemented(f"LOGIN-DELAY {delay[0]} s: give an account without a login delay")
    time.sleep(int(delay[0]) + 0.5)
    client.close()
    client.connect()
    client.login(credentials.user, credentials.password)


def login_error(client: Pop3Client, user: str, password: str) -> Any:
    """USER/PASS expecting failure: the -ERR response (from USER or PASS)."""
    try:
        client.user(user)
    except ErrResponse as error:
        return error.response
    return client.pass_(password, check=False)
