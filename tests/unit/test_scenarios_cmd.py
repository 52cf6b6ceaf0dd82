"""``pop3suite scenarios``: the shipped scenario files, found as package data."""

from __future__ import annotations

import tomllib

import pytest

from pop3suite.cli import main
from pop3suite.load.scenario import scenario_dir


def test_lists_every_shipped_file_with_its_kind(capsys: pytest.CaptureFixture[str]) -> None:
    """Every TOML file in the package's scenarios/ is listed, grids apart from load scenarios."""
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    names = sorted(p.stem for p in scenario_dir().glob("*.toml"))
    assert {"smoke", "capacity-quick", "capacity-centos5"} <= set(names)
    for name in names:
        kind = "capacity grid" if name.startswith("capacity-") else "load scenario"
        assert any(line.startswith(name) and kind in line for line in out.splitlines()), name


def test_show_prints_the_file_to_copy(capsys: pytest.CaptureFixture[str]) -> None:
    """``show NAME`` prints the file byte for byte, so it can be redirected and edited."""
    assert main(["scenarios", "show", "smoke"]) == 0
    out = capsys.readouterr().out
    assert out == (scenario_dir() / "smoke.toml").read_text(encoding="utf-8")
    assert tomllib.loads(out)["name"] == "smoke"


@pytest.mark.parametrize("argv", [["scenarios", "show", "nope"], ["scenarios", "show"]])
def test_a_bad_name_is_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A bad name is a usage error naming what exists, not a traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pop3suite scenarios")
