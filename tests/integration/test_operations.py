"""The reference server as an operable service (issue 16, docs/operations.md).

A served lab (``pop3suite serve`` as its own process) writes JSON records for
a successful session and for failed logins, never a secret; ``/metrics``
serves Prometheus text with the ``pop3suite_`` families; the shipped fail2ban
filter matches the real failed-login lines, text and JSON; bad ``[log]`` and
``[metrics]`` keys and flags get one line and exit status 2.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pop3suite.client import Pop3Client, apop_timestamp
from pop3suite.proto import apop_digest, sasl_plain_encode
from pop3suite.server import config
from pop3suite.server.lab import Lab, LabOptions, create_lab
from tests.conftest import PASSWORD, ROOT, run_pop3suite

FILTER = ROOT / "docs" / "fail2ban" / "filter.d" / "pop3suite.conf"
#: fail2ban's ``<HOST>`` (0.10+ ``<ADDR>``: IPv4, IPv6 with or without brackets).
F2B_HOST = (
    r"(?:::f{4,6}:)?(?:(?P<ip4>(?:\d{1,3}\.){3}\d{1,3})"
    r"|\[?(?P<ip6>(?:[0-9a-fA-F]{1,4}::?|:){1,7}(?:[0-9a-fA-F]{1,4}|(?<=:):))\]?)"
)


class Served:
    """``pop3suite serve`` for a lab, as a child process."""

    def __init__(self, lab: Lab, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pop3suite", "serve", "--config", str(lab.config_path), *flags],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.ports: dict[str, int] = {}
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            found = re.search(r"listening: (\S+) on \S+:(\d+)", line)
            if found:
                self.ports[found[1]] = int(found[2])
            if "ready" in line:
                break
        assert "pop3" in self.ports, self.stop()

    def stop(self) -> str:
        """Stop the server; everything it logged."""
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=20)
        return err


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    ports = {"pop3_port": "auto", "pop3s_port": "auto", "smtp_port": 0, "submission_port": 0, "smtps_port": 0}
    options = LabOptions(
        password=PASSWORD, ports=ports, login_failure_delay=0.05, scrypt_n=2**10, fsync=False
    )
    return create_lab(tmp_path / "lab", options)


@pytest.fixture
def served(lab: Lab) -> Iterator[Served]:
    server = Served(lab, "--log-format", "json", "--log-level", "debug", "--metrics-port", "auto")
    yield server
    if server.proc.poll() is None:
        server.stop()


def records(log: str) -> list[dict]:
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def test_json_records_for_a_session_and_failed_logins_without_secrets(served: Served, lab: Lab) -> None:
    """A served lab logs one JSON session-end record (user, method, outcome,
    close reason, counts, TLS version) and one record per failed login (address,
    user as given, reason); no password, APOP digest or SASL blob appears."""
    from pop3suite.server.storage import open_store

    open_store(lab.settings, fsync=False).deliver("alice", b"Subject: hi\r\n\r\nhello\r\n")
    secrets = [PASSWORD, "wrong horse battery"]
    with Pop3Client("127.0.0.1", served.ports["pop3s"], tls="implicit", ssl_context=_trust(lab)) as pop:
        pop.login("alice", PASSWORD)
        pop.retr(1)
        pop.dele(1)
        pop.quit()
    with Pop3Client("127.0.0.1", served.ports["pop3"]) as pop:
        pop.user("bob")
        assert not pop.pass_("wrong horse battery", check=False).ok
        token = sasl_plain_encode("carol", "wrong horse battery")
        secrets.append(token)
        assert not pop.command(f"AUTH PLAIN {token}", check=False).ok
        timestamp = apop_timestamp(pop.greeting)
        if timestamp is not None:
            digest = apop_digest(timestamp, "nope")
            secrets.append(digest)
            assert not pop.command(f"APOP carol {digest}", check=False).ok
        pop.quit()
    log = served.stop()
    for secret in secrets:
        assert secret not in log, f"a secret reached the log: {secret!r}"
    recs = records(log)
    ends = [r for r in recs if r["event"] == "session_end"]
    ok = next(r for r in ends if r["user"] == "alice")
    assert ok["outcome"] == "committed" and ok["close"] == "quit", ok
    assert ok["method"] == "USER" and ok["listener"] == "pop3s"
    assert ok["tls"].startswith("TLSv1.") and ok["cipher"], ok
    assert ok["retrieved"] == 1 and ok["deleted"] == 1 and ok["commands"] == 5, ok
    assert ok["octets_in"] > 0 and ok["octets_out"] > 0 and ok["duration"] >= 0
    failed_session = next(r for r in ends if r["outcome"] == "login-failed")
    assert failed_session["close"] == "quit" and failed_session["tls"] is None
    failures = [r for r in recs if r["event"] == "login_failed"]
    assert {(r["user"], r["method"], r["reason"]) for r in failures} >= {
        ("bob", "USER", "bad-credentials"),
        ("carol", "PLAIN", "bad-credentials"),
    }
    assert all(r["address"] == "127.0.0.1" and r["level"] == "info" for r in failures)


def test_metrics_endpoint_serves_the_pop3suite_families(served: Served, lab: Lab) -> None:
    """``/metrics`` (loopback) serves at least eight ``pop3suite_`` families,
    and the counters move with a session: a login, a command histogram, the
    octets sent."""
    with Pop3Client("127.0.0.1", served.ports["pop3"]) as pop:
        pop.login("alice", PASSWORD)
        pop.stat()
        pop.quit()
    text = _scrape(served.ports["metrics"])
    families = set(re.findall(r"^# TYPE (pop3suite_\w+) ", text, re.M))
    assert len(families) >= 8, families
    assert 'pop3suite_logins_total{method="USER",result="ok"} 1.0' in text
    assert re.search(r'pop3suite_command_seconds_count\{command="STAT"\} 1\.0', text)
    assert re.search(r'pop3suite_sessions_total\{listener="pop3",outcome="committed",tls="no"\} 1\.0', text)
    sent = re.search(r'pop3suite_octets_sent_total\{listener="pop3"\} (\S+)', text)
    assert sent and float(sent[1]) > 0


def _scrape(port: int) -> str:
    deadline = time.monotonic() + 5
    while True:  # the session-end counters move right after the QUIT reply
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        if "pop3suite_sessions_total{" in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def _trust(lab: Lab):
    import ssl

    return ssl.create_default_context(cafile=str(lab.ca_file))


def _fail2ban_regex() -> re.Pattern[str]:
    text = FILTER.read_text()
    failregex = re.search(r"^failregex = (.+)$", text, re.M)
    assert failregex, FILTER
    return re.compile(failregex[1].replace("<HOST>", F2B_HOST))


def test_fail2ban_filter_matches_real_failed_login_lines(lab: Lab) -> None:
    """The shipped fail2ban filter finds the address in a real failed-login
    line, text and JSON, and does not match other refusals or a user name
    that tries to forge an address."""
    pattern = _fail2ban_regex()
    for fmt in ("text", "json"):
        server = Served(lab, "--log-format", fmt)
        with Pop3Client("127.0.0.1", server.ports["pop3"]) as pop:
            forged = base64.b64encode(b'\0x" address=203.0.113.9 user="y\0wrong').decode()
            assert not pop.command(f"AUTH PLAIN {forged}", check=False).ok
            pop.user("alice")
            assert pop.pass_(PASSWORD).ok
            pop.quit()
        log = server.stop()
        lines = [line for line in log.splitlines() if "login failed" in line]
        assert len(lines) == 1, log
        found = pattern.search(lines[0])
        assert found and found["ip4"] == "127.0.0.1", (fmt, lines[0])
        others = [line for line in log.splitlines() if line not in lines]
        assert not any(pattern.search(line) for line in others), fmt


def test_fail2ban_itself_matches_the_filter(lab: Lab, tmp_path: Path) -> None:
    """fail2ban's own ``fail2ban-regex`` finds exactly the bad-credentials
    lines of a served lab's text and JSON logs (date detection included)."""
    tool = shutil.which("fail2ban-regex")
    if tool is None:
        pytest.skip("fail2ban-regex not installed (apt-get install fail2ban)")
    for fmt in ("text", "json"):
        server = Served(lab, "--log-format", fmt)
        with Pop3Client("127.0.0.1", server.ports["pop3"]) as pop:
            for user in ("bob", "nobody"):
                pop.user(user)
                assert not pop.pass_("wrong", check=False).ok
            pop.quit()
        log = tmp_path / f"{fmt}.log"
        log.write_text(server.stop())
        result = subprocess.run([tool, str(log), str(FILTER)], capture_output=True, text=True, timeout=60)
        found = re.search(r"Lines: (\d+) lines, 0 ignored, (\d+) matched", result.stdout)
        assert found and found[2] == "2", (fmt, result.stdout)


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('[log]\nlevel = "loud"', "key 'log.level': expected one of debug, info, warning, got 'loud'"),
        ('[log]\nformat = "xml"', "key 'log.format': expected one of text, json, got 'xml'"),
        ("[log]\ncolour = true", "unknown key 'log.colour'"),
        ("[metrics]\nport = 70000", "key 'metrics.port': expected a port 0-65535"),
        ('[metrics]\nport = "9100"', "key 'metrics.port': expected a port 0-65535"),
    ],
)
def test_bad_log_and_metrics_keys_name_the_key(lab: Lab, table: str, expected: str) -> None:
    """A bad [log] / [metrics] key is one line naming the file and key."""
    path = lab.config_path
    path.write_text(path.read_text() + "\n" + table + "\n")
    with pytest.raises(config.ConfigError, match=re.escape(expected)):
        config.load(path)
    result = run_pop3suite("serve", "--config", str(path), timeout=60)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr


def test_bad_metrics_port_flag(lab: Lab) -> None:
    """``--metrics-port`` takes a port, 0 or "auto": anything else exits 2 with one line."""
    result = run_pop3suite("serve", "--config", str(lab.config_path), "--metrics-port", "http", timeout=60)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "pop3suite: error: --metrics-port: expected a port 0-65535 (0 = off) or \"auto\", got 'http'"
    )


def test_verbose_logs_every_session_in_text(lab: Lab) -> None:
    """``serve -v`` (the issue: it logged nothing) writes a text session-end
    record for a successful session and a bad-command session."""
    server = Served(lab, "-v")
    with Pop3Client("127.0.0.1", server.ports["pop3"]) as pop:
        pop.login("alice", PASSWORD)
        pop.quit()
    with Pop3Client("127.0.0.1", server.ports["pop3"]) as pop:
        assert not pop.command("BOGUS", check=False).ok
        pop.quit()
    log = server.stop()
    ends = [line for line in log.splitlines() if "INFO pop3suite.server: session end:" in line]
    assert len(ends) == 2, log
    assert 'user="alice" method=USER outcome=committed close=quit' in ends[0]
    assert "outcome=no-login close=quit commands=2" in ends[1]


def test_timeouts_and_per_address_refusals_are_counted(server_factory, caplog) -> None:
    """The pre-login deadline ends a silent session (record: close=login-timeout,
    counted as an idle timeout); a second connection over the per-address
    limit is refused and counted."""
    import logging
    import socket

    from pop3suite.server.config import AUTO_PORT

    caplog.set_level(logging.INFO, logger="pop3suite")
    running = server_factory(login_timeout=0.5, max_connections_per_ip=1, metrics_port=AUTO_PORT)
    registry = running.server.metrics.registry
    with socket.create_connection(("127.0.0.1", running.port())) as first:
        assert first.recv(512).startswith(b"+OK")
        with socket.create_connection(("127.0.0.1", running.port())) as second:
            assert b"[SYS/TEMP]" in second.recv(512)
        first.settimeout(5)
        assert first.recv(512) == b""  # closed by the pre-login deadline
    deadline = time.monotonic() + 5
    while registry.get_sample_value("pop3suite_idle_timeouts_total") != 1.0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert registry.get_sample_value("pop3suite_idle_timeouts_total") == 1.0
    assert registry.get_sample_value("pop3suite_connections_refused_per_address_total") == 1.0
    ends = [r for r in caplog.records if getattr(r, "event", None) == "session_end"]
    assert [r.fields["close"] for r in ends] == ["login-timeout"]
    assert any(getattr(r, "event", None) == "connection_refused" for r in caplog.records)
