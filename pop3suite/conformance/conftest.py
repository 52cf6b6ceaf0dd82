"""The conformance suite's fixtures, markers and connection modes.

pytest loads this file only when it collects the suite, so nothing here
touches other projects' tests.  The options, grading and reports are the
plugin's (:mod:`pop3suite.conformance.plugin`, entry point ``pytest11:
pop3suite``); this file gives the cases their ``target`` (the embedded
reference server unless ``--pop3-target`` names one), ``capabilities``,
``mailbox``, ``pop`` and friends.
"""

from __future__ import annotations

import dataclasses
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pop3suite.client import ErrResponse, Pop3Client
from pop3suite.target.model import Credentials, Target, TargetError, build
from pop3suite.target.seeding import Seeder

from .case import unimplemented
from .mailbox import MailboxIndex, build_index
from .plugin import CLIENTS, PLUGIN_NAME, RESULTS, option, suite_options

#: Per-operation client timeout.  Generous on purpose: Dovecot holds a second
#: login ~10 s waiting for the maildrop lock, and its auth penalty delays
#: repeated failed logins from one address by up to 15 s.
CLIENT_TIMEOUT = 40.0
MODES = ("plain", "stls", "implicit")
#: The markers the plugin puts on cases (``-m must``, ``-m "not slow"``).
MARKERS = (
    "pop3case(info): a conformance case (pop3suite.conformance.case.case)",
    "must: a conformance case of level MUST",
    "should: a conformance case of level SHOULD",
    "may: a conformance case of level MAY",
    "provider: a conformance case of the provider's rules (--pop3-profile provider)",
    "info: a conformance case that records behaviour (level INFO)",
    "slow: a conformance case with real timers of minutes (left out by --pop3-fast)",
    "destructive: a conformance case that deletes its scratch messages",
    "hardening: a security-hardening probe no RFC requires (never FAILED)",
    # Slow cases carry it; pytest-timeout (when installed) enforces it, and
    # registers it too: the duplicate line is harmless.
    "timeout(seconds): the case's time limit (enforced by pytest-timeout when installed)",
)


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        raise pytest.UsageError(
            "the conformance suite needs its pytest plugin, which is disabled here "
            "(PYTEST_DISABLE_PLUGIN_AUTOLOAD or -p no:pop3suite): add -p pop3suite"
        )
    for line in MARKERS:
        config.addinivalue_line("markers", line)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking ``mode`` runs once per connection mode (STYLE.md:
    one body over plain, STLS and implicit TLS)."""
    explicit = any("mode" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize"))
    if "mode" in metafunc.fixturenames and not explicit:
        metafunc.parametrize("mode", MODES)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """The server under test (the embedded reference server by default)."""
    config = request.config
    options = suite_options(config)
    results = config.stash[RESULTS]
    if "url" not in options:
        from pop3suite.lab.embedded import start_embedded

        embedded = start_embedded(
            options["profile"],
            options.get("fast", False),
            options.get("idle_timeout"),
            option(config, "storage"),
        )
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
        try:
            tags = pop.capabilities()
        except ErrResponse:  # -ERR: no CAPA (RFC 2449 is optional)
            tags = {}
        pop.quit()
    return {tag: " ".join(arguments) for tag, arguments in tags.items()}


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
        if pop.multiline("UIDL", check=False).response.ok:
            found.add("UIDL")
        if pop.stat()[0] and pop.multiline("TOP 1 0", check=False).response.ok:
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
            unimplemented("no implicit-TLS endpoint (give --pop3s URL; pytest: --pop3-pop3s)")
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
        # Sessions left open end without QUIT (no UPDATE state), and the
        # server gets a moment to close its end: the next case logs in at
        # once, and a server that aborts a session only after reading our
        # EOF (GNU Mailutils releases the maildrop lock, then closes) would
        # otherwise answer its PASS with [IN-USE].
        client.hang_up(TEARDOWN_CLOSE_WAIT)


#: How long a case's teardown waits for the server to drop a session it left open.
TEARDOWN_CLOSE_WAIT = 3.0


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
            unimplemented(
                "no delivery route for scratch messages "
                "(--seed smtp with --smtp, maildir:, exec:; pytest: --pop3-seed)"
            )
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
