"""Strict input files (pop3suite.inputs): scenario files, capacity grids,
conformance target files and expectations files reject unknown keys and
wrong types at any depth, and every error is one line naming the file and
the dotted key.  Every file shipped in pop3suite/scenarios/ and tests/data loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from pop3suite.load.capacity.grid import GridError, load_grid
from pop3suite.load.scenario import ScenarioError, load_scenario
from pop3suite.target.model import TargetError, load_expectations, load_file
from tests.conftest import ROOT, run_pop3suite

SCENARIO = """
name = "unit"
run_time = 5
[prefill]
count = 2
sizes = 2000
[[clients]]
name = "a"
users = 1
poll_interval = 2
[delivery]
rate = 1.0
to = ["a"]
[slo]
min_sessions = 3
[slo.steps]
"RETR*" = { p95_ms = 500, "p99.9_ms" = 900 }
"""

GRID = """
name = "g"
cell_time = 10
time_compression = 100
[grid]
tls = ["none"]
mailbox_mb = [1, 4]
poll_interval = 300
behaviour = "keep"
[guidance]
tiers_min = [5, 15]
"""


def _write(tmp_path: Path, text: str, name: str = "x.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _one_line(error: Exception, *needles: str) -> None:
    text = str(error)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, text


def test_the_examples_load(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, SCENARIO))
    assert scenario.run_time == 5.0 and scenario.clients[0].poll_interval == 2.0
    assert scenario.delivery.users == 1  # the default when rate > 0
    assert scenario.slo.steps == {"RETR*": {"p95_ms": 500.0, "p99.9_ms": 900.0}}
    grid = load_grid(_write(tmp_path, GRID, "g.toml"))
    assert len(grid.cells) == 2 and grid.era is None  # [era] has its own schema (test_capacity_era.py)


@pytest.mark.parametrize(
    ("change", "where", "what"),
    [
        (("min_sessions = 3", "min_sesions = 3"), "slo.min_sesions", "unknown key"),
        (("[delivery]", "[delivry]"), "delivry", "unknown key"),
        (("poll_interval = 2", "poll_interval = 2\ncolour = 1"), "clients[0].colour", "unknown key"),
        (('p95_ms = 500, "p99.9_ms"', 'p59_ms = 500, "p99.9_ms"'), 'slo.steps."RETR*".p59_ms', "unknown key"),
        (("users = 1", 'users = "two"'), "clients[0].users", 'expected an integer, got "two"'),
        (("users = 1", "users = 1.5"), "clients[0].users", "expected an integer, got 1.5"),
        (("run_time = 5", 'run_time = "5"'), "run_time", 'expected a number, got "5"'),
        (("run_time = 5", "run_time = 0"), "run_time", "must be > 0"),
        (('name = "a"', 'name = "a"\ntls = "ssl"'), "clients[0].tls", 'got "ssl"'),
        (("sizes = 2000", 'sizes = "big"'), "prefill.sizes", 'got "big"'),
        (('to = ["a"]', 'to = ["b"]'), "delivery.to", "no [[clients]] named 'b'"),
        (("rate = 1.0", "rate = true"), "delivery.rate", "expected a number, got true"),
        (
            ('name = "a"', 'name = "a-b"'),
            "clients[0].name",
            'letters and digits only (accounts: NAME0000), got "a-b"',
        ),
    ],
)
def test_scenario_errors_name_file_and_key(
    tmp_path: Path, change: tuple[str, str], where: str, what: str
) -> None:
    assert change[0] in SCENARIO
    with pytest.raises(ScenarioError) as info:
        load_scenario(_write(tmp_path, SCENARIO.replace(*change)))
    _one_line(info.value, "x.toml: ", f"{where}: ", what)


@pytest.mark.parametrize(
    ("change", "where", "what"),
    [
        (("[grid]", "[grid]\ncolour = 1"), "grid.colour", "unknown key"),
        (("tiers_min = [5, 15]", "tiers_min = [5, 15]\nbudget = 1"), "guidance.budget", "unknown key"),
        (
            ("mailbox_mb = [1, 4]", 'mailbox_mb = [1, "x"]'),
            "grid.mailbox_mb[1]",
            'expected a number, got "x"',
        ),
        (("tiers_min = [5, 15]", "tiers_min = [5]"), "guidance.tiers_min", "at least 2"),
        (("cell_time = 10", "cell_time = [10]"), "cell_time", "expected a number, got [10]"),
    ],
)
def test_grid_errors_name_file_and_key(
    tmp_path: Path, change: tuple[str, str], where: str, what: str
) -> None:
    assert change[0] in GRID
    with pytest.raises(GridError) as info:
        load_grid(_write(tmp_path, GRID.replace(*change)))
    _one_line(info.value, "x.toml: ", f"{where}: ", what)


def test_target_file_schema(tmp_path: Path) -> None:
    good = _write(tmp_path, 'url = "pop3://u:p@127.0.0.1:1"\ncafile = "ca.pem"\nidle_timeout = 600\n')
    assert load_file(good)["cafile"] == str(tmp_path / "ca.pem")
    with pytest.raises(TargetError) as info:
        load_file(_write(tmp_path, 'url = "pop3://u:p@h"\ninsecure = "yes"\n'))
    _one_line(info.value, 'x.toml: insecure: expected true or false, got "yes"')
    with pytest.raises(TargetError) as info:
        load_file(_write(tmp_path, 'url = "pop3://u:p@h"\ncafle = "ca.pem"\n'))
    _one_line(info.value, "x.toml: cafle: unknown key")


def test_expectations_file_schema(tmp_path: Path) -> None:
    assert load_expectations(_write(tmp_path, '"rfc1939/5/x[plain]" = "why"\n')) == {
        "rfc1939/5/x[plain]": "why"
    }
    with pytest.raises(TargetError) as info:
        load_expectations(_write(tmp_path, '"rfc1939/5/x" = 1\n'))
    _one_line(info.value, 'x.toml: "rfc1939/5/x": expected a string, got 1')
    with pytest.raises(TargetError) as info:
        load_expectations(_write(tmp_path, "[table]\nkey = 'v'\n"))
    _one_line(info.value, "x.toml: table: expected a string, got a table")


@pytest.mark.parametrize(
    ("load", "error"),
    [
        (load_scenario, ScenarioError),
        (load_grid, GridError),
        (load_file, TargetError),
        (load_expectations, TargetError),
    ],
)
def test_syntax_errors_and_unreadable_files(tmp_path: Path, load, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        load(_write(tmp_path, "name = \n"))
    _one_line(info.value, "x.toml: TOML syntax error:", "line 1")
    unreadable = tmp_path / "dir.toml"
    unreadable.mkdir()  # a directory: read_text fails with an OSError
    if load in (load_scenario, load_grid):
        with pytest.raises(error, match="no scenario"):  # not a file: looked up by name
            load(tmp_path / "absent.toml")
    else:
        with pytest.raises(error) as info:
            load(tmp_path / "absent.toml")
        _one_line(info.value, "absent.toml: cannot read: No such file or directory")
        with pytest.raises(error) as info:
            load(unreadable)
        _one_line(info.value, "dir.toml: cannot read: Is a directory")


def test_every_shipped_file_loads() -> None:
    files = sorted((ROOT / "pop3suite" / "scenarios").glob("*.toml")) + sorted(
        (ROOT / "tests" / "data").glob("*.toml")
    )
    assert files
    for path in files:
        if path.name.startswith("capacity"):
            load_grid(path)
        else:
            load_scenario(path)
    for path in sorted((ROOT / "pop3suite" / "conformance" / "expectations").glob("*.toml")):
        assert load_expectations(path)


def _usage_error(done, *needles: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "INTERNALERROR" not in done.stdout + done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_check_with_a_missing_or_bad_target_file_is_a_usage_error(tmp_path: Path) -> None:
    """Not pytest's INTERNALERROR (rc 3): one line, exit 2, nothing ran."""
    missing = tmp_path / "missing.toml"
    _usage_error(
        run_pop3suite("check", "--target-file", str(missing)), "--target-file", "missing.toml: cannot read"
    )
    bad = _write(tmp_path, 'url = "pop3://u:p@127.0.0.1:1"\nidle_timeout = "long"\n')
    _usage_error(run_pop3suite("check", "--target-file", str(bad)), "x.toml: idle_timeout: expected a number")
    _usage_error(run_pop3suite("check", "--expectations", str(missing)), "--expectations", "cannot read")


def test_load_and_capacity_name_the_key_and_exit_2(tmp_path: Path) -> None:
    typo = _write(tmp_path, SCENARIO.replace("min_sessions", "min_sesions"))
    _usage_error(run_pop3suite("load", str(typo)), "x.toml: slo.min_sesions: unknown key")
    grid = _write(tmp_path, GRID.replace("[grid]", "[grid]\nusers = [0]"), "g.toml")
    _usage_error(run_pop3suite("capacity", str(grid)), "g.toml: grid.users[0]: must be > 0")
