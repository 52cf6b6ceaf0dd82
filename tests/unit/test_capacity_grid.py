"""Capacity scenario parsing (errors name file and key), the generated cell
scenarios, and the saturation rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from pop3suite.load.capacity.grid import GridError, cell_scenario_toml, load_grid
from pop3suite.load.capacity.saturation import cell_reasons, knee_reasons
from pop3suite.load.scenario import load_scenario

GOOD = """
name = "t"
cell_time = 10
time_compression = 100
message_sizes = [[10000, 1]]
[grid]
backend = ["maildir", "mbox"]
tls = ["none", "implicit"]
mailbox_mb = [1, 4]
poll_interval = [300]
behaviour = ["keep", "delete"]
users = [3]
[slo]
p95_ms = 1000
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cap.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_grids_parse() -> None:
    quick = load_grid("capacity-quick")
    full = load_grid("capacity-full")
    assert len(quick.cells) == 26 and len(full.cells) == 96  # quick: 24 + a 3-point load series (1 shared)
    assert {c.backend for c in quick.cells} == {"maildir", "mbox"}


def test_load_series_merges_into_the_grid(tmp_path: Path) -> None:
    """[load_series] adds one shape at more load points; axes it leaves out
    come from [grid], and a cell both tables name appears once."""
    text = GOOD.replace("[slo]", '[load_series]\nbackend = ["mbox"]\ntls = ["none"]\nmailbox_mb = [4]\n'
                        'behaviour = ["keep"]\nusers = [3, 9, 27]\n[slo]')  # fmt: skip
    grid = load_grid(_write(tmp_path, text))
    series = [c for c in grid.cells if c.backend == "mbox" and c.tls == "none" and c.mailbox_mb == 4
              and c.behaviour == "keep"]  # fmt: skip
    assert sorted(c.users for c in series) == [3, 9, 27]
    assert len(grid.cells) == 16 + 2 and len({c.id for c in grid.cells}) == 18
    with pytest.raises(GridError, match=r"load_series\.users"):
        load_grid(_write(tmp_path, text.replace("users = [3, 9, 27]", "users = [0]")))


def test_grid_is_the_product_and_cells_become_load_scenarios(tmp_path: Path) -> None:
    grid = load_grid(_write(tmp_path, GOOD))
    assert len(grid.cells) == 16 and len({c.id for c in grid.cells}) == 16
    delete = next(c for c in grid.cells if c.behaviour == "delete" and c.backend == "mbox")
    cell_file = tmp_path / "cell.toml"
    cell_file.write_text(cell_scenario_toml(grid, delete, 10), encoding="utf-8")
    scenario = load_scenario(cell_file)
    assert scenario.storage == "mbox"
    assert scenario.prefill_count == grid.messages(delete) == 100  # 1 MB of 10 kB messages
    client = scenario.clients[0]
    assert client.users == 3 and client.max_retr_per_poll == grid.delete_per_poll
    assert scenario.delivery.rate == 0  # refill = "local": the sweep writes into the store
    assert scenario.real_interval(client) == pytest.approx(3.0)
    smtp = load_grid(_write(tmp_path, GOOD.replace('name = "t"', 'name = "t"\nrefill = "smtp"')))
    cell_file.write_text(cell_scenario_toml(smtp, delete, 10), encoding="utf-8")
    # SMTP refill: users x delete_per_poll messages per poll interval, to the cell's clients
    delivery = load_scenario(cell_file).delivery
    assert delivery.rate == pytest.approx(3 * grid.delete_per_poll / 300) and delivery.to == ("cap",)
    keep = next(c for c in grid.cells if c.behaviour == "keep")
    cell_file.write_text(cell_scenario_toml(grid, keep, 10), encoding="utf-8")
    scenario = load_scenario(cell_file)
    assert scenario.clients[0].initial_sync and scenario.delivery.rate == 0


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('tls = ["none", "implicit"]', 'tls = ["ssl"]'), "grid.tls"),
        (("mailbox_mb = [1, 4]", "mailbox_mb = [-1]"), "grid.mailbox_mb"),
        (("users = [3]", "users = [3]\ncolour = 1"), "grid.colour: unknown key"),
        (("cell_time = 10", "cell_time = 1"), "cell_time"),
        (("p95_ms = 1000", 'p95_ms = "fast"'), "slo.p95_ms"),
        (('name = "t"', 'name = "t"\nhold_out = "nope"'), "hold_out"),
        (("message_sizes = [[10000, 1]]", 'message_sizes = "big"'), "message_sizes"),
        (("[slo]", "[guidance]\ntiers_min = [15, 5]\n[slo]"), "guidance.tiers_min"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, change: tuple[str, str], key: str) -> None:
    path = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(GridError) as info:
        load_grid(path)
    assert "cap.toml" in str(info.value) and key in str(info.value)


def test_missing_grid_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GridError, match=r"cap\.toml: grid: missing \(required\)"):
        load_grid(_write(tmp_path, 'name = "x"\n'))
    with pytest.raises(GridError, match="no scenario"):
        load_grid(tmp_path / "absent.toml")


def _measured(**kw) -> dict:
    base = {"polls": 100, "errors": 0, "timeouts": 0, "idle_timeouts": 0, "offered_polls_per_s": 4.0,
            "polls_per_s": 4.0, "p95_ms": 100.0}  # fmt: skip
    return {**base, **kw}


def test_cell_saturation_rules() -> None:
    assert cell_reasons(_measured(), 1000, 0.01) == []
    assert cell_reasons(_measured(polls=0), 1000, 0.01) == ["no polls completed"]
    reasons = cell_reasons(
        _measured(errors=5, timeouts=2, idle_timeouts=1, polls_per_s=3.5, p95_ms=2000), 1000, 0.01
    )
    assert [r.split(":")[0] for r in reasons] == ["errors", "timeouts", "idle-timeout", "rate", "slo"]
    assert cell_reasons(_measured(polls_per_s=3.7), 1000, 0.01) == []  # 92.5 % of offered is fine


def test_knee_rule() -> None:
    key = ("mbox", "none", 20, "keep")
    # p95 roughly flat, then jumps 10x for 2x load: the knee is at 8 polls/s
    points = [("a", key, 2.0, 40.0), ("b", key, 4.0, 45.0), ("c", key, 8.0, 450.0), ("d", key, 16.0, 3000.0)]
    assert set(knee_reasons(points)) == {"c", "d"}
    # linear growth is not a knee; nor is jitter below the floor
    linear = [("a", key, 2.0, 100.0), ("b", key, 4.0, 200.0), ("c", key, 8.0, 400.0)]
    assert knee_reasons(linear) == {}
    jitter = [("a", key, 2.0, 2.0), ("b", key, 4.0, 12.0)]
    assert knee_reasons(jitter) == {}
    other = ("mbox", "none", 5, "keep")
    assert knee_reasons([("a", key, 2.0, 40.0), ("b", other, 4.0, 900.0)]) == {}  # different groups
