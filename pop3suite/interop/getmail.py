"""getmail6, delivering into a Maildir, run as an unprivileged user.

getmail refuses to deliver as root, so it runs as ``nobody`` (via
``setpriv``) in a work directory that user owns.  It has no POP3 STLS and
no SASL for POP3.  ``delivered_to = false`` and ``received = false`` stop
two of the headers it adds; the ``Return-Path: <...>`` line it always
writes first cannot be turned off, so exactly that first line is stripped
before comparing (and the cell says so).  A Return-Path: line the served
message already had (Cyrus adds one at delivery) is dropped by getmail in
favour of its own, so the stored form omits it too.  It writes LF line ends.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from pop3suite.proto import split_message

from .base import Client, ClientFailed, Login, first_line, lf_form, make_maildir, read_maildir, run, which

RUN_AS = "nobody"


class Getmail(Client):
    name = "getmail"
    package = "getmail6"
    modes = ("plain", "implicit")
    auths = ("user", "apop")
    unsupported_reasons = {
        "stls": "getmail6 has no STLS for POP3 (only implicit TLS)",
        "sasl": "getmail6 has no SASL login for POP3",
    }
    normalisation = (
        "LF line ends; the Return-Path: header getmail always adds first is stripped "
        "(it cannot be turned off; getmail drops a Return-Path: the message had, e.g. Cyrus's)"
    )
    configuration = (
        "[retriever] type = SimplePOP3Retriever (plain) | SimplePOP3SSLRetriever with ca_certs = CA, "
        "ssl_cert_hostname = localhost (implicit); server, port, username, password; use_apop = true (apop). "
        "[destination] type = Maildir, path = DIR/. [options] read_all = true, delete = true|false, "
        "delivered_to = false, received = false, verbose = 2. "
        f"Run as: setpriv --reuid={RUN_AS} --regid=nogroup --clear-groups "
        "getmail --rcfile RC --getmaildir DIR"
    )

    def available(self) -> str | None:
        if not which("getmail"):
            return "getmail6 is not installed (apt-get install getmail6)"
        if os.geteuid() == 0 and not which("setpriv"):
            return "running as root and setpriv (util-linux) is missing: getmail refuses to deliver as root"
        return None

    def version(self) -> str:
        return first_line(run([which("getmail") or "getmail", "--version"]).stdout)

    def stored_form(self, wire: bytes) -> bytes:
        """LF line ends, and no Return-Path: line: getmail drops the message's
        own (its value becomes the first line getmail writes, which is stripped)."""
        stored = lf_form(wire)
        head, body = split_message(stored)
        kept = b"".join(
            line for line in head.splitlines(keepends=True) if not line.lower().startswith(b"return-path:")
        )
        return kept + (b"\n" + body if head != stored else b"")

    def retrieve(self, target: Login, mode: str, auth: str, behaviour: str, workdir: Path) -> list[bytes]:
        maildir = make_maildir(workdir / "md")
        retriever = "SimplePOP3SSLRetriever" if mode == "implicit" else "SimplePOP3Retriever"
        lines = [
            "[retriever]",
            f"type = {retriever}",
            f"server = {target.host}",
            f"port = {target.port}",
            f"username = {target.user}",
            f"password = {target.password}",
            f"use_apop = {'true' if auth == 'apop' else 'false'}",
        ]
        if mode == "implicit":
            lines += [f"ca_certs = {target.cafile}", f"ssl_cert_hostname = {target.server_hostname}"]
        lines += [
            "[destination]",
            "type = Maildir",
            f"path = {maildir}/",
            "[options]",
            "read_all = true",
            f"delete = {'true' if behaviour == 'delete' else 'false'}",
            "delivered_to = false",
            "received = false",
            "verbose = 2",
        ]
        rc = workdir / "getmailrc"
        rc.write_text("\n".join(lines) + "\n")
        argv = [which("getmail") or "getmail", "--rcfile", str(rc), "--getmaildir", str(workdir)]
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS)
            for path in (workdir, rc, *maildir.rglob("*"), maildir):
                os.chown(path, user.pw_uid, user.pw_gid)
            argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *argv]
        rc.chmod(0o600)
        try:
            result = run(argv, env={**os.environ, "HOME": str(workdir)}, timeout=180, what="getmail")
        except ClientFailed as exc:
            if "does not uniquely identify messages" in exc.output:
                raise ClientFailed(
                    f"{exc.summary}: the server gave two messages the same UIDL "
                    "(RFC 1939 §7 wants unique-ids); getmail's SimplePOP3Retriever refuses that",
                    exc.output,
                ) from exc
            raise
        if "error" in result.stderr.lower():
            raise ClientFailed("getmail reported an error", result.stdout[-1000:] + result.stderr[-2000:])
        messages = []
        for message in read_maildir(maildir):
            if not message.startswith(b"Return-Path: "):
                raise ClientFailed(
                    "getmail stored a message without its Return-Path: line", repr(message[:200])
                )
            messages.append(message.split(b"\n", 1)[1])
        return messages
