"""mutt's ``<fetch-mail>``: POP3 into a local Maildir, driven through a pty.

mutt is interactive, so it runs under ``script -qec`` (a pty) with the keys
pushed on the command line (``push <fetch-mail><quit>``) and a private
muttrc (``-n`` skips the system one).  ``ssl_ca_certificates_file`` makes it
verify against the test CA instead of asking about an unknown certificate.
``pop_authenticators`` names the one login to use and
``pop_auth_try_all = no`` keeps it from trying others.  mutt's fetch
converts CRLF to LF when it writes the Maildir.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from urllib.parse import quote

from .base import Client, ClientFailed, Login, first_line, lf_form, make_maildir, read_maildir, run, which

#: mutt built with GNU SASL (Debian's) passes the authenticator name to
#: gsasl as the mechanism, so "sasl" finds no mechanism ("mutt_gsasl_get_mech()
#: returned no usable mech"): name the SASL mechanism itself.
_AUTH = {"user": "user", "apop": "apop", "sasl": "plain"}


def _muttstr(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$") + '"'


class Mutt(Client):
    name = "mutt"
    package = "mutt"
    auths = ("user", "apop", "sasl")
    normalisation = "LF line ends: mutt's fetch-mail writes the Maildir with LF"
    configuration = (
        "muttrc: set mbox_type=Maildir, folder=DIR, spoolfile=DIR/md, "
        'pop_host="pop[s]://USER@HOST:PORT/", pop_pass, pop_delete=yes|no, pop_last=no, '
        "pop_authenticators=user|apop|plain, pop_auth_try_all=no, ssl_starttls=yes|no, "
        "ssl_force_tls=yes|no, ssl_ca_certificates_file=CA, certificate_file=DIR/certs, quit=yes, "
        "move=no; run as: script -qec \"mutt -n -F MUTTRC -e 'push <fetch-mail><quit>'\" /dev/null "
        "with TERM=xterm"
    )

    def available(self) -> str | None:
        if not which("mutt"):
            return "mutt is not installed (apt-get install mutt)"
        if not which("script"):
            return "script (bsdutils) is missing: mutt needs a pty"
        return None

    def version(self) -> str:
        return first_line(run([which("mutt") or "mutt", "-v"]).stdout)

    def stored_form(self, wire: bytes) -> bytes:
        return lf_form(wire)

    def retrieve(self, target: Login, mode: str, auth: str, behaviour: str, workdir: Path) -> list[bytes]:
        maildir = make_maildir(workdir / "md")
        scheme = "pops" if mode == "implicit" else "pop"
        host = target.host if ":" not in target.host else f"[{target.host}]"
        settings = {
            "mbox_type": "Maildir",
            "folder": str(workdir),
            "spoolfile": str(maildir),
            "pop_host": f"{scheme}://{quote(target.user, safe='')}@{host}:{target.port}/",
            "pop_pass": target.password,
            "pop_delete": "yes" if behaviour == "delete" else "no",
            "pop_last": "no",
            "pop_authenticators": _AUTH[auth],
            "pop_auth_try_all": "no",
            "ssl_starttls": "yes" if mode == "stls" else "no",
            "ssl_force_tls": "yes" if mode in ("stls", "implicit") else "no",
            "certificate_file": str(workdir / "certs"),
            "header_cache": "",
            "quit": "yes",
            "move": "no",
            "mail_check": "0",
            "timeout": "5",
        }
        if target.cafile:
            settings["ssl_ca_certificates_file"] = target.cafile
        muttrc = workdir / "muttrc"
        muttrc.write_text("".join(f"set {key}={_muttstr(value)}\n" for key, value in settings.items()))
        muttrc.chmod(0o600)
        command = shlex.join(
            [which("mutt") or "mutt", "-n", "-F", str(muttrc), "-e", "push <fetch-mail><quit>"]
        )
        env = {**os.environ, "HOME": str(workdir), "TERM": "xterm", "COLUMNS": "200", "LINES": "50"}
        result = run(["script", "-qec", command, "/dev/null"], env=env, timeout=180, what="mutt")
        messages = read_maildir(maildir)
        if not messages:
            raise ClientFailed("mutt fetched nothing", _screen(result.stdout))
        return messages


def _screen(output: str) -> str:
    """mutt's screen output without the terminal escape sequences."""
    import re

    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]|\r", "\n", output)
    return "\n".join(line for line in text.splitlines() if line.strip())[-2000:]
