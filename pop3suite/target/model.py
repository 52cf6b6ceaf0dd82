"""The server under test, built from options, a URL or a TOML target file.

URLs follow RFC 2384 (``pop://user;AUTH=mech@host:port``) with the schemes
``pop3://`` (plain, port 110) and ``pop3s://`` / ``pops://`` (implicit TLS,
port 995) as documented extensions, the way curl spells them.  The user and
password are percent-decoded, so ``pop3://alice:s3cret%20pass@host:11110``
works for a password with a space.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, RootModel

from pop3suite.client import Pop3Client, TlsMode, trust_context
from pop3suite.inputs import InputError, StrictModel, load_toml

from . import preflight


class TargetError(ValueError):
    """A target description the suite cannot use (message names the option)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: TlsMode  # "none" or "implicit" for a listener


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


@dataclass(frozen=True)
class Target:
    """Everything the suite knows about the server under test."""

    name: str
    pop3: Endpoint | None
    pop3s: Endpoint | None
    user: Credentials
    smtp: Endpoint | None = None
    apop_user: Credentials | None = None
    second_user: Credentials | None = None
    cafile: str | None = None
    insecure: bool = False
    server_hostname: str | None = None
    idle_timeout: float | None = None
    profile: str = "rfc"
    seed: str = "smtp"
    domain: str = "example.test"
    allow_destructive: bool = False
    fast: bool = False
    embedded: bool = False
    source_address: str | None = None  # a second loopback address for policy probes
    extra: dict[str, Any] = field(default_factory=dict)

    def ssl_context(self) -> ssl.SSLContext:
        return trust_context(self.cafile, self.insecure)

    def modes(self) -> list[str]:
        """Connection modes this target offers: plain, stls (if advertised is
        checked later), implicit."""
        modes = []
        if self.pop3:
            modes += ["plain", "stls"]
        if self.pop3s:
            modes.append("implicit")
        return modes

    def client(
        self,
        mode: str = "plain",
        *,
        timeout: float = 40.0,
        source: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Pop3Client:
        """An unconnected client for ``mode`` (plain, stls or implicit)."""
        if mode == "implicit":
            if self.pop3s is None:
                raise TargetError("no pop3s endpoint (give --pop3s URL)")
            endpoint, tls = self.pop3s, "implicit"
        else:
            if self.pop3 is None:
                raise TargetError("no plain pop3 endpoint")
            endpoint, tls = self.pop3, "stls" if mode == "stls" else "none"
        return Pop3Client(
            endpoint.host,
            endpoint.port,
            tls=tls,  # type: ignore[arg-type]
            ssl_context=ssl_context or self.ssl_context(),  # also used by a later STLS
            server_hostname=self.server_hostname or preflight.default_sni(endpoint.host),
            timeout=timeout,
            source_address=(source, 0) if source else None,
        )

    def describe(self) -> str:
        parts = []
        if self.pop3:
            parts.append(f"pop3://{self.pop3.host}:{self.pop3.port}")
        if self.pop3s:
            parts.append(f"pop3s://{self.pop3s.host}:{self.pop3s.port}")
        return " ".join(parts) + (" (embedded reference server)" if self.embedded else "")


def parse_url(url: str) -> tuple[Endpoint, Credentials | None]:
    """Split a POP URL into endpoint and credentials: the one POP URL parser
    (:func:`pop3suite.target.preflight.parse_url`), its error as a TargetError.

    Raises:
        TargetError: unknown scheme, no host, bad port.
    """
    try:
        endpoint, account = preflight.parse_url(url, "URL")
    except preflight.PreflightError as error:
        raise TargetError(str(error)) from None
    credentials = Credentials(account.user, account.password) if account else None
    return Endpoint(endpoint.host, endpoint.port, endpoint.tls), credentials


def _credentials(text: str, flag: str) -> Credentials:
    """``USER:PASS`` by the one parser (:func:`pop3suite.target.preflight.parse_account`).

    Raises:
        TargetError: no colon or no user (the message names ``flag``).
    """
    try:
        account = preflight.parse_account(text, flag)
    except preflight.PreflightError as error:
        raise TargetError(str(error)) from None
    return Credentials(account.user, account.password)


def build(
    url: str | None,
    *,
    pop3s: str | None = None,
    smtp: str | None = None,
    **options: Any,
) -> Target:
    """A :class:`Target` from a primary URL and options (see ``pop3suite check``)."""
    if url is None:
        raise TargetError("no target URL")
    endpoint, credentials = parse_url(url)
    if credentials is None:
        raise TargetError(f"{url!r}: give the login as pop3://USER:PASS@HOST:PORT")
    plain = endpoint if endpoint.tls == "none" else None
    secure = endpoint if endpoint.tls == "implicit" else None
    if pop3s:
        secure, _more = parse_url(pop3s)
        if secure.tls != "implicit":
            raise TargetError(f"--pop3s {pop3s!r}: use a pop3s:// URL")
    smtp_endpoint = None
    if smtp:
        parts = urlsplit(smtp if "://" in smtp else f"smtp://{smtp}")
        if not parts.hostname:
            raise TargetError(f"--smtp {smtp!r}: expected smtp://HOST:PORT")
        smtp_endpoint = Endpoint(parts.hostname, parts.port or 25, "none")
    for key in ("apop_user", "second_user"):
        if isinstance(options.get(key), str):
            options[key] = _credentials(options[key], "--" + key.replace("_", "-"))
    name = options.pop("name", None) or f"{endpoint.host}:{endpoint.port}"
    return Target(name=name, pop3=plain, pop3s=secure, user=credentials, smtp=smtp_endpoint, **options)


class TargetFile(StrictModel):
    """The keys of a ``--target-file`` (the long options of ``pop3suite check``, with ``_``)."""

    name: str | None = None
    url: str | None = None
    pop3s: str | None = None
    smtp: str | None = None
    apop_user: str | None = None
    second_user: str | None = None
    cafile: str | None = None
    insecure: bool | None = None
    server_hostname: str | None = None
    idle_timeout: Annotated[float, Field(gt=0)] | None = None
    profile: Literal["rfc", "provider"] | None = None
    seed: str | None = None
    domain: str | None = None
    allow_destructive: bool | None = None
    fast: bool | None = None
    source_address: str | None = None
    expectations: str | None = None


def load_file(path: str | Path) -> dict[str, Any]:
    """Options from a TOML target file (keys as the long options, with ``_``).

    Example::

        name = "dovecot"
        url = "pop3://alice:secret@127.0.0.1:21110"
        pop3s = "pop3s://alice:secret@127.0.0.1:21995"
        apop_user = "carol:secret"
        cafile = "ca.pem"          # relative to this file
        expectations = "dovecot.toml"   # relative to this file
        idle_timeout = 600

    Raises:
        TargetError: unreadable file, bad TOML, an unknown key or a wrong
            type (one line naming the file and the key).
    """
    path = Path(path)
    try:
        spec = load_toml(path, TargetFile, label=str(path))
    except InputError as error:
        raise TargetError(str(error)) from None
    data = spec.model_dump(exclude_none=True)
    for key in ("cafile", "expectations"):  # relative to the file
        if key in data:
            data[key] = str((path.parent / data[key]).resolve())
    return data


class Expectations(RootModel[dict[str, str]]):
    """An expectations file: ``"case id" = "reason"`` (known deviations)."""

    model_config = ConfigDict(strict=True)


def load_expectations(path: str | Path) -> dict[str, str]:
    """Case id -> reason from an ``--expectations`` file.

    Raises:
        TargetError: unreadable file, bad TOML or a value that is not a
            string (one line naming the file and the key).
    """
    try:
        return dict(load_toml(path, Expectations, label=str(path)).root)
    except InputError as error:
        raise TargetError(str(error)) from None


def with_profile(target: Target, profile: str) -> Target:
    return replace(target, profile=profile)
