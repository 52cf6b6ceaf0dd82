"""The common interface every real-client driver implements.

A driver knows how to make one real POP3 client program (or library) fetch
every message of one account in one connection mode with one login method,
and either keep or delete the mail afterwards.  It returns the messages as
the client stored them; the runner, not the driver, decides whether they are
right.  Keeping the judgement out of the drivers is what lets a broken
server (or a broken client) fail a cell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

MODES = ("plain", "stls", "implicit")
AUTHS = ("user", "apop", "sasl")
BEHAVIOURS = ("keep", "delete")
#: How many trailing lines of a client's output a failed cell keeps.
TAIL_LINES = 12


class ClientFailed(RuntimeError):
    """The client program failed; ``output`` is the tail of what it said."""

    def __init__(self, summary: str, output: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.output = output


@dataclass(frozen=True)
class Login:
    """One endpoint and account as a client needs it for one cell.

    ``port`` is already the right listener for ``mode`` (the implicit-TLS
    port for ``implicit``); ``server_hostname`` is the name the certificate
    is checked against (``localhost`` for loopback: some clients ignore IP
    address SANs).
    """

    host: str
    port: int
    mode: str
    user: str
    password: str
    cafile: str | None
    server_hostname: str

    @property
    def tls(self) -> bool:
        return self.mode in ("stls", "implicit")


class Client(ABC):
    """A real POP3 client driver.  Subclasses set the class attributes."""

    #: Short name used on the command line and in the matrix.
    name: str = ""
    #: Connection modes the client itself supports (a subset of MODES).
    modes: tuple[str, ...] = MODES
    #: Login methods the client can be told to use (a subset of AUTHS).
    auths: tuple[str, ...] = ("user",)
    behaviours: tuple[str, ...] = BEHAVIOURS
    #: Why a mode or auth is missing, for the matrix's "unsupported" cells.
    unsupported_reasons: Mapping[str, str] = {}
    #: The normalisation between wire form and stored form, said in words.
    normalisation: str = "none: stored byte-exact as RETR sends it (CRLF line ends)"
    #: The exact configuration used, for docs/clients.md.
    configuration: str = ""
    #: The Debian package the program comes from ("" for none).
    package: str = ""

    @abstractmethod
    def available(self) -> str | None:
        """None when the client can run here, else the reason it cannot."""

    @abstractmethod
    def version(self) -> str:
        """The client's version as it reports it (or its package's)."""

    def package_version(self) -> str:
        """``PACKAGE VERSION`` from dpkg, or "" when not installed from a package."""
        if not self.package or not which("dpkg-query"):
            return ""
        result = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", self.package],
            capture_output=True,
            text=True,
            check=False,
        )
        return f"{self.package} {result.stdout.strip()}" if result.returncode == 0 else ""

    def supports(self, mode: str, auth: str, behaviour: str) -> str | None:
        """None when the cell can run, else why the client cannot do it."""
        if mode not in self.modes:
            return self.unsupported_reasons.get(mode, f"{self.name} has no {mode} mode")
        if auth not in self.auths:
            return self.unsupported_reasons.get(auth, f"{self.name} cannot be told to use {auth} login")
        if behaviour not in self.behaviours:
            return f"{self.name} cannot {behaviour}"
        return None

    def stored_form(self, wire: bytes) -> bytes:
        """What this client stores for a message RETR sent as ``wire``."""
        return wire

    @abstractmethod
    def retrieve(self, target: Login, mode: str, auth: str, behaviour: str, workdir: Path) -> list[bytes]:
        """Fetch every message; return them as the client stored them.

        Raises:
            ClientFailed: the client exited non-zero, timed out or stored
                nothing it should have; carries the tail of its output.
        """


def which(program: str) -> str | None:
    """``program`` on PATH, also looking in the sbin directories."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/local/bin"
    return shutil.which(program, path=path)


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` non-empty lines of ``text``."""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


def run(
    argv: Sequence[str],
    *,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    what: str | None = None,
    ok_codes: Sequence[int] = (0,),
) -> subprocess.CompletedProcess[str]:
    """Run a client program; raise :class:`ClientFailed` with its output tail
    unless it exits with one of ``ok_codes``."""
    label = what or Path(argv[0]).name
    try:
        result = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        raise ClientFailed(f"{label} timed out after {timeout:.0f} s", tail(output)) from exc
    except OSError as exc:
        raise ClientFailed(f"{label} could not start: {exc}") from exc
    if result.returncode not in ok_codes:
        raise ClientFailed(f"{label} exited {result.returncode}", tail(result.stdout + result.stderr))
    return result


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


def lf_form(wire: bytes) -> bytes:
    """Wire form with LF line ends: what a Unix delivery agent stores."""
    return wire.replace(b"\r\n", b"\n")


def read_maildir(maildir: Path) -> list[bytes]:
    """Every message in a Maildir's new/ and cur/, oldest name first."""
    files = [p for sub in ("new", "cur") for p in sorted((maildir / sub).glob("*")) if p.is_file()]
    return [p.read_bytes() for p in files]


def make_maildir(maildir: Path) -> Path:
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    return maildir


def first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


class CellUnsupported(Exception):
    """Found while running: the client cannot do this cell on this server
    (e.g. curl cannot be kept from using SASL when the server offers it)."""
