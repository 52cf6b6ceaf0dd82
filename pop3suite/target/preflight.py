"""Pre-flight: check a target and the output paths before any case or load runs.

``check``, ``load --target``, ``capacity --target`` and ``clients --target``
call this first, so a typo'd host, a closed port, an ``http://`` URL, a
certificate the user forgot to trust or a wrong password is one line naming
the flag that fixes it, with exit status 2, within seconds, instead of a run
of FAILED cases that accuse the server (or a traceback after the run).

The checks go in the order a connection does: URL syntax, name resolution,
TCP reach, TLS trust, a ``+OK`` greeting, a login for every account given.
Each failure is a :class:`PreflightError` whose message is the whole line to
print.  Timeouts are short on purpose (:data:`TIMEOUT`): a server that takes
longer to greet is not one the suite can test either.

``--report``/``--out`` paths are checked the same way (:func:`writable_dir`,
:func:`writable_file`), before the run rather than after it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pop3suite.client import (
    ConnectionClosed,
    ErrResponse,
    Pop3Client,
    Pop3ClientError,
    apop_timestamp,
    trust_context,
)
from pop3suite.proto import Response, capability_map
from pop3suite.proto.errors import MalformedResponse
from pop3suite.proto.limits import POP3_PORT, POP3S_PORT

#: Seconds for each step (resolve, connect, greeting, login).
TIMEOUT = 5.0
#: How long a login retries ``[IN-USE]`` (a session of ours or of a previous run ending).
IN_USE_PATIENCE = 5.0

_SCHEMES: dict[str, tuple[Literal["none", "implicit"], int]] = {
    "pop": ("none", POP3_PORT),
    "pop3": ("none", POP3_PORT),
    "pop3s": ("implicit", POP3S_PORT),
    "pops": ("implicit", POP3S_PORT),
}
TRUST_HINT = "give --cafile FILE with the CA that signed it, or --insecure to skip verification"


class PreflightError(ValueError):
    """The target or an output path cannot be used; the message is one line
    naming the flag and what was found."""


@dataclass(frozen=True)
class Endpoint:
    """One listener of the target, and the flag that named it."""

    flag: str
    host: str
    port: int
    tls: Literal["none", "implicit"]

    @property
    def url(self) -> str:
        """The URL without credentials (never print a password)."""
        scheme = "pop3s" if self.tls == "implicit" else "pop3"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


@dataclass(frozen=True)
class Account:
    """Credentials to try, and the flag that gave them."""

    flag: str
    user: str
    password: str


def parse_url(url: str, flag: str) -> tuple[Endpoint, Account | None]:
    """A POP URL (``pop3://USER:PASS@HOST:PORT``, ``pop3s://``, RFC 2384's
    ``pop://``) as an endpoint and, when it carries a login, an account.

    Raises:
        PreflightError: not a POP URL, no host, a bad port.
    """
    shown = _hide_password(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise PreflightError(f"{flag} {shown}: not a URL ({error})") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        found = f"scheme {scheme + '://'!r}" if scheme else "no scheme"
        raise PreflightError(f"{flag} {shown}: {found}; expected pop3://HOST:PORT or pop3s://HOST:PORT")
    if not parts.hostname:
        raise PreflightError(f"{flag} {shown}: no host; expected {scheme}://HOST:PORT")
    tls, default_port = _SCHEMES[scheme]
    account = None
    if parts.username:
        user = unquote(parts.username.split(";", 1)[0])  # drop RFC 2384 ;AUTH=...
        account = Account(flag, user, unquote(parts.password or ""))
    return Endpoint(flag, parts.hostname, port or default_port, tls), account


def parse_account(text: str, flag: str) -> Account:
    """``USER:PASS`` as given to ``--apop-user`` / ``--second-user``."""
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise PreflightError(f"{flag}: expected USER:PASS, got {text!r}")
    return Account(flag, user, password)


def _hide_password(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


# ------------------------------------------------------------------ the target


def resolve(endpoint: Endpoint) -> None:
    """The host name resolves."""
    try:
        socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise PreflightError(
            f"{endpoint.flag} {endpoint.url}: cannot resolve host {endpoint.host!r} ({error.strerror})"
        ) from None
    except UnicodeError as error:
        raise PreflightError(f"{endpoint.flag} {endpoint.url}: bad host name ({error})") from None


def connect(
    endpoint: Endpoint,
    context: ssl.SSLContext,
    *,
    server_hostname: str | None = None,
    timeout: float = TIMEOUT,
    transcript: bool = True,
) -> Pop3Client:
    """A client with TCP, TLS (for ``pop3s``) and a ``+OK`` greeting done;
    ``transcript=False`` for a client that goes on to do many sessions' work
    (a capacity prefill) and should not keep what it sent.

    Raises:
        PreflightError: resolution, connection, TLS trust, TLS handshake or
            greeting failed (one line, with the flag that fixes a trust error).
    """
    resolve(endpoint)
    where = f"{endpoint.flag} {endpoint.url}"
    client = Pop3Client(
        endpoint.host,
        endpoint.port,
        tls=endpoint.tls,
        ssl_context=context,
        server_hostname=server_hostname or default_sni(endpoint.host),
        timeout=timeout,
        transcript=transcript,
    )
    try:
        greeting = client.connect()
    except ssl.SSLCertVerificationError as error:
        client.close()
        raise PreflightError(
            f"{where}: the server's certificate is not trusted ({error.verify_message}); {TRUST_HINT}"
        ) from None
    except ssl.SSLError as error:
        client.close()
        raise PreflightError(
            f"{where}: TLS handshake failed ({error.reason or error}); is {endpoint.port} an implicit-TLS "
            "(pop3s://) port?"
        ) from None
    except ConnectionRefusedError:
        client.close()
        raise PreflightError(f"{where}: connection refused (nothing listens on {endpoint.port})") from None
    except TimeoutError:
        client.close()
        hint = " (a pop3s:// port?)" if endpoint.tls == "none" else ""
        raise PreflightError(f"{where}: no greeting within {timeout:g} s{hint}") from None
    except MalformedResponse as error:
        client.close()
        raise PreflightError(f"{where}: the greeting is not a POP3 status line ({error})") from None
    except (OSError, Pop3ClientError) as error:
        client.close()
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise PreflightError(f"{where}: {reason}") from None
    if not greeting.ok:
        client.close()
        raise PreflightError(f"{where}: the greeting is {greeting.raw!r}, not +OK")
    return client


def default_sni(host: str) -> str:
    """Certificates for loopback usually name ``localhost``."""
    return "localhost" if host in ("127.0.0.1", "::1") else host


def _capabilities(client: Pop3Client) -> set[str]:
    """CAPA tags, or an empty set if CAPA is refused (before login)."""
    if not client.command("CAPA", check=False).ok:
        return set()
    body, _reader = client.read_body()
    return set(capability_map(body.split(b"\r\n")))


def login(
    endpoint: Endpoint,
    account: Account,
    context: ssl.SSLContext,
    *,
    server_hostname: str | None = None,
    timeout: float = TIMEOUT,
) -> None:
    """Log in as ``account`` (USER/PASS, else APOP if the greeting offers
    it; over STLS when a plain port advertises STLS and not USER), then
    QUIT without changing anything.  ``[LOGIN-DELAY]`` counts as a working
    login (the credentials were right); ``[IN-USE]`` is retried briefly.

    Raises:
        PreflightError: the login was refused or the connection failed.
    """
    deadline = time.monotonic() + IN_USE_PATIENCE
    while True:
        client = connect(endpoint, context, server_hostname=server_hostname, timeout=timeout)
        try:
            reply = _try_login(client, endpoint, account)
        except ssl.SSLCertVerificationError as error:  # after STLS
            raise PreflightError(
                f"{endpoint.flag} {endpoint.url}: the server's certificate (after STLS) is not trusted "
                f"({error.verify_message}); {TRUST_HINT}"
            ) from None
        except TimeoutError:
            raise PreflightError(
                f"{account.flag}: login as {account.user} on {endpoint.url}: no reply within {timeout:g} s"
            ) from None
        except (OSError, Pop3ClientError, MalformedResponse) as error:
            raise PreflightError(
                f"{account.flag}: login as {account.user} on {endpoint.url}: {type(error).__name__}: {error}"
            ) from None
        finally:
            client.close()
        if reply is None or reply.code_str == "LOGIN-DELAY":
            return
        if reply.code_str != "IN-USE" or time.monotonic() > deadline:
            text = reply.raw.decode("utf-8", "replace").strip()
            raise PreflightError(
                f"{account.flag}: login as {account.user} on {endpoint.url} refused ({text}): "
                "wrong user or password?"
            )
        time.sleep(0.25)


def _try_login(client: Pop3Client, endpoint: Endpoint, account: Account) -> Response | None:
    """None when logged in (and QUIT sent), else the refusing reply."""
    if endpoint.tls == "none":
        capabilities = _capabilities(client)
        if "STLS" in capabilities and "USER" not in capabilities:
            client.stls()
    reply = client.command(f"USER {account.user}", check=False)
    if reply.ok:
        reply = client.pass_(account.password, check=False)
    if not reply.ok and account.flag == "--apop-user" and not apop_timestamp(client.greeting):
        # An APOP account on a greeting without a timestamp: its secret
        # cannot be checked here, and refusing USER/PASS is its right.  The
        # APOP cases grade the missing timestamp; this is no usage error.
        return None
    if not reply.ok and apop_timestamp(client.greeting) and reply.code_str not in ("IN-USE", "LOGIN-DELAY"):
        try:
            reply = client.apop(account.user, account.password, check=False)
        except ErrResponse as error:
            reply = error.response
        except (ConnectionClosed, ConnectionError):
            pass  # the server closed after the failed USER/PASS: that reply stands
    if reply.ok:
        client.quit()
        return None
    return reply


def check_target(
    endpoints: Iterable[Endpoint],
    accounts: Iterable[Account] = (),
    *,
    cafile: str | None = None,
    insecure: bool = False,
    server_hostname: str | None = None,
    timeout: float = TIMEOUT,
) -> None:
    """Every endpoint answers with ``+OK`` (TLS trusted) and every account
    logs in on the first one.

    Raises:
        PreflightError: the first problem, as one line naming its flag.
    """
    endpoints = list(endpoints)
    if cafile is not None:
        readable_file(cafile, "--cafile")
    try:
        context = trust_context(cafile, insecure)
    except (OSError, ssl.SSLError) as error:
        raise PreflightError(f"--cafile {cafile}: not a CA certificate file ({error})") from None
    for endpoint in endpoints:
        connect(endpoint, context, server_hostname=server_hostname, timeout=timeout).close()
    if not endpoints:
        return
    for account in accounts:
        login(endpoints[0], account, context, server_hostname=server_hostname, timeout=timeout)


# ------------------------------------------------------------------ paths


def readable_file(path: str | Path, flag: str) -> None:
    """``path`` is a file this process can read."""
    path = Path(path)
    if not path.is_file():
        raise PreflightError(f"{flag} {path}: no such file")
    if not os.access(path, os.R_OK):
        raise PreflightError(f"{flag} {path}: not readable")


def writable_dir(path: str | Path, flag: str) -> Path:
    """``path`` is a directory this process can write into, or one it can
    make: proven by making it and writing a file there, then removing what
    the check made (a failed run after it leaves no empty directory behind).

    Raises:
        PreflightError: it is a file, or cannot be made or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PreflightError(f"{flag} {path}: exists and is not a directory")
    missing = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise PreflightError(f"{flag} {path}: cannot write there ({error.strerror or error})") from None
    finally:
        for made in missing:  # deepest first
            with contextlib.suppress(OSError):
                made.rmdir()
    return path


def writable_file(path: str | Path, flag: str) -> Path:
    """``path`` can be written as a file (its directory made if missing)."""
    path = Path(path)
    if path.is_dir():
        raise PreflightError(f"{flag} {path}: is a directory, expected a file name")
    writable_dir(path.parent, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise PreflightError(f"{flag} {path}: not writable")
    return path


def check_target_values(values: Mapping[str, Any], url_flag: str) -> None:
    """:func:`check_pop_target` on a target given as option values (the
    keys of ``--target-file``: ``url``, ``pop3s``, ``apop_user``,
    ``second_user``, ``cafile``, ``insecure``, ``server_hostname``), the
    one form ``pop3suite check`` and the pytest plugin both hold.

    Raises:
        PreflightError: the first problem, as one line naming its flag.
    """
    check_pop_target(
        values["url"],
        url_flag=url_flag,
        pop3s=values.get("pop3s"),
        apop_user=values.get("apop_user"),
        second_user=values.get("second_user"),
        cafile=values.get("cafile"),
        insecure=bool(values.get("insecure")),
        server_hostname=values.get("server_hostname"),
    )


def check_pop_target(
    url: str,
    *,
    url_flag: str = "--target",
    pop3s: str | None = None,
    apop_user: str | None = None,
    second_user: str | None = None,
    cafile: str | None = None,
    insecure: bool = False,
    server_hostname: str | None = None,
    timeout: float = TIMEOUT,
) -> None:
    """The pre-flight of a conformance or interop target given as options:
    the primary URL (with its login), ``--pop3s``, and the extra accounts.

    Raises:
        PreflightError: the first problem, as one line naming its flag.
    """
    endpoint, account = parse_url(url, url_flag)
    if account is None:
        raise PreflightError(f"{url_flag} {endpoint.url}: give the login as pop3://USER:PASS@HOST:PORT")
    endpoints = [endpoint]
    if pop3s:
        secure, _login = parse_url(pop3s, "--pop3s")
        if secure.tls != "implicit":
            raise PreflightError(f"--pop3s {secure.url}: use a pop3s:// URL")
        endpoints.append(secure)
    accounts = [account]
    for flag, text in (("--apop-user", apop_user), ("--second-user", second_user)):
        if text:
            accounts.append(parse_account(text, flag))
    check_target(
        endpoints,
        accounts,
        cafile=cafile,
        insecure=insecure,
        server_hostname=server_hostname,
        timeout=timeout,
    )
