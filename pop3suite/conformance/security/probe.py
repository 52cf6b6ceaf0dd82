"""Helpers for the security probes: connections that read nothing but the
greeting line, white-box facts about the embedded server, and the ALIVE +
no-state-change check every probe ends with.

Probes judge raw lines where the client would hide framing
(security-probes.md §6), through :class:`Pop3Client`'s probe methods; SMTP
probes read SMTP lines with :func:`read_line`.  White-box facts (the server's configured limits,
its process) are known only for the embedded reference server, whose config
file is ``target.extra["config"]``; for any other target the probes use
Dovecot's defaults or are UNIMPLEMENTED.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pop3suite.client import ErrResponse, Pop3Client, Pop3ClientError
from pop3suite.conformance.case import CaseFailure, unimplemented
from pop3suite.conformance.helpers import SERVER_CLOSED
from pop3suite.proto.errors import MalformedResponse
from pop3suite.target.model import Target

#: Dovecot's pre-login deadline (login_timeout), used when the target's is unknown.
DOVECOT_LOGIN_TIMEOUT = 180.0


def server_config(target: Target) -> dict[str, Any]:
    """The embedded server's effective settings (config file over the
    defaults) as a dict, else {} (black box)."""
    path = target.extra.get("config")
    if not path:
        return {}
    from pop3suite.server.config import load

    settings = load(Path(path))
    return {key: getattr(settings, key) for key in settings.__dataclass_fields__}


def server_pid(target: Target) -> int | None:
    """The pid listening on the target's POP3 port, if it is on this host."""
    import psutil

    endpoint = target.pop3 or target.pop3s
    if endpoint is None or endpoint.host not in ("127.0.0.1", "::1", "localhost"):
        return None
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == endpoint.port:
                return conn.pid
    except psutil.AccessDenied:
        return None
    return None


def rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def clean_source(target: Target) -> str:
    """A client address that never logged in over POP (for relay probes):
    ``--source-address``, or 127.0.0.2 for the embedded server."""
    address = target.source_address or ("127.0.0.2" if target.embedded else None)
    if address is None:
        unimplemented(
            "needs a client address without a POP login "
            "(give --source-address, e.g. 127.0.0.2; pytest: --pop3-source-address)"
        )
    try:
        with socket.socket() as probe:
            probe.bind((address, 0))
    except OSError as error:
        unimplemented(f"cannot bind {address}: {error}")
    return address


def open_raw(target: Target, mode: str = "plain", timeout: float = 10.0) -> tuple[Pop3Client, bytes]:
    """A connected client (TLS first for ``implicit``) and its greeting line,
    raw and not judged: b"" if the server closed (or reset) before a line.
    Connection and handshake errors propagate."""
    if (target.pop3s if mode == "implicit" else target.pop3) is None:
        unimplemented(f"no {mode} endpoint")
    client = target.client(mode, timeout=timeout)
    try:
        client.connect_without_greeting()
        try:
            return client, client.read_line()
        except SERVER_CLOSED:
            return client, b""
    except BaseException:
        client.close()
        raise


def read_line(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """One SMTP line (up to LF) from a socket, b"" or a partial line at EOF."""
    line = b""
    while not line.endswith(b"\n") and len(line) < limit:
        try:
            byte = sock.recv(1)
        except SERVER_CLOSED:
            break
        if not byte:
            break
        line += byte
    return line


# ------------------------------------------------ ALIVE + no state change


def maildrop_state(client: Pop3Client) -> Counter[tuple[str, int]]:
    """(UIDL or "", size) of every message: the maildrop as a multiset."""
    sizes = client.list()
    try:
        uids = client.uidl()
    except ErrResponse:
        uids = {}
    return Counter((uids.get(number, ""), size) for number, size in sizes.items())


def canary_state(target: Target, mode: str, patience: float = 15.0) -> Counter[tuple[str, int]]:
    """ALIVE: a fresh connection gets +OK and the canary (target user) logs
    in, retrying up to ``patience`` s (a lock being released, a flood being
    reaped); its maildrop state.  Raises CaseFailure if not alive."""
    deadline = time.monotonic() + patience
    last = ""
    while True:
        client = target.client(mode, timeout=20)
        try:
            greeting = client.connect()
            if not greeting.ok:
                last = f"greeting {greeting.raw!r}"
            else:
                client.user(target.user.user)
                reply = client.pass_(target.user.password, check=False)
                if reply.ok:
                    state = maildrop_state(client)
                    client.quit()
                    return state
                last = f"canary login: {reply.raw!r}"
        except ssl.SSLCertVerificationError:
            raise  # our trust setting, not a dead server: graded ERROR
        except (OSError, Pop3ClientError, MalformedResponse) as error:
            # Refused, reset, closed, silent, -ERR or garbage: not (yet) alive.
            last = f"{type(error).__name__}: {error}"
        finally:
            client.close()
        if time.monotonic() > deadline:
            raise CaseFailure(
                "ALIVE: a fresh connection must get +OK and the canary login must work after the probe",
                "+OK greeting, canary login +OK",
                last,
            )
        time.sleep(0.3)


def forgive(pop: Any, target: Target) -> None:
    """After a deliberate failed login against a third-party server, one
    successful canary login from the same address: Dovecot's auth penalty
    (2 s doubling to 15 s per failure from one address) is cleared by a
    success, so a probe making several failures stays fast.  A no-op on
    the embedded server (its fixed failure delay is 0.1 s)."""
    if target.embedded:
        return
    from pop3suite.conformance.helpers import login_when_unlocked, quit_and_wait

    with contextlib.suppress(OSError, ErrResponse):
        quit_and_wait(login_when_unlocked(pop, target))
