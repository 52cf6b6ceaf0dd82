"""The ``pop3suite`` command as a user runs it: a real subprocess each time.

Errors a user can fix must exit 2 with one stderr line that names the file
(and the key), never a traceback; ``serve`` must answer POP3 and stop
cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pop3suite.client import Pop3Client
from pop3suite.netutil import free_port
from pop3suite.server import config, passwords
from pop3suite.server.lab import LabOptions, create_lab
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, stdin: bytes = b"", timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    """``python -m pop3suite ARGS`` from the project root."""
    return subprocess.run(
        [sys.executable, "-m", "pop3suite", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    """Exit 2, exactly one stderr line containing every needle, no traceback."""
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 2, (result.returncode, stderr)
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


# -------------------------------------------------------------------- init


def test_init_writes_config_and_ca_and_prints_paths(tmp_path):
    """init DIR writes DIR/pop3suite.toml and DIR/tls/ca.pem with the given ports and prints both paths."""
    lab = tmp_path / "lab"
    pop3, pop3s = free_port(), free_port()
    result = run(
        "init", str(lab), "--password", PASSWORD, "--pop3-port", str(pop3), "--pop3s-port", str(pop3s)
    )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    config_path, ca = lab.resolve() / "pop3suite.toml", lab.resolve() / "tls" / "ca.pem"
    assert config_path.is_file() and ca.is_file()
    assert str(config_path) in out and str(ca) in out
    assert PASSWORD not in out  # a given password is not echoed
    settings = config.load(config_path)
    assert (settings.pop3_port, settings.pop3s_port) == (pop3, pop3s)
    assert set(settings.accounts) >= {"alice", "bob", "carol"}
    assert passwords.verify_password(settings.accounts["alice"].password, PASSWORD.encode())
    assert result.stderr == b""


def test_init_refuses_to_overwrite(lab):
    """init on an existing lab exits 2 with one line and leaves the config untouched."""
    before = lab.config_path.read_bytes()
    result = run("init", str(lab.directory), "--password", "other")
    assert_one_line_error(result, "pop3suite.toml")
    assert lab.config_path.read_bytes() == before


def test_init_without_password_prints_a_working_generated_one(tmp_path):
    """init without --password generates a password, prints it, and it logs in."""
    lab = tmp_path / "lab"
    result = run("init", str(lab), "--pop3-port", str(free_port()), "--pop3s-port", "0")
    assert result.returncode == 0, result.stderr.decode()
    match = re.search(r"password:\s+(\S+)", result.stdout.decode())
    assert match, result.stdout.decode()
    settings = config.load(lab / "pop3suite.toml")
    assert passwords.verify_password(settings.accounts["alice"].password, match.group(1).encode())


def test_init_with_every_pop3_port_off_fails_cleanly(tmp_path):
    """init with both POP3 ports 0 exits 2 with one line, and leaves nothing that blocks a corrected rerun."""
    lab = tmp_path / "lab"
    result = run("init", str(lab), "--password", PASSWORD, "--pop3-port", "0", "--pop3s-port", "0")
    assert_one_line_error(result, "pop3_port")
    rerun = run("init", str(lab), "--password", PASSWORD, "--pop3-port", str(free_port()))
    assert rerun.returncode == 0, rerun.stderr.decode()


# ------------------------------------------------------------------- serve


def _read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float) -> bytes:
    """stdout of ``proc`` up to a line containing ``needle``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {needle!r} within {timeout} s; got {out!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 4096)
            assert chunk, f"serve exited early: {out!r}"
            out += chunk
    return out


