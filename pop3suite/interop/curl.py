"""curl as a POP3 client: LIST, then ``RETR`` of every message by URL globbing.

curl picks its login by what the server offers: SASL first, then APOP (if
the greeting has a timestamp), then USER/PASS, and never falls back.
``--login-options AUTH=PLAIN`` / ``AUTH=+APOP`` force SASL PLAIN / APOP;
nothing forces USER/PASS, so the ``user`` cell runs with curl's default and
is reported unsupported when curl chose something else (read from its
``-v`` trace).  Delete is a second URL set (``--next -X DELE -I``) on the
same invocation: the DELEs are committed by curl's QUIT.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

from .base import CellUnsupported, Client, ClientFailed, Login, first_line, run, which

_LOGIN_OPTIONS = {
    "user": [],
    "apop": ["--login-options", "AUTH=+APOP"],
    "sasl": ["--login-options", "AUTH=PLAIN"],
}
_LOGIN_COMMAND = {"user": "> USER ", "apop": "> APOP ", "sasl": "> AUTH PLAIN"}


class Curl(Client):
    name = "curl"
    package = "curl"
    auths = ("user", "apop", "sasl")
    configuration = (
        "curl -sS -v --max-time 120 --user USER:PASS [--login-options AUTH=+APOP | AUTH=PLAIN] "
        "[--ssl-reqd --cacert CA (stls) | --cacert CA with pop3s:// (implicit); TLS URLs name localhost, "
        "mapped to the address with --connect-to] "
        "pop3://HOST:PORT/ (LIST), then pop3://HOST:PORT/[1-N] -o DIR/#1.eml "
        "[--next -X DELE -I pop3://HOST:PORT/[1-N] (delete)]"
    )

    def available(self) -> str | None:
        return None if which("curl") else "the curl program is not installed (apt-get install curl)"

    def version(self) -> str:
        return first_line(run([which("curl") or "curl", "--version"]).stdout)

    def _common(self, target: Login, auth: str) -> list[str]:
        args = ["-sS", "-v", "--max-time", "120", "--user", f"{target.user}:{target.password}"]
        args += _LOGIN_OPTIONS[auth]
        if target.mode == "stls":
            args += ["--ssl-reqd"]
        if target.tls and target.cafile:
            args += ["--cacert", target.cafile]
        if target.tls and target.server_hostname != target.host:
            # Verify the certificate for the name it carries while connecting to the address.
            args += ["--connect-to", f"{target.server_hostname}:{target.port}:{target.host}:{target.port}"]
        return args

    def _url(self, target: Login, path: str) -> str:
        scheme = "pop3s" if target.mode == "implicit" else "pop3"
        host = target.server_hostname if target.tls else target.host
        return f"{scheme}://{quote(host)}:{target.port}/{path}"

    def retrieve(self, target: Login, mode: str, auth: str, behaviour: str, workdir: Path) -> list[bytes]:
        curl = which("curl") or "curl"
        common = self._common(target, auth)
        listing = run([curl, *common, self._url(target, "")], what="curl (LIST)")
        self._check_login(listing.stderr, auth)
        numbers = [int(m.group(1)) for m in re.finditer(r"^(\d+) \d+\r?$", listing.stdout, re.MULTILINE)]
        if not numbers:
            return []
        glob = f"[{min(numbers)}-{max(numbers)}]"
        out = workdir / "curl"
        out.mkdir(parents=True, exist_ok=True)
        argv = [curl, *common, self._url(target, glob), "-o", str(out / "#1.eml")]
        if behaviour == "delete":
            argv += ["--next", *common, "-X", "DELE", "-I", self._url(target, glob)]
        result = run(argv, what="curl (RETR)")
        self._check_login(result.stderr, auth)
        files = sorted(out.glob("*.eml"), key=lambda p: int(p.stem))
        if len(files) != len(numbers):
            raise ClientFailed(f"curl stored {len(files)} of {len(numbers)} messages", result.stderr[-2000:])
        return [p.read_bytes() for p in files]

    @staticmethod
    def _check_login(trace: str, auth: str) -> None:
        if _LOGIN_COMMAND[auth] in trace:
            return
        used = next((cmd for cmd in ("AUTH", "APOP", "USER") if f"> {cmd} " in trace), None)
        if auth == "user" and used:
            raise CellUnsupported(
                f"curl chose {used} (it prefers SASL, then APOP, and cannot be told to use USER/PASS)"
            )
        raise ClientFailed(f"curl did not log in with {auth}", trace[-2000:])
