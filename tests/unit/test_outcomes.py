"""Grading: what is the server's failure and what is ERROR (the suite could
not judge), the run's exit status, the one order of ``expect()``'s
arguments, and the reports that show ERROR apart (issue 14)."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from pop3suite.client import ConnectionClosed, ErrResponse
from pop3suite.conformance import report
from pop3suite.conformance.case import (
    MAY,
    MUST,
    SHOULD,
    CaseFailure,
    CaseInfo,
    Outcome,
    expect,
    expect_equal,
    expect_err,
    expect_ok,
    is_suite_error,
)
from pop3suite.conformance.plugin import EXIT_CONFORMANT, EXIT_ERROR, EXIT_FAILED, grade, run_status
from pop3suite.proto import parse_status_line
from pop3suite.proto.errors import MalformedResponse
from pop3suite.target import preflight


def _cert_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    return error


@pytest.mark.parametrize(
    "error",
    [
        CaseFailure("m", "e", "a"),
        ErrResponse(parse_status_line(b"-ERR no\r\n"), "STAT"),
        ConnectionClosed("server closed the connection"),
        MalformedResponse("expected '+OK' or '-ERR' at line start, got b'hello'"),
        ConnectionResetError(104, "Connection reset by peer"),
        BrokenPipeError(32, "Broken pipe"),
        TimeoutError("timed out"),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_the_server_did_is_graded(error: BaseException) -> None:
    """Failed checks, -ERR, closes, garbage, resets, silence: the server's doing."""
    assert not is_suite_error(error)
    info = CaseInfo("x/1", MUST, "1939", "5", "s")
    assert grade(info, True, error) is Outcome.FAILED


@pytest.mark.parametrize(
    "error",
    [
        _cert_error(),
        socket.gaierror(-2, "Name or service not known"),
        ConnectionRefusedError(111, "Connection refused"),
        KeyError("capabilities"),
        ValueError("invalid literal for int() with base 10: 'abc'"),
        AttributeError("'NoneType' object has no attribute 'raw'"),
        AssertionError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_what_the_suite_could_not_judge_is_error(error: BaseException) -> None:
    """Our trust setting, an unreachable target and our own bugs are ERROR at any level."""
    assert is_suite_error(error)
    for level in (MUST, SHOULD, MAY):
        assert grade(CaseInfo("x/1", level, "1939", "5", "s"), True, error) is Outcome.ERROR


def test_passing_cases_grade_by_level() -> None:
    assert grade(CaseInfo("x/1", MUST, "1939", "5", "s"), False) is Outcome.OK
    assert grade(CaseInfo("x/1", SHOULD, "1939", "5", "s"), True, CaseFailure("m", "e", "a")) is (
        Outcome.NON_STRICT
    )


def test_exit_status_failed_wins_over_error() -> None:
    """0 conformant, 1 FAILED (also with ERRORs), 3 ERROR only; deviations do not count."""
    ok, failed = {"outcome": "OK"}, {"outcome": "FAILED"}
    error, known = {"outcome": "ERROR"}, {"outcome": "FAILED", "deviation": "recorded"}
    assert run_status([ok, known]) == EXIT_CONFORMANT == 0
    assert run_status([ok, error]) == EXIT_ERROR == 3
    assert run_status([ok, error, failed]) == EXIT_FAILED == 1


def test_expect_takes_expected_and_actual_by_keyword_only() -> None:
    """One order everywhere: message, then expected=, then actual= (never swapped)."""
    with pytest.raises(TypeError):
        expect(False, "m", "e", "a")  # type: ignore[misc]
    with pytest.raises(TypeError):
        expect_equal(1, 2, "m")  # type: ignore[misc]
    with pytest.raises(CaseFailure) as failure:
        expect_equal("STAT count", expected=3, actual=2)
    assert (failure.value.expected, failure.value.actual) == ("3", "2")


def _document() -> dict:
    cases = [
        {"id": "a/ok", "outcome": "OK", "level": "MUST"},
        {"id": "b/error", "outcome": "ERROR", "level": "MUST", "actual": "SSLCertVerificationError: x"},
        {"id": "c/info", "outcome": "INFORMATIONAL", "level": "INFO"},
        {"id": "d/failed", "outcome": "FAILED", "level": "MUST", "probes": ["P2"]},
        {"id": "e/non-strict", "outcome": "NON-STRICT", "level": "SHOULD"},
    ]
    for case in cases:
        case.setdefault("actual", "")
        case.update(rfc="1939", section="5", description="d", expected="", transcript="", duration_s=0.1)
    return {"target": "t", "profile": "rfc", "started": "now", "duration_s": 1.0,
            "counts": report.counts(cases), "cases": cases}  # fmt: skip


def test_report_html_lists_failures_first_with_a_filter() -> None:
    """FAILED, then ERROR, then the rest; a select per outcome and level; no external files."""
    page = report.render_html(_document())
    order = [
        page.index(f">{case_id}<") for case_id in ("d/failed", "b/error", "e/non-strict", "c/info", "a/ok")
    ]
    assert order == sorted(order)
    assert "id=f-outcome" in page and "id=f-level" in page and "function pop3filter" in page
    assert 'data-outcome="ERROR"' in page and 'data-level="INFO"' in page
    assert "src=" not in page and "href=" not in page  # one self-contained file
    assert "probes: P2" in page and "suite could not judge" in page


def test_matrix_counts_error_apart() -> None:
    document = _document()
    assert document["counts"]["ERROR"] == 1 and document["counts"]["FAILED"] == 1
    assert "ERROR: 1" in report.render_matrix([document])
    assert "ERROR 1" in report.render_markdown_matrix([document])


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://x", ["http://", "pop3://HOST:PORT"]),
        ("pop3://", ["no host"]),
        ("pop3://h:99999", ["not a URL"]),
        ("x", ["no scheme"]),
    ],
)
def test_preflight_url_syntax_is_one_line_naming_the_flag(url: str, words: list[str]) -> None:
    with pytest.raises(preflight.PreflightError) as error:
        preflight.parse_url(url, "--target")
    text = str(error.value)
    assert text.startswith("--target ") and "\n" not in text
    assert all(word in text for word in words), text


