"""mpop, delivering into a Maildir.

``--only-new=off`` so every message is fetched whatever mpop remembers,
``--received-header=off`` so it adds no Received: header, and an explicit
``--auth`` (user, apop or plain) so the login is the one the cell names.
mpop's Maildir delivery writes LF line ends.

mpop 1.4.18 refuses an APOP timestamp containing ``=`` ("POP3 server does
not support authentication method APOP"), although ``=`` is legal in a
msg-id (RFC 5322 atext) and Dovecot's timestamps end in
base64 padding.  That stays a failure (users hit it); the driver reads the
server's greeting and says so in the cell's note.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from pathlib import Path

from pop3suite.client import Pop3Client, Pop3ClientError, apop_timestamp

from .base import Client, ClientFailed, Login, first_line, lf_form, make_maildir, read_maildir, run, which

_AUTH = {"user": "user", "apop": "apop", "sasl": "plain"}


class Mpop(Client):
    name = "mpop"
    package = "mpop"
    auths = ("user", "apop", "sasl")
    normalisation = "LF line ends: mpop's Maildir delivery stores LF"
    configuration = (
        "mpop --host=HOST --port=PORT --user=U --passwordeval='cat FILE' --auth=user|apop|plain "
        "--tls=off (plain) | --tls=on --tls-starttls=on --tls-trust-file=CA (stls) | "
        "--tls=on --tls-starttls=off --tls-trust-file=CA (implicit) --tls-host-override=localhost "
        "--delivery=maildir,DIR --only-new=off --received-header=off --keep=on|off --uidls-file=FILE"
    )

    def available(self) -> str | None:
        return None if which("mpop") else "mpop is not installed (apt-get install mpop)"

    def version(self) -> str:
        return first_line(run([which("mpop") or "mpop", "--version"]).stdout)

    def stored_form(self, wire: bytes) -> bytes:
        return lf_form(wire)

    def retrieve(self, target: Login, mode: str, auth: str, behaviour: str, workdir: Path) -> list[bytes]:
        maildir = make_maildir(workdir / "md")
        secret = workdir / "password"
        secret.write_text(target.password)
        secret.chmod(0o600)
        argv = [
            which("mpop") or "mpop",
            f"--host={target.host}",
            f"--port={target.port}",
            f"--user={target.user}",
            f"--passwordeval=cat '{secret}'",
            f"--auth={_AUTH[auth]}",
            f"--delivery=maildir,{maildir}",
            "--only-new=off",
            "--received-header=off",
            f"--keep={'on' if behaviour == 'keep' else 'off'}",
            f"--uidls-file={workdir / 'uidls'}",
        ]
        if mode == "plain":
            argv.append("--tls=off")
        else:
            argv += [
                "--tls=on",
                f"--tls-starttls={'on' if mode == 'stls' else 'off'}",
                f"--tls-trust-file={target.cafile}",
            ]
            if target.server_hostname != target.host:
                argv.append(f"--tls-host-override={target.server_hostname}")
        try:
            run(argv, env={**os.environ, "HOME": str(workdir)}, timeout=180)
        except ClientFailed as exc:
            stamp = _timestamp(target) if "authentication method APOP" in exc.output else None
            if stamp and "=" in stamp:
                raise ClientFailed(
                    f"{exc.summary}: known mpop bug, it refuses the APOP timestamp {stamp} "
                    "because it contains '=' (legal in a msg-id, RFC 5322 atext)",
                    exc.output,
                ) from exc
            raise
        return read_maildir(maildir)


def _timestamp(target: Login) -> str | None:
    """The APOP timestamp of the server's greeting (None if unreadable)."""
    implicit = target.mode == "implicit"  # the greeting comes before STLS otherwise
    context = ssl.create_default_context(cafile=target.cafile) if implicit else None
    pop = Pop3Client(
        target.host,
        target.port,
        tls="implicit" if implicit else "none",
        ssl_context=context,
        server_hostname=target.server_hostname,
    )
    try:
        pop.connect()
        stamp = apop_timestamp(pop.greeting)
        with contextlib.suppress(OSError, Pop3ClientError):
            pop.quit()
        return stamp
    except (OSError, Pop3ClientError):
        return None
    finally:
        pop.close()
