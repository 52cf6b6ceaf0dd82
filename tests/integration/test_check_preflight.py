"""The verdicts a user acts on, against the real reference server (issue 14).

A target the suite cannot use (untrusted certificate, typo'd host, closed
port, ``http://`` URL, wrong password, unwritable ``--report``) is one line
naming the flag, exit status 2, within seconds, and no case runs.  A trust
failure that happens mid-run anyway is ERROR, not FAILED (exit 3).  A server
that answers a long line with something that is not a status line is
FAILED with Expected/Actual (exit 1), not read as "closed".
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from pop3suite.netutil import free_port
from tests.conftest import PASSWORD, ROOT, RunningServer, run_pop3suite

pytestmark = pytest.mark.timeout(300)

#: Pre-flight steps time out after 5 s; a failure must come well within this.
PREFLIGHT_BUDGET = 20.0
USER = f"alice:{quote(PASSWORD)}"


def check(*args: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = run_pop3suite("check", *args, timeout=timeout)
    return result, time.monotonic() - started


def assert_one_line_usage_error(result: subprocess.CompletedProcess[str], took: float, *words: str) -> str:
    """Exit 2, one line on stderr naming ``words``, no traceback, nothing ran."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "pop3suite conformance" not in result.stdout
    for word in words:
        assert word in lines[0], lines[0]
    assert took < PREFLIGHT_BUDGET, f"pre-flight took {took:.1f} s"
    return lines[0]


def test_pop3s_target_without_its_ca_names_cafile_and_insecure(server: RunningServer, lab, tmp_path: Path):
    """An implicit-TLS target whose CA the user forgot: exit 2 naming both fixes."""
    url = f"pop3s://{USER}@127.0.0.1:{server.port('pop3s')}"
    result, took = check(url, "--fast", "--report", str(tmp_path / "out"))
    line = assert_one_line_usage_error(result, took, "--cafile FILE", "--insecure", "not trusted")
    assert PASSWORD not in line and quote(PASSWORD) not in line  # never print the password
    assert not (tmp_path / "out" / "results.json").exists()


def test_typo_host_closed_port_and_http_url_are_one_line_each(server: RunningServer):
    """A host that does not resolve, a port nobody listens on, an http:// URL."""
    result, took = check(f"pop3://{USER}@no-such-host.invalid:110", "--fast")
    assert_one_line_usage_error(result, took, "cannot resolve", "no-such-host.invalid")
    result, took = check(f"pop3://{USER}@127.0.0.1:{free_port()}", "--fast")
    assert_one_line_usage_error(result, took, "connection refused")
    result, took = check("http://x", "--fast")
    assert_one_line_usage_error(result, took, "http://x", "pop3://HOST:PORT")


def test_wrong_password_is_a_usage_error_within_seconds(server: RunningServer):
    """A wrong password stops the run before any case, naming the account."""
    result, took = check(f"pop3://alice:wrong@127.0.0.1:{server.port()}", "--fast")
    assert_one_line_usage_error(result, took, "login as alice", "refused")
    result, took = check(f"pop3://{USER}@127.0.0.1:{server.port()}", "--second-user", "bob:nope", "--fast")
    assert_one_line_usage_error(result, took, "--second-user", "login as bob")


