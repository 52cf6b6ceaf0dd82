"""Capacity sweeps against an external server (``pop3suite capacity --target``).

The sweep cannot create accounts or write into a foreign store, so the
target must already hold what the cells poll.  This module says what that
is (:func:`account_plan`: one account set per mailbox size, named so that
cells of different sizes never share a mailbox), checks it before the first
cell (:func:`preflight`: ports, TLS trust, logins, mailbox sizes by
``STAT``), can top the mailboxes up over SMTP (:func:`prefill_smtp`) or
write the messages as files for a local delivery tool
(:func:`write_prefill`), and reads the mailbox sizes around each cell
(:func:`mailbox_octets`) so ``bytes_scanned_per_poll`` is measured, not
assumed.  Every problem is a :class:`TargetError` with a one-line message:
the command prints it and exits 2 instead of measuring empty mailboxes.
"""

from __future__ import annotations

import random
import smtplib
import ssl
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import psutil

from pop3suite.client import ErrResponse, Pop3Client, Pop3ClientError, trust_context
from pop3suite.load.accounting import make_message
from pop3suite.target import preflight as shared

from .grid import MB, Cell, Grid

ACCOUNT_PREFIX = "cap"
TOLERANCE = 0.25  # a mailbox within +-25 % of the cell's size is close enough
RCPT_DOMAIN = "example.test"  # default of --rcpt-domain, as for the Locust delivery users
TIMEOUT = 15.0


class TargetError(ValueError):
    """The external target cannot run the grid; the message says why and what to do."""


def client_name(cell: Cell) -> str:
    """The client class (account prefix) of a cell on an external target: one
    per mailbox size (``cap0p3mb``), so a 1 MB cell never polls the 40 MB accounts."""
    return f"{ACCOUNT_PREFIX}{cell.mailbox_mb:g}".replace(".", "p") + "mb"


def account_plan(cells: Iterable[Cell]) -> dict[str, float]:
    """Every account the cells poll -> its mailbox size in MB (the most users
    of any cell of that size; accounts ``<client><nnnn>`` as pop3suite/load/scenario.py names them)."""
    users: dict[float, int] = {}
    for cell in cells:
        users[cell.mailbox_mb] = max(users.get(cell.mailbox_mb, 0), cell.users)
    plan: dict[str, float] = {}
    for size, count in sorted(users.items()):
        name = client_name(Cell("maildir", "none", size, 1.0, "keep", 1))
        plan.update({f"{name}{i:04d}": size for i in range(count)})
    return plan


def _url(run: dict, tls: str) -> str:
    scheme, port = ("pop3s", run.get("pop3s_port")) if tls == "implicit" else ("pop3", run.get("pop3_port"))
    return f"{scheme}://{run['host']}:{port}"


def _client(run: dict, tls: str) -> Pop3Client:
    """A connected client for ``tls`` (none, stls, implicit) with a ``+OK``
    greeting; connection, TLS trust and greeting are checked by the shared
    pre-flight (pop3suite/target/preflight.py, imported as ``shared``), so every
    command reports them alike."""
    port = run["pop3s_port"] if tls == "implicit" else run["pop3_port"]
    endpoint = shared.Endpoint("--target", run["host"], port, "implicit" if tls == "implicit" else "none")
    context = trust_context(run.get("cafile"), bool(run.get("insecure")))
    try:
        pop = shared.connect(endpoint, context, timeout=TIMEOUT, transcript=False)
    except shared.PreflightError as error:
        raise TargetError(str(error)) from None
    if tls == "stls":
        try:
            pop.stls()
        except ssl.SSLCertVerificationError as error:
            pop.close()
            raise TargetError(
                f"--target {endpoint.url}: the certificate (after STLS) is not trusted "
                f"({error.verify_message}); {shared.TRUST_HINT}"
            ) from None
        except (OSError, Pop3ClientError) as error:
            pop.close()
            raise TargetError(f"--target {endpoint.url}: STLS failed: {error}") from None
    return pop


def check_ports(run: dict, cells: Iterable[Cell]) -> None:
    """Every TLS mode of the grid has a --target URL it can use."""
    modes = {c.tls for c in cells}
    if "implicit" in modes and not run.get("pop3s_port"):
        raise TargetError("the grid has implicit-TLS cells: give --target pop3s://HOST:PORT as well")
    plain = sorted(modes & {"none", "stls"})
    if plain and not run.get("pop3_port"):
        raise TargetError(f"the grid has {'/'.join(plain)} cells: give --target pop3://HOST:PORT as well")


def stat_mode(run: dict, cells: Iterable[Cell]) -> str:
    """How the size checks connect: like the grid's own cells (a server that
    refuses cleartext logins on the plain port would fail those cells too)."""
    modes = {c.tls for c in cells}
    if "none" in modes and run.get("pop3_port"):
        return "none"
    if run.get("pop3s_port"):
        return "implicit"
    return "stls"


def mailbox_octets(run: dict, accounts: Iterable[str]) -> dict[str, tuple[int, int]]:
    """account -> (messages, octets) by ``STAT`` (one session per account).

    Raises:
        TargetError: a login failed (wrong password or no such account).
    """
    mode = run.get("stat_tls") or ("none" if run.get("pop3_port") else "implicit")
    return {account: _stat(run, mode, account) for account in accounts}


def _in_use(error: ErrResponse) -> bool:
    """The maildrop is locked: ``[IN-USE]`` (RFC 2449 §8), or, from a server
    without response codes, "in use" in the text."""
    return error.response.code_str == "IN-USE" or "in use" in error.response.text.lower()


