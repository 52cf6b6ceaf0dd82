"""Runs every (client, mode, auth, behaviour) cell against one target.

Before a target's cells, the target is probed once (``probe.probe``: CAPA
per mode, APOP timestamp) so that a mode or login the *server* lacks is
``unsupported``, not a client failure.

Per cell: empty the account's maildrop, deliver the fixture set through the
target's seed route (``pop3suite.target.seeding.Seeder``), RETR every message once
with the suite's own client (the bytes the server really serves; checked
against the fixtures, see ``served``), let the client fetch everything,
compare each stored message byte for byte with what the server served (in
the client's documented stored form), and check the maildrop afterwards:
still full for ``keep``, empty for ``delete``.  The maildrop is inspected
with the suite's own client, never with the client under test.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pop3suite.client import Pop3Client, Pop3ClientError
from pop3suite.proto import sasl_plain_encode
from pop3suite.target.fixtures import Fixture
from pop3suite.target.model import Credentials, Target
from pop3suite.target.seeding import Seeder, SeedError

from .base import AUTHS, BEHAVIOURS, MODES, CellUnsupported, Client, ClientFailed, Login
from .fixtureset import fixture_set
from .probe import ServerProbe, probe
from .served import Snapshot, classify, fixture_in, session_form

#: Called after delivery and before the client runs (tests use it to break
#: the stored mail on purpose: the byte-exact check must be able to fail).
AfterDeliver = Callable[[Target, Credentials], None]


@dataclass
class Cell:
    """One matrix cell: status is pass, fail, unsupported or unavailable."""

    client: str
    server: str
    mode: str
    auth: str
    behaviour: str
    status: str
    note: str = ""
    error: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class ClientInfo:
    name: str
    version: str
    available: bool
    reason: str = ""
    normalisation: str = ""
    configuration: str = ""
    package: str = ""


@dataclass
class MatrixRun:
    """Everything one ``pop3suite clients`` run measured."""

    servers: dict[str, str] = field(default_factory=dict)  # name -> description
    clients: dict[str, ClientInfo] = field(default_factory=dict)
    cells: list[Cell] = field(default_factory=list)
    started: str = ""
    fixtures: list[str] = field(default_factory=list)
    probes: dict[str, str] = field(default_factory=dict)  # server name -> CAPA per mode

    @property
    def failed(self) -> list[Cell]:
        return [cell for cell in self.cells if cell.status == "fail"]


class MaildropError(RuntimeError):
    """The suite's own client could not prepare or inspect the maildrop."""


def account_for(target: Target, auth: str) -> Credentials | None:
    """The account a cell logs in as: the APOP account for ``apop``."""
    return target.apop_user if auth == "apop" else target.user


def login_for(target: Target, mode: str, credentials: Credentials) -> Login | None:
    endpoint = target.pop3s if mode == "implicit" else target.pop3
    if endpoint is None:
        return None
    hostname = target.server_hostname or (
        "localhost" if endpoint.host in ("127.0.0.1", "::1") else endpoint.host
    )
    return Login(
        endpoint.host, endpoint.port, mode, credentials.user, credentials.password, target.cafile, hostname
    )


#: Accounts USER/PASS did not work for (APOP-only ones): go straight to APOP.
_APOP_ONLY: set[tuple[str, str]] = set()


@contextlib.contextmanager
def _session(target: Target, credentials: Credentials) -> Iterator[Pop3Client]:
    """A logged-in session of the suite's own client (USER/PASS, else APOP)."""
    key = (target.describe(), credentials.user)
    pop = target.client("plain" if target.pop3 else "implicit", timeout=60)
    try:
        pop.connect()
        ok = False
        if key not in _APOP_ONLY:
            response = pop.command(f"USER {credentials.user}", check=False)
            ok = response.ok and pop.pass_(credentials.password, check=False).ok
            if not ok:
                pop.close()
                pop = target.client("plain" if target.pop3 else "implicit", timeout=60)
                pop.connect()
        if not ok:
            if not pop.apop(credentials.user, credentials.password, check=False).ok:
                raise MaildropError(f"the suite cannot log in as {credentials.user} (USER/PASS nor APOP)")
            _APOP_ONLY.add(key)
        yield pop
        pop.quit()
    except (OSError, Pop3ClientError) as exc:
        raise MaildropError(f"maildrop of {credentials.user}: {exc}") from exc
    finally:
        pop.close()


def maildrop_count(target: Target, credentials: Credentials) -> int:
    with _session(target, credentials) as pop:
        return pop.stat()[0]


def empty_maildrop(target: Target, credentials: Credentials) -> None:
    with _session(target, credentials) as pop:
        count, _ = pop.stat()
        for number in range(1, count + 1):
            pop.dele(number)