def test_preflight_url_hides_the_password_and_decodes_the_login() -> None:
    endpoint, account = preflight.parse_url("pop3s://alice:s3cret%20pass@127.0.0.1:995", "URL")
    assert (endpoint.tls, endpoint.port, endpoint.url) == ("implicit", 995, "pop3s://127.0.0.1:995")
    assert account == preflight.Account("URL", "alice", "s3cret pass")
    with pytest.raises(preflight.PreflightError) as error:
        preflight.parse_url("ftp://alice:topsecret@h", "URL")
    assert "topsecret" not in str(error.value)


def test_writable_dir_refuses_a_file_and_a_path_under_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for path, words in ((blocker, "not a directory"), (blocker / "out", "cannot write")):
        with pytest.raises(preflight.PreflightError, match=words):
            preflight.writable_dir(path, "--report")
    # A directory that can be made passes, and the check leaves nothing behind.
    assert preflight.writable_dir(tmp_path / "new" / "dir", "--report") == tmp_path / "new" / "dir"
    assert not (tmp_path / "new").exists()
    with pytest.raises(preflight.PreflightError, match="is a directory"):
        preflight.writable_file(tmp_path, "--out")


def test_expect_err_and_expect_ok_show_the_status_the_server_sent():
    """The two status checks pass on the status they name and fail with the
    server's own line as Actual."""
    ok, err = parse_status_line(b"+OK fine\r\n"), parse_status_line(b"-ERR no\r\n")
    expect_err(err, "refused")
    expect_ok(ok, "accepted")
    with pytest.raises(CaseFailure) as refused:
        expect_err(ok, "DELE of a deleted message")
    assert refused.value.message == "DELE of a deleted message"
    assert refused.value.expected == "-ERR" and "+OK fine" in refused.value.actual
    with pytest.raises(CaseFailure) as accepted:
        expect_ok(err, "QUIT")
    assert accepted.value.expected == "+OK" and "-ERR no" in accepted.value.actual