def _stat(run: dict, mode: str, account: str, patience: float = 10.0) -> tuple[int, int]:
    """Log in and STAT, retried while the maildrop is still locked by a session
    that is ending (:func:`_in_use`)."""
    deadline = time.monotonic() + patience
    while True:
        pop = _client(run, mode)
        try:
            pop.login(account, run.get("password") or "")
            held = pop.stat()
            pop.quit()
            return held
        except ErrResponse as error:
            if not _in_use(error) or time.monotonic() > deadline:
                raise TargetError(
                    f"login as {account} on {_url(run, mode)} failed ({error}): wrong --password, or the "
                    "account does not exist (--write-prefill DIR lists the accounts the grid needs)"
                ) from None
        except (OSError, Pop3ClientError) as error:
            raise TargetError(f"{account} on {_url(run, mode)}: {type(error).__name__}: {error}") from None
        finally:
            pop.close()
        time.sleep(0.2)


def shortfalls(plan: dict[str, float], held: dict[str, tuple[int, int]]) -> list[str]:
    """Accounts whose mailbox is not within TOLERANCE of the plan, as text."""
    out = []
    for account, size_mb in plan.items():
        count, octets = held[account]
        if abs(octets - size_mb * MB) > TOLERANCE * size_mb * MB:
            out.append(f"{account} holds {octets / MB:.2f} MB ({count} msgs), needs {size_mb:g} MB")
    return out


def check_server_pid(pid: int | None) -> None:
    if pid is None:
        return
    try:
        psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        raise TargetError(f"--server-pid {pid}: no such process") from None
    except psutil.AccessDenied:
        raise TargetError(
            f"--server-pid {pid}: not allowed to read its CPU times (run as its user)"
        ) from None


def preflight(run: dict, grid: Grid, cells: list[Cell], prefill: bool = False) -> dict[str, tuple[int, int]]:
    """Check the target before the first cell; with ``prefill``, top the
    mailboxes up over SMTP first.  Returns account -> (messages, octets);
    sets ``run["stat_tls"]``, how the later size reads connect.

    Raises:
        TargetError: a port is missing or unreachable, TLS is not trusted, a
            login fails, or a mailbox is not the size its cells need.
    """
    check_ports(run, cells)
    check_server_pid(run.get("server_pid"))
    run["stat_tls"] = stat_mode(run, cells)
    for mode in sorted({c.tls for c in cells}):
        _client(run, mode).close()  # reachability and TLS trust, per mode the grid uses
    plan = account_plan(cells)
    held = mailbox_octets(run, plan)
    if prefill and shortfalls(plan, held):
        if not run.get("smtp_port"):
            raise TargetError("--prefill sends the mail over SMTP: give --smtp smtp://HOST:PORT")
        prefill_smtp(run, grid, plan, held)
        held = mailbox_octets(run, plan)
    short = shortfalls(plan, held)
    if short:
        more = f" (and {len(short) - 3} more)" if len(short) > 3 else ""
        raise TargetError(
            f"mailboxes are not the grid's sizes (+-{TOLERANCE:.0%}): {'; '.join(short[:3])}{more}. "
            "Fill them with --prefill (over --smtp), or write the messages with --write-prefill DIR "
            "and deliver them locally (pop3suite deliver, scripts/peers/*.sh seed); see docs/capacity.md"
        )
    return held


def _messages(grid: Grid, account: str, need: int, rng: random.Random) -> Iterable[bytes]:
    """Messages of the grid's size mix, about ``need`` octets in all."""
    mean = grid.message_sizes.mean
    total = 0
    while total + mean / 2 < need:
        data = make_message(uuid.uuid4().hex, grid.message_sizes.sample(rng), account)
        total += len(data)
        yield data


def prefill_smtp(run: dict, grid: Grid, plan: dict[str, float], held: dict[str, tuple[int, int]]) -> int:
    """Send each short mailbox the missing octets (grid's size mix) to
    ``ACCOUNT@DOMAIN`` (``--rcpt-domain``) over ``run["smtp_port"]``; returns messages sent."""
    rng = random.Random(grid.seed)
    sent = 0
    where = f"smtp://{run['host']}:{run['smtp_port']}"
    domain = run.get("rcpt_domain") or RCPT_DOMAIN
    for account, size_mb in plan.items():
        missing = int(size_mb * MB) - held[account][1]
        if missing <= 0:
            continue
        try:
            with smtplib.SMTP(run["host"], run["smtp_port"], timeout=60) as smtp:
                for data in _messages(grid, account, missing, rng):
                    smtp.sendmail(f"capacity@{domain}", [f"{account}@{domain}"], data)
                    sent += 1
        except (smtplib.SMTPException, OSError) as error:
            raise TargetError(f"--prefill: sending to {account}@{domain} via {where}: {error}") from None
    return sent


def write_prefill(grid: Grid, cells: list[Cell], directory: Path) -> dict[str, int]:
    """Write ``DIR/<account>/NNNNN.eml`` (CRLF) so each account's files make
    its mailbox size; returns account -> messages written."""
    rng = random.Random(grid.seed)
    written: dict[str, int] = {}
    for account, size_mb in account_plan(cells).items():
        box = directory / account
        box.mkdir(parents=True, exist_ok=True)
        n = 0
        for n, data in enumerate(_messages(grid, account, int(size_mb * MB), rng), 1):
            (box / f"{n:05d}.eml").write_bytes(data)
        written[account] = n
    return written