def seeder_for(target: Target, credentials: Credentials, apop_seed: str | None = None) -> Seeder:
    """A Seeder delivering to ``credentials``' maildrop.

    For a ``maildir:DIR`` route the other account's Maildir is taken to be
    DIR's sibling named after it (how the reference lab and the Dovecot peer
    lay mail out) unless ``apop_seed`` names it.
    """
    if credentials == target.user:
        return Seeder(target)
    seed = target.seed
    if apop_seed:
        seed = apop_seed
    elif seed.startswith("maildir:"):
        seed = f"maildir:{Path(seed.split(':', 1)[1]).parent / credentials.user}"
    return Seeder(replace(target, user=credentials, seed=seed))


def deliver(seeder: Seeder, target: Target, credentials: Credentials, fixtures: list[Fixture]) -> None:
    """Deliver the fixtures and wait until the server shows all of them (or
    more: a server may deliver a notice of its own alongside)."""
    for fixture in fixtures:
        seeder.deliver(fixture.data)
    deadline = time.monotonic() + 30
    while True:
        count = maildrop_count(target, credentials)
        if count >= len(fixtures):
            return
        if time.monotonic() > deadline:
            raise MaildropError(f"after delivery the maildrop holds {count} of {len(fixtures)} messages")
        time.sleep(0.3)


def first_difference(want: bytes, got: bytes) -> str:
    """Where two byte strings part, with a little context either side."""
    limit = min(len(want), len(got))
    offset = next((i for i in range(limit) if want[i] != got[i]), limit)
    start = max(0, offset - 20)
    return (
        f"differs at byte {offset} (expected {len(want)} bytes, stored {len(got)}): "
        f"expected {want[start : offset + 20]!r}, stored {got[start : offset + 20]!r}"
    )


def snapshot(target: Target, credentials: Credentials, fixtures: list[Fixture]) -> Snapshot:
    """RETR every message once with the suite's own client: what the server serves."""
    with _session(target, credentials) as pop:
        count, _ = pop.stat()
        messages = [pop.retr(number) for number in range(1, count + 1)]
    return classify(messages, fixtures)


def _label(shot: Snapshot, index: int) -> str:
    return shot.names[index] or f"message {index + 1} (no fixture)"


def verify(client: Client, fixtures: list[Fixture], shot: Snapshot, stored: list[bytes]) -> list[str]:
    """Problems with what the client stored; empty when it stored exactly
    what the server served (every fixture, and nothing the server never had).

    A served message that is no fixture (a server's own notice) may be
    stored or not; it is listed in the cell's note, never a failure.
    """
    problems = []
    served = set(shot.names)
    for fixture in fixtures:
        if fixture.name not in served:
            problems.append(f"{fixture.name}: the server does not serve it after delivery")
        elif fixture.name in shot.altered:
            problems.append(
                f"{fixture.name}: {first_difference(fixture.wire, shot.altered[fixture.name])} "
                "as the server serves it: no known server rewrite explains it"
            )
    variations = shot.variations
    expected = [session_form(client.stored_form(message), variations) for message in shot.messages]
    open_ = list(range(len(expected)))
    for message in stored:
        key = session_form(message, variations)
        hit = next((i for i in open_ if expected[i] == key), None)
        if hit is not None:
            open_.remove(hit)
            continue
        if key in expected:
            problems.append(f"{_label(shot, expected.index(key))}: stored twice")
            continue
        name = fixture_in(message)
        same = [i for i in open_ if name is not None and shot.names[i] == name]
        if same:
            open_.remove(same[0])
            want = client.stored_form(shot.messages[same[0]])
            problems.append(f"{name}: {first_difference(want, message)}")
        else:
            problems.append(f"a stored message the server never served: {message[:80]!r}")
    for i in open_:
        if shot.names[i] is not None:
            problems.append(f"{shot.names[i]}: not stored")
    return problems


