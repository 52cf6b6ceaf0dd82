"""fetchmail, delivering each message to an MDA that writes one file.

Traps (see /work/shared/spec/real-peers.md): fetchmail upgrades to STLS on
its own unless ``sslproto ''``; it ignores IP-address SANs, so the
certificate is checked with ``sslcommonname`` (``localhost`` on loopback);
it needs an MDA.  ``set invisible`` keeps it from adding a Received:
header and ``no rewrite`` from touching addresses; it strips CR before
handing mail to an MDA, so the stored form has LF line ends.  fetchmail
speaks SASL only for CRAM-MD5, GSSAPI, NTLM, OTP and the like, never PLAIN.

The driver checks fetchmail's ``-v`` protocol trace: the login command must
be the one the cell names, and an STLS cell must show ``STLS``.  fetchmail
6.4.37 with ``proto APOP`` and ``sslproto TLS1.2+`` sends no CAPA and no
STLS, logs in with APOP in cleartext and exits 0; that cell fails.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import Client, ClientFailed, Login, first_line, lf_form, run, which


def _quote(text: str) -> str:
    """A fetchmailrc string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Fetchmail(Client):
    name = "fetchmail"
    package = "fetchmail"
    auths = ("user", "apop")
    unsupported_reasons = {
        "sasl": "fetchmail has no SASL PLAIN for POP3 (only CRAM-MD5, GSSAPI, NTLM, OTP...)"
    }
    normalisation = "LF line ends: fetchmail strips CR before handing mail to its MDA"
    configuration = (
        "set no bouncemail / set invisible; poll HOST port PORT proto POP3 auth password (user) | "
        "proto APOP (apop) user U password P is root here no rewrite fetchall keep|nokeep "
        "[sslproto '' (plain) | sslproto TLS1.2+ sslcertck sslcertfile CA sslcommonname localhost (stls) | "
        "ssl sslcertck sslcertfile CA sslcommonname localhost (implicit)] "
        "mda \"/bin/sh -c 'cat > $(mktemp DIR/msg.XXXXXX)'\"; run as fetchmail -f RC --nosyslog -v -i IDS"
    )

    def available(self) -> str | None:
        return None if which("fetchmail") else "fetchmail is not installed (apt-get install fetchmail)"

    def version(self) -> str:
        result = run([which("fetchmail") or "fetchmail", "--version"], ok_codes=(0, 1))
        for line in (result.stdout + result.stderr).splitlines():
            if line.startswith("This is fetchmail release"):
                return line.split("release", 1)[1].strip().split("+", 1)[0]
        return first_line(result.stdout)

    def stored_form(self, wire: bytes) -> bytes:
        return lf_form(wire)

    def retrieve(self, target: Login, mode: str, auth: str, behaviour: str, workdir: Path) -> list[bytes]:
        out = workdir / "mail"
        out.mkdir()
        if mode == "plain":
            tls = "sslproto ''"
        else:
            verify = (
                f"sslcertck sslcertfile {_quote(target.cafile or '')} "
                f"sslcommonname {_quote(target.server_hostname)}"
            )
            tls = f"sslproto TLS1.2+ {verify}" if mode == "stls" else f"ssl {verify}"
        proto = "proto APOP" if auth == "apop" else "proto POP3 auth password"
        rc = workdir / "fetchmailrc"
        rc.write_text(
            "set no bouncemail\nset invisible\n"
            f"poll {target.host} port {target.port} {proto}\n"
            f"  user {_quote(target.user)} password {_quote(target.password)} is root here\n"
            f"  no rewrite fetchall {'keep' if behaviour == 'keep' else 'nokeep'} {tls}\n"
            f"  mda \"/bin/sh -c 'cat > $(mktemp {out}/msg.XXXXXX)'\"\n"
        )
        rc.chmod(0o600)
        result = run(
            [
                which("fetchmail") or "fetchmail",
                "-f",
                str(rc),
                "--nosyslog",
                "-v",
                "-i",
                str(workdir / "ids"),
            ],
            env={**os.environ, "HOME": str(workdir)},
            timeout=180,
        )
        said = result.stdout + result.stderr
        wanted = "APOP " if auth == "apop" else "USER "
        if f"POP3> {wanted}" not in said:
            raise ClientFailed(f"fetchmail did not log in with {wanted.strip()}", _dialogue(said))
        if mode == "stls" and "POP3> STLS" not in said:
            # Seen with proto APOP: no CAPA, no STLS, APOP in cleartext, exit 0.
            raise ClientFailed(
                f"fetchmail did not use STLS (sslproto TLS1.2+ with {proto}): it logged in in cleartext",
                _dialogue(said),
            )
        return [p.read_bytes() for p in sorted(out.iterdir())]


def _dialogue(output: str, lines: int = 12) -> str:
    """The start of fetchmail's protocol trace: connect, greeting, login."""
    kept = [
        line.strip()
        for line in output.splitlines()
        if ("POP3>" in line or "POP3<" in line or "connect" in line) and " RETR " not in line
    ]
    return "\n".join(kept[:lines])
