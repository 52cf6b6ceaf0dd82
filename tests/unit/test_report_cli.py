"""``pop3suite report``: RUN directories (pop3suite/load/capacity report) or
``--matrix`` (the conformance matrix, unchanged); exactly one of the two."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pop3suite.checkcmd import add_report_parser
from pop3suite.cli import main

from .test_report_charts import write_run


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_report_parser(parser.add_subparsers())
    return parser.parse_args(["report", *argv])


def test_matrix_form_parses_as_before() -> None:
    args = parse("--matrix", "a", "b", "--out", "m.html", "--markdown", "m.md")
    assert args.matrix == ["a", "b"] and args.runs == [] and args.out == "m.html" and args.markdown == "m.md"


def test_run_form_parses() -> None:
    args = parse("r1", "r2", "--out", "dir")
    assert args.runs == ["r1", "r2"] and args.matrix is None and args.out == "dir"


@pytest.mark.parametrize("argv", [[], ["somewhere", "--matrix", "x"]])
def test_exactly_one_form(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", *argv]) == 2
    assert "either RUN directories or --matrix" in capsys.readouterr().err


def test_markdown_only_with_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path / "run", full_history=False)
    assert main(["report", str(run), "--markdown", str(tmp_path / "x.md")]) == 2
    assert "--matrix only" in capsys.readouterr().err


def test_neither_kind_names_the_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "no run.json" in err and "no capacity.json" in err


def test_default_out_is_the_first_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Also: a stale chart of an earlier rendering whose data are now absent
    (errors.png, this run has no failures) is removed, anything else in
    plots/ is left alone, and no pyplot figure is left open."""
    import matplotlib.pyplot as plt

    run = write_run(tmp_path / "run", full_history=False, failures=False)
    (run / "plots").mkdir()
    (run / "plots" / "errors.png").write_bytes(b"stale")
    (run / "plots" / "mine.png").write_bytes(b"not ours")
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {run / 'report.html'}"
    assert (run / "plots" / "latency_distribution.png").is_file()
    assert not (run / "plots" / "errors.png").exists()
    assert (run / "plots" / "mine.png").read_bytes() == b"not ours"
    assert plt.get_fignums() == []