class Runner:
    """Runs cells for a set of clients against one target."""

    def __init__(
        self,
        clients: list[Client],
        *,
        progress: Callable[[str], None] = print,
        fixtures: list[Fixture] | None = None,
        after_deliver: AfterDeliver | None = None,
        apop_seed: str | None = None,
        modes: tuple[str, ...] = MODES,
        auths: tuple[str, ...] = AUTHS,
        behaviours: tuple[str, ...] = BEHAVIOURS,
    ) -> None:
        self.clients = clients
        self.progress = progress
        self.fixtures = fixtures if fixtures is not None else fixture_set()
        self.after_deliver = after_deliver
        self.apop_seed = apop_seed
        self.modes, self.auths, self.behaviours = modes, auths, behaviours
        #: What the current target offers (set by :meth:`run`; empty = not probed).
        self.server = ServerProbe()

    def plan(self) -> list[tuple[Client, str, str, str]]:
        return [
            (client, mode, auth, behaviour)
            for client in self.clients
            for mode in self.modes
            for auth in self.auths
            for behaviour in self.behaviours
        ]

    def run(self, target: Target, into: MatrixRun | None = None) -> MatrixRun:
        result = into or MatrixRun()
        result.servers[target.name] = target.describe()
        self.server = probe(target)
        result.probes[target.name] = self.server.summary()
        result.fixtures = [fixture.name for fixture in self.fixtures]
        for client in self.clients:
            if client.name not in result.clients:
                reason = client.available()
                result.clients[client.name] = ClientInfo(
                    client.name,
                    "" if reason else _safe_version(client),
                    reason is None,
                    reason or "",
                    client.normalisation,
                    client.configuration,
                    client.package_version(),
                )
        plan = self.plan()
        for index, (client, mode, auth, behaviour) in enumerate(plan, 1):
            started = time.monotonic()
            cell = self.run_cell(target, client, mode, auth, behaviour)
            cell.seconds = round(time.monotonic() - started, 2)
            result.cells.append(cell)
            line = (
                f"[{index}/{len(plan)}] {target.name} {client.name} {mode} {auth} {behaviour}: {cell.status}"
            )
            detail = "" if cell.status == "pass" else (cell.note.splitlines() or [""])[0]
            self.progress(f"{line} ({cell.seconds:.1f} s){': ' + detail if detail else ''}")
        return result

    def run_cell(self, target: Target, client: Client, mode: str, auth: str, behaviour: str) -> Cell:
        cell = Cell(client.name, target.name, mode, auth, behaviour, "unsupported")
        info_reason = client.available()
        if info_reason:
            cell.status, cell.note = "unavailable", info_reason
            return cell
        why = client.supports(mode, auth, behaviour)
        if why:
            cell.note = why
            return cell
        lacking = self.server.lacks(mode, auth)
        if lacking:
            cell.note = lacking
            return cell
        credentials = account_for(target, auth)
        if credentials is None:
            cell.note = "the target names no APOP account (--apop-user)"
            return cell
        login = login_for(target, mode, credentials)
        if login is None:
            cell.note = f"the target has no {'pop3s' if mode == 'implicit' else 'pop3'} endpoint"
            return cell
        workdir = Path(tempfile.mkdtemp(prefix=f"pop3suite-{client.name}-", dir=_work_root()))
        workdir.chmod(0o755)  # clients that run unprivileged (getmail) write here
        try:
            empty_maildrop(target, credentials)
            deliver(seeder_for(target, credentials, self.apop_seed), target, credentials, self.fixtures)
            if self.after_deliver:
                self.after_deliver(target, credentials)
            shot = snapshot(target, credentials, self.fixtures)
            try:
                stored = client.retrieve(login, mode, auth, behaviour, workdir)
            except CellUnsupported as exc:
                cell.note = str(exc)
                return cell
            except ClientFailed as exc:
                cell.status = "fail"
                cell.note, cell.error = _redact(exc.summary, credentials), _redact(exc.output, credentials)
                return cell
            problems = verify(client, self.fixtures, shot, stored)
            left = maildrop_count(target, credentials)
            wanted = len(shot.messages) if behaviour == "keep" else 0
            if left != wanted:
                problems.append(
                    f"{behaviour}: the maildrop holds {left} messages afterwards, expected {wanted}"
                )
            notes = shot.notes()
            if problems:
                cell.status, cell.note = "fail", "\n".join(problems + notes)
            else:
                cell.status = "pass"
                own = [] if client.normalisation.startswith("none") else [client.normalisation]
                cell.note = "\n".join(own + notes)
            return cell
        except (MaildropError, SeedError, OSError) as exc:
            cell.status, cell.note = "fail", f"set-up or check failed (not the client): {exc}"
            return cell
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            with contextlib.suppress(MaildropError, OSError):
                empty_maildrop(target, credentials)


def _redact(text: str, credentials: Credentials) -> str:
    """Client output without the password or the SASL PLAIN token carrying it."""
    token = sasl_plain_encode(credentials.user, credentials.password)
    for secret in (token, credentials.password):
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def _safe_version(client: Client) -> str:
    try:
        return client.version()
    except (ClientFailed, OSError) as exc:
        return f"unknown ({exc})"


def _work_root() -> Path:
    """Outside /tmp's 0700 pytest dirs: unprivileged clients must traverse it."""
    root = Path(tempfile.gettempdir()) / "pop3suite-clients"
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o1777)
    return root
