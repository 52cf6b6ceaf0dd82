"""The conformance suite as users run it: ``pop3suite check`` against the
embedded reference server and against a real Dovecot, and the matrix report.

These are the suite's own acceptance tests: the reference server must score
no FAILED, and Dovecot only the deviations recorded (with reasons) in
``pop3suite/conformance/expectations/dovecot.toml`` -- each of which must still occur,
so the expectations file cannot go stale.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.conftest import PASSWORD, run_pop3suite
from tests.peers import dovecot_peer, run_script

pytestmark = pytest.mark.timeout(1200)

ROOT = Path(__file__).resolve().parents[2]
DOVECOT_EXPECTATIONS = ROOT / "pop3suite" / "conformance" / "expectations" / "dovecot.toml"


def check(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return run_pop3suite("check", *args, timeout=timeout)


def unexpected_failures(document: dict) -> list[str]:
    return [
        f"{c['id']}: expected {c['expected']!r}, actual {c['actual']!r}"
        for c in document["cases"]
        if c["outcome"] == "FAILED" and not c.get("deviation")
    ]


@pytest.fixture(scope="module")
def reference_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    result = check("--fast", "--report", str(out))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return out


def test_reference_server_scores_no_failed(reference_report):
    """The embedded reference server passes every case of the fast run, with
    reports in all three formats."""
    document = json.loads((reference_report / "results.json").read_text())
    assert document["target"] == "reference"
    assert unexpected_failures(document) == []
    assert len(document["cases"]) > 100
    for case in document["cases"]:
        assert case["outcome"] in ("OK", "NON-STRICT", "FAILED", "INFORMATIONAL", "UNIMPLEMENTED")
        assert case["id"] and case["level"] and case["rfc"] and case["description"]
    suite = ElementTree.parse(reference_report / "junit.xml").getroot().find("testsuite")  # pytest's own
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert int(suite.get("tests")) == len(document["cases"])
    properties = {p.get("name") for p in suite.iterfind("testcase/properties/property")}
    assert {"case_id", "level", "rfc", "section", "ref", "outcome"} <= properties
    assert "<table>" in (reference_report / "report.html").read_text()


def test_provider_profile_adds_provider_cases(tmp_path):
    """--profile provider runs the provider's rules too (POP-before-SMTP on
    the embedded server's SMTP side)."""
    result = check("--fast", "--profile", "provider", "--report", str(tmp_path), "-k", "provider")
    assert result.returncode == 0, result.stdout[-4000:]
    document = json.loads((tmp_path / "results.json").read_text())
    ids = {c["id"] for c in document["cases"]}
    assert "provider/pop-before-smtp-pop3-opens" in ids
    assert document["profile"] == "provider"


@pytest.mark.realclient
def test_dovecot_has_only_expected_deviations(reference_report, tmp_path):
    """Against Dovecot the suite reports FAILED only for the recorded, real
    deviations, and every recorded deviation still happens."""
    expectations = tomllib.loads(DOVECOT_EXPECTATIONS.read_text())
    with dovecot_peer(PASSWORD) as peer:
        maildir = Path(peer.env["PEER_MAILDIR_ROOT"]) / "alice"
        port, ports = peer.pop3_port, peer.pop3s_port
        user = f"alice:{PASSWORD.replace(' ', '%20')}"
        result = check(
            f"pop3://{user}@127.0.0.1:{port}",
            "--pop3s", f"pop3s://{user}@127.0.0.1:{ports}",
            "--cafile", peer.env["PEER_CA"],
            "--apop-user", f"carol:{PASSWORD}",
            "--second-user", f"bob:{PASSWORD}",
            "--seed", f"maildir:{maildir}",
            "--allow-destructive",
            "--fast",
            "--expectations", str(DOVECOT_EXPECTATIONS),
            "--report", str(tmp_path / "dovecot"),
        )  # fmt: skip
        assert run_script("status", str(peer.directory)).returncode == 0
    document = json.loads((tmp_path / "dovecot" / "results.json").read_text())
    assert unexpected_failures(document) == [], result.stdout[-4000:]
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    seen = {c["id"].split("[")[0] for c in document["cases"] if c.get("deviation")}
    seen |= {c["id"] for c in document["cases"] if c.get("deviation")}
    stale = [case_id for case_id in expectations if case_id not in seen]
    assert stale == [], f"expectations no longer needed (Dovecot passes them now): {stale}"

    command = [sys.executable, "-m", "pop3suite", "report", "--matrix", str(reference_report)]
    command += [str(tmp_path / "dovecot"), "--out", str(tmp_path / "matrix.html")]
    command += ["--markdown", str(tmp_path / "matrix.md")]
    matrix = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert matrix.returncode == 0, matrix.stderr
    page = (tmp_path / "matrix.html").read_text()
    assert "reference" in page and "127.0.0.1" in page
    assert (tmp_path / "matrix.md").read_text().count("\n") > 100
