"""fetchmail and mpop, real clients from Debian's packages, against the
reference server: APOP, plain, STLS and implicit TLS, keep and delete."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.realclient

MESSAGE = b"Subject: real client\r\nX-Test: 1\r\n\r\n.leading dot\r\n..two dots\r\n+OK fake\r\nend\r\n"


def _lf(data: bytes) -> bytes:
    """Local delivery agents write LF line ends."""
    return data.replace(b"\r\n", b"\n")


def _require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (./dev test installs it from Debian's packages)")
    return path


def _fetchmail(
    tmp_path: Path, port: int, user: str, proto: str, extra: str
) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out.eml"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        "set no bouncemail\nset invisible\n"
        f'poll 127.0.0.1 port {port} proto {proto} user {user} password "{PASSWORD}" is root here '
        f"{extra} mda \"/bin/sh -c 'cat > {out}'\"\n"
    )
    rc.chmod(0o600)
    result = subprocess.run(
        [_require("fetchmail"), "-f", str(rc), "--nosyslog", "-v", "-i", str(tmp_path / "ids")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    return result, out


@pytest.mark.parametrize(
    ("mode", "user", "options"),
    [
        ("apop", "carol", 'keep sslproto ""'),
        ("plain", "alice", 'keep sslproto ""'),
        ("stls", "alice", "keep sslproto TLS1.2+ sslcertck sslcertfile {ca} sslcommonname localhost"),
        ("implicit", "alice", "keep ssl sslcertck sslcertfile {ca} sslcommonname localhost"),
    ],
)
def test_fetchmail_retrieves_byte_exact(mode, user, options, server, lab, deliver, tmp_path):
    """fetchmail logs in (APOP, USER/PASS, STLS, implicit TLS) and gets the
    message byte for byte (RFC 1939 §7, RFC 2595, RFC 8314)."""
    deliver(user, MESSAGE)
    port = server.port("pop3s" if mode == "implicit" else "pop3")
    proto = "APOP" if mode == "apop" else "POP3"
    result, out = _fetchmail(tmp_path, port, user, proto, options.format(ca=lab.ca_file))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert out.read_bytes() == _lf(MESSAGE)
    if mode == "apop":
        assert "APOP carol" in result.stderr + result.stdout


def test_fetchmail_delete_mode_empties_mailbox(server, deliver, tmp_path, connect):
    """fetchmail without 'keep' deletes after retrieval: DELE + QUIT removes
    exactly what it fetched (RFC 1939 §6)."""
    deliver("alice", MESSAGE)
    result, out = _fetchmail(tmp_path, server.port(), "alice", "POP3", 'sslproto ""')
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.read_bytes() == _lf(MESSAGE)
    pop = connect()
    pop.login("alice", PASSWORD)
    assert pop.stat() == (0, 0)


def _mpop(tmp_path: Path, port: int, user: str, *options: str) -> tuple[subprocess.CompletedProcess, Path]:
    maildir = tmp_path / "md"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            _require("mpop"),
            "--host=127.0.0.1",
            f"--port={port}",
            f"--user={user}",
            f"--passwordeval=echo '{PASSWORD}'",
            f"--delivery=maildir,{maildir}",
            "--only-new=off",
            "--received-header=off",
            f"--uidls-file={tmp_path / 'uidls'}",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    return result, maildir / "new"


@pytest.mark.parametrize(
    ("mode", "user", "options"),
    [
        ("apop", "carol", ("--auth=apop", "--tls=off", "--keep=on")),
        ("user", "alice", ("--auth=user", "--tls=off", "--keep=on")),
        (
            "stls",
            "alice",
            ("--auth=user", "--tls=on", "--tls-starttls=on", "--tls-trust-file={ca}", "--keep=on"),
        ),
        ("implicit", "alice", ("--auth=plain", "--tls=on", "--tls-starttls=off", "--tls-trust-file={ca}")),
    ],
)
def test_mpop_retrieves_byte_exact(mode, user, options, server, lab, deliver, tmp_path, connect):
    """mpop logs in (APOP, USER, SASL PLAIN over implicit TLS, STLS) and
    delivers the message byte for byte; without --keep it deletes."""
    deliver(user, MESSAGE)
    port = server.port("pop3s" if mode == "implicit" else "pop3")
    result, new = _mpop(tmp_path, port, user, *(o.format(ca=lab.ca_file) for o in options))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    files = list(new.iterdir())
    assert len(files) == 1
    assert files[0].read_bytes() == _lf(MESSAGE)
    pop = connect()
    pop.login(user, PASSWORD) if user != "carol" else pop.apop(user, PASSWORD)
    assert pop.stat()[0] == (1 if "--keep=on" in options else 0)