def test_unwritable_report_is_refused_before_the_run(tmp_path: Path):
    """``--report`` under a regular file cannot be made: exit 2 before any case."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result, took = check("--fast", "--report", str(blocker / "out"))
    assert_one_line_usage_error(result, took, "--report")


def test_trust_failure_mid_run_is_error_not_failed(server: RunningServer, tmp_path: Path):
    """With the pre-flight skipped, a certificate we do not trust makes the
    cases ERROR (the suite could not judge), never FAILED; exit status 3."""
    url = f"pop3s://{USER}@127.0.0.1:{server.port('pop3s')}"
    command = [sys.executable, "-m", "pytest", "pop3suite/conformance", "-p", "no:cacheprovider", "-q"]
    command += ["--pop3-target", url, "--pop3-seed", "none", "--pop3-no-preflight"]
    command += ["--pop3-report", str(tmp_path)]
    command += ["-k", "stat_format or greeting"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=240, check=False)
    assert result.returncode == 3, result.stdout[-3000:]
    document = json.loads((tmp_path / "results.json").read_text())
    outcomes = {c["id"]: c["outcome"] for c in document["cases"]}
    assert outcomes and set(outcomes.values()) <= {"ERROR", "UNIMPLEMENTED"}, outcomes
    assert "ERROR" in outcomes.values()
    assert document["counts"]["FAILED"] == 0 and document["counts"]["ERROR"] >= 1
    errored = [c for c in document["cases"] if c["outcome"] == "ERROR"]
    assert all("SSLCertVerificationError" in c["actual"] for c in errored), errored[0]["actual"]
    assert "suite:    ERROR:" in result.stdout


def test_pytest_conformance_runs_the_same_preflight(server: RunningServer):
    """``pytest pop3suite/conformance --pop3-target`` with a closed port: exit 2, one line."""
    command = [sys.executable, "-m", "pytest", "pop3suite/conformance", "-p", "no:cacheprovider", "-q"]
    command += ["--pop3-target", f"pop3://{USER}@127.0.0.1:{free_port()}"]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "pre-flight" in result.stderr and "connection refused" in result.stderr
    assert time.monotonic() - started < PREFLIGHT_BUDGET + 10


def test_check_with_the_ca_passes_preflight_and_runs(server: RunningServer, lab, tmp_path: Path):
    """The control: the same target with ``--cafile`` runs its cases (exit 0)."""
    url = f"pop3s://{USER}@127.0.0.1:{server.port('pop3s')}"
    result, _took = check(
        url, "--cafile", str(lab.ca_file), "--seed", "none", "--fast", "-k", "stat_format",
        "--report", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["counts"]["OK"] >= 1 and document["counts"]["ERROR"] == 0


# ------------------------------------------------ a non-status reply to a long line


class GarbageOnLongLines:
    """A TCP proxy in front of the real reference server that forwards
    everything, except that once a client line grows past ``limit`` octets it
    answers ``hello there`` (not a POP3 status line) instead of forwarding it."""

    def __init__(self, upstream_port: int, limit: int = 4096) -> None:
        self.upstream_port, self.limit = upstream_port, limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()

    def _down(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        finally:
            client.close()

    def _up(self, client: socket.socket, upstream: socket.socket) -> None:
        line, answered = b"", False
        try:
            while data := client.recv(65536):
                for byte in (data[i : i + 1] for i in range(len(data))):
                    line += byte
                    if byte == b"\n":
                        if len(line) <= self.limit:
                            upstream.sendall(line)
                        line, answered = b"", False
                    elif len(line) > self.limit and not answered:
                        client.sendall(b"hello there\r\n")
                        answered = True
        except OSError:
            pass
        finally:
            upstream.close()

    def close(self) -> None:
        self.stopping = True
        self.listener.close()


@pytest.fixture
def garbage_proxy(server: RunningServer) -> Iterator[GarbageOnLongLines]:
    proxy = GarbageOnLongLines(server.port())
    yield proxy
    proxy.close()


def test_non_status_reply_to_a_long_line_is_failed(garbage_proxy: GarbageOnLongLines, tmp_path: Path):
    """security/P2-long-lines FAILs (not "closed") with Expected/Actual when
    the server answers a long line with a line that is not +OK/-ERR."""
    url = f"pop3://{USER}@127.0.0.1:{garbage_proxy.port}"
    result, _took = check(
        url, "--seed", "none", "--fast", "-k", "test_long_lines_are_refused", "--report", str(tmp_path)
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    document = json.loads((tmp_path / "results.json").read_text())
    (case,) = [c for c in document["cases"] if c["id"] == "security/P2-long-lines"]
    assert case["outcome"] == "FAILED", case
    assert "status line" in case["expected"] and "hello there" in case["actual"]
    assert case["probes"] == ["P2"] and case["ref"] == "security-probes/3.3/P2"
    assert "Expected:" in result.stdout and "hello there" in result.stdout


# ------------------------------------------------ the other commands share the pre-flight


def test_load_target_with_a_wrong_password_stops_before_locust(server: RunningServer, tmp_path: Path):
    """``load --target``: a password no scenario account takes is exit 2, one line."""
    started = time.monotonic()
    result = run_pop3suite(
        "load", "smoke", "--target", f"pop3://127.0.0.1:{server.port()}", "--smtp", "smtp://127.0.0.1:1",
        "--password", "wrong", "--report", str(tmp_path / "run"),
    )  # fmt: skip
    line = assert_one_line_usage_error(result, time.monotonic() - started, "--password", "refused")
    assert line.startswith("pop3suite: error:")
    assert not (tmp_path / "run" / "run.json").exists()


def test_capacity_target_without_its_ca_names_the_flags(server: RunningServer, tmp_path: Path):
    """``capacity --target pop3s://``: an untrusted certificate is exit 2 naming --cafile/--insecure."""
    started = time.monotonic()
    result = run_pop3suite(
        "capacity", "capacity-quick", "--target", f"pop3://127.0.0.1:{server.port()}",
        "--target", f"pop3s://127.0.0.1:{server.port('pop3s')}", "--smtp", "smtp://127.0.0.1:1",
        "--password", PASSWORD, "--report", str(tmp_path / "cap"),
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if not line.startswith("capacity: checking")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and "--cafile FILE" in lines[0] and "--insecure" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and time.monotonic() - started < PREFLIGHT_BUDGET


def test_clients_target_closed_port_and_unwritable_report(tmp_path: Path):
    """``clients --target``: a closed port, and a ``--report`` that cannot be made."""
    started = time.monotonic()
    result = run_pop3suite("clients", "--target", f"pop3://{USER}@127.0.0.1:{free_port()}",
                           "--report", str(tmp_path / "out"))  # fmt: skip
    assert_one_line_usage_error(result, time.monotonic() - started, "--target", "connection refused")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    started = time.monotonic()
    result = run_pop3suite("clients", "--report", str(blocker / "out"))
    assert_one_line_usage_error(result, time.monotonic() - started, "--report")


def test_report_out_that_cannot_be_written_is_refused_first(tmp_path: Path):
    """``report --matrix ... --out FILE`` under a regular file: exit 2 before reading anything."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    started = time.monotonic()
    result = run_pop3suite("report", "--matrix", str(tmp_path), "--out", str(blocker / "m.html"))
    assert_one_line_usage_error(result, time.monotonic() - started, "--out")


def test_preflight_logs_in_over_stls_where_cleartext_is_refused(server_factory, lab):
    """A plain port that advertises STLS but not USER: the pre-flight logs in
    after STLS (as the suite's cases do), and still names a wrong password."""
    from pop3suite.target import preflight

    running = server_factory(cleartext_login=False)
    endpoint = preflight.Endpoint("--target", "127.0.0.1", running.port(), "none")
    good = preflight.Account("URL", "alice", PASSWORD)
    preflight.check_target([endpoint], [good], cafile=str(lab.ca_file))
    with pytest.raises(preflight.PreflightError, match=r"login as alice .* refused"):
        preflight.check_target(
            [endpoint], [preflight.Account("URL", "alice", "nope")], cafile=str(lab.ca_file)
        )
    with pytest.raises(preflight.PreflightError, match="--cafile FILE"):  # no CA: trust fails at STLS
        preflight.check_target([endpoint], [good])