def test_serve_answers_pop3_and_exits_zero_on_sigterm(lab, deliver, tls_context):
    """serve prints its listeners and "ready", serves both ports, exits 0 on SIGTERM without UPDATE."""
    deliver("alice", b"Subject: s\n\n.x\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pop3suite", "serve", "--config", str(lab.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        out = _read_until(proc, b"ready", 20).decode()
        # The lab's ports are "auto": serve reports the ones it bound.
        listening = dict(re.findall(r"listening: (\w+) on 127\.0\.0\.1:(\d+)", out))
        pop3, pop3s = int(listening["pop3"]), int(listening["pop3s"])
        with Pop3Client("127.0.0.1", pop3, timeout=5) as pop:
            pop.login("alice", PASSWORD)
            assert pop.retr(1) == b"Subject: s\r\n\r\n.x\r\n"
            assert pop.quit().ok
        with Pop3Client("127.0.0.1", pop3s, tls="implicit", ssl_context=tls_context, timeout=5) as pop:
            pop.login("bob", PASSWORD)
            assert pop.stat() == (0, 0)
        files = sorted((lab.settings.mail_root / "alice" / "new").iterdir())
        open_session = Pop3Client("127.0.0.1", pop3, timeout=5)
        open_session.connect()
        open_session.login("alice", PASSWORD)
        assert open_session.dele(1).ok  # then the server stops under it: no UPDATE
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        open_session.close()
        assert sorted((lab.settings.mail_root / "alice" / "new").iterdir()) == files
        assert proc.stderr is not None
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_on_busy_port_exits_2(tmp_path):
    """serve exits 2 with one stderr line when a configured port is taken."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        ports = {
            "pop3_port": "auto",
            "pop3s_port": busy,
            "smtp_port": 0,
            "submission_port": 0,
            "smtps_port": 0,
        }
        lab = create_lab(tmp_path / "busy", LabOptions(password=PASSWORD, ports=ports, scrypt_n=2**10))
        result = run("serve", "--config", str(lab.config_path), timeout=20)
    assert_one_line_error(result, str(busy))


# ----------------------------------------------------------------- deliver


def test_deliver_files_and_stdin_seen_byte_exact(lab, connect, tmp_path):
    """deliver of a.eml, b.eml and stdin stores mail a POP3 login then sees byte-exact (CRLF form)."""
    a = tmp_path / "a.eml"
    b = tmp_path / "b.eml"
    a.write_bytes(b"Subject: a\r\n\r\n.dot line\r\nbody a\r\n")
    b.write_bytes(b"Subject: b\n\nbare lf body\n..two dots")
    result = run("deliver", "--config", str(lab.config_path), "alice", str(a), str(b))
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().count("delivered") == 2
    piped = run(
        "deliver", "--config", str(lab.config_path), "alice@example.test", stdin=b"Subject: c\n\nstdin\n"
    )
    assert piped.returncode == 0, piped.stderr.decode()
    pop = connect("plain", timeout=5)
    pop.login("alice", PASSWORD)
    assert pop.stat()[0] == 3
    assert pop.retr(1) == b"Subject: a\r\n\r\n.dot line\r\nbody a\r\n"
    assert pop.retr(2) == b"Subject: b\r\n\r\nbare lf body\r\n..two dots\r\n"
    assert pop.retr(3) == b"Subject: c\r\n\r\nstdin\r\n"


@pytest.mark.parametrize(
    ("recipient", "needle"), [("mallory", "mallory"), ("alice@elsewhere.test", "elsewhere.test")]
)
def test_deliver_to_unknown_user_or_foreign_domain_fails(recipient, needle, lab):
    """deliver to an unknown account or a foreign domain exits 2 with one stderr line and stores nothing."""
    result = run("deliver", "--config", str(lab.config_path), recipient, stdin=b"Subject: x\r\n\r\nx\r\n")
    assert_one_line_error(result, needle)
    root = Path(lab.settings.mail_root)
    assert not any(root.glob("*/new/*")) and not any(root.glob("*/cur/*"))
    assert not (root / "mallory").exists()


# ---------------------------------------------------------- bad configs


def _alice_block_end(text: str) -> int:
    start = text.index("[accounts.alice]")
    return text.index("\n\n", start)


def _edit(name: str, text: str) -> str:
    if name == "wrong-type":
        return re.sub(r"(?m)^pop3_port = .*$", 'pop3_port = "abc"', text)
    if name == "port-out-of-range":
        return re.sub(r"(?m)^pop3_port = .*$", "pop3_port = 70000", text)
    if name == "unknown-key":
        return text.replace("[server]\n", "[server]\npop3port = 1100\n")
    if name == "bad-toml":
        return text.replace("[server]\n", "[server\n")
    if name == "missing-password":
        return re.sub(r'(?m)(\[accounts\.alice\]\n)password = "[^"\n]*"\n', r"\1", text)
    if name == "apop-with-hash":
        end = _alice_block_end(text)
        return text[:end] + "\napop = true" + text[end:]
    raise AssertionError(name)


BAD_CONFIGS = [
    ("wrong-type", "server.pop3_port"),
    ("port-out-of-range", "server.pop3_port"),
    ("unknown-key", "server.pop3port"),
    ("bad-toml", "line"),
    ("missing-password", "accounts.alice.password"),
    ("apop-with-hash", "accounts.alice.apop"),
]


BAD_CONFIG_CASES = [(name, key, "serve") for name, key in BAD_CONFIGS] + [
    (name, key, "deliver") for name, key in BAD_CONFIGS if name in ("wrong-type", "missing-password")
]


@pytest.mark.parametrize(
    ("name", "key", "command"),
    BAD_CONFIG_CASES,
    ids=[f"{name}-{command}" for name, _, command in BAD_CONFIG_CASES],
)
def test_bad_config_exits_2_with_one_line_naming_file_and_key(name, key, command, lab, tmp_path):
    """A bad config makes serve/deliver exit 2 with one stderr line naming file and key, no traceback."""
    original = lab.config_path.read_text()
    edited = _edit(name, original)
    assert edited != original, "the edit did not apply"
    bad = tmp_path / f"{name}.toml"
    bad.write_text(edited)
    args = (
        ["serve", "--config", str(bad)] if command == "serve" else ["deliver", "--config", str(bad), "alice"]
    )
    result = run(*args, stdin=b"Subject: x\r\n\r\nx\r\n", timeout=20)
    assert_one_line_error(result, str(bad.resolve()), key)
    assert result.stdout == b""


@pytest.mark.parametrize("command", ["serve", "deliver"])
def test_missing_config_file_exits_2(command, tmp_path):
    """A missing config file gives exit 2 and one stderr line naming it, no traceback."""
    missing = tmp_path / "nope" / "pop3suite.toml"
    args = (
        ["serve", "--config", str(missing)]
        if command == "serve"
        else ["deliver", "--config", str(missing), "alice"]
    )
    assert_one_line_error(run(*args), str(missing))
