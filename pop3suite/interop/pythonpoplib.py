"""Python's standard ``poplib`` as a client, driven in-process.

poplib returns each message as lines without their CRLF; the driver joins
them with CRLF and ends with CRLF, which is the wire form after
dot-unstuffing, so the comparison is byte-exact.  poplib has no SASL
(AUTH) support.  Its line limit (``poplib._MAXLINE``, 2048) is left as it
ships: a server sending longer lines fails the cell, as it would fail
users.  STLS is sent directly rather than through ``POP3.stls()``, which
first insists on CAPA listing STLS: a server need not offer CAPA to a client
that asks for STLS, and that is the server's answer to judge.
"""

from __future__ import annotations

import platform
import poplib
import ssl
from pathlib import Path

from .base import Client, ClientFailed, Login


class PythonPoplib(Client):
    name = "poplib"
    auths = ("user", "apop")
    unsupported_reasons = {"sasl": "poplib has no AUTH (SASL) command"}
    configuration = (
        "poplib.POP3(host, port) [+ STLS sent directly, then context.wrap_socket] "
        "or poplib.POP3_SSL(host, port, context=...), "
        "context = ssl.create_default_context(cafile=CA), name checked against the address; "
        ".user()+.pass_() or .apop(); .stat(), .retr(n) for every n, .dele(n) (delete), .quit()"
    )

    def available(self) -> str | None:
        return None

    def version(self) -> str:
        return f"Python {platform.python_version()} poplib"

    def retrieve(self, target: Login, mode: str, auth: str, behaviour: str, workdir: Path) -> list[bytes]:
        context = ssl.create_default_context(cafile=target.cafile) if target.tls else None
        try:
            if mode == "implicit":
                pop: poplib.POP3 = poplib.POP3_SSL(target.host, target.port, context=context, timeout=60)
            else:
                pop = poplib.POP3(target.host, target.port, timeout=60)
        except (OSError, poplib.error_proto) as exc:
            raise ClientFailed(f"poplib could not connect: {exc}") from exc
        try:
            if mode == "stls":
                _stls(pop, context)
            if auth == "apop":
                pop.apop(target.user, target.password)
            else:
                pop.user(target.user)
                pop.pass_(target.password)
            count, _ = pop.stat()
            messages = []
            for number in range(1, count + 1):
                _, lines, _ = pop.retr(number)
                messages.append(b"\r\n".join(lines) + b"\r\n")
                if behaviour == "delete":
                    pop.dele(number)
            pop.quit()
            return messages
        except (OSError, poplib.error_proto) as exc:
            raise ClientFailed(f"poplib: {exc}") from exc
        finally:
            pop.close()


def _stls(pop: poplib.POP3, context: ssl.SSLContext | None) -> None:
    """STLS (RFC 2595 §4) without poplib's CAPA precondition; then TLS on the socket."""
    pop._shortcmd("STLS")  # raises error_proto on -ERR
    context = context or ssl.create_default_context()
    pop.sock = context.wrap_socket(pop.sock, server_hostname=pop.host)
    pop.file = pop.sock.makefile("rb")
    pop._tls_established = True
