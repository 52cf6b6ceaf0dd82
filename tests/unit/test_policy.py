"""The mailbox/polling policy (pop3suite.server.policy): the provider's
CentOS 5 table at its boundaries, both SSL variants, derived guidance
files, config validation, the per-user LOGIN-DELAY in the core's CAPA, and
the login log (provider-pop-service.md §3, RFC 2449 §6.5)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from pop3suite.proto import ServerSession, SessionOptions
from pop3suite.proto.server import Authenticate, Send
from pop3suite.server import config
from pop3suite.server.policy import (
    BUILTIN_POLICIES,
    LoginTracker,
    Policy,
    Rule,
    load_guidance,
    observed_interval,
    read_log,
)

MB = 2**20
P50 = BUILTIN_POLICIES["provider-50mb"]
P30 = BUILTIN_POLICIES["provider-30mb"]


def parse(text: str, directory: Path) -> config.Settings:
    return config.parse(tomllib.loads(text), directory / "pop3suite.toml")


def write_guidance(path: Path, rows: list[dict]) -> Path:
    path.write_text(json.dumps({"generated_by": "pop3suite capacity", "rows": rows}), encoding="utf-8")
    return path


def row(connection: str = "tls", backend: str = "maildir", **values: object) -> dict:
    base = {"keep_under_mb": 40, "above_mb": 10, "poll_min_above": 20, "poll_min": 2}
    return {"connection": connection, "backend": backend, **base, **values}


# ------------------------------------------------------- the provider's table


@pytest.mark.parametrize(
    ("connection", "size", "seconds"),
    [
        ("tls", 0, 300),
        ("tls", 20 * MB, 300),  # "larger than 20 MB": exactly 20 is not larger
        ("tls", 20 * MB + 1, 900),
        ("tls", 49 * MB, 900),
        ("plain", 20 * MB + 1, 300),
        ("plain", 50 * MB, 300),
        ("plain", 50 * MB + 1, 900),
        ("plain", 89 * MB, 900),
    ],
)
def test_login_delay_follows_the_provider_table(connection, size, seconds):
    """Above 20 MB (TLS) / 50 MB (plain) poll every 15 min, otherwise every 5 min."""
    assert P50.login_delay("alice", size, connection) == seconds
    assert P30.login_delay("alice", size, connection) == seconds  # the variants differ in size only


@pytest.mark.parametrize(
    ("policy", "connection", "limit_mb"),
    [(P50, "tls", 50), (P30, "tls", 30), (P50, "plain", 90), (P30, "plain", 90)],
)
def test_size_limit_is_keep_under(policy, connection, limit_mb):
    """ "Keep under 50 MB" (30 MB, 90 MB): one octet below is within, exactly the figure is over."""
    assert not policy.over_policy("a", limit_mb * MB - 1, connection).over_size
    assert policy.over_policy("a", limit_mb * MB, connection).over_size


def test_the_two_ssl_variants_disagree_between_30_and_50_mb():
    """A 35 MB mailbox over TLS is over the 30 MB paragraph's figure and within the table's 50 MB."""
    assert P30.over_policy("a", 35 * MB, "tls").over_size
    assert not P50.over_policy("a", 35 * MB, "tls").over_size


def test_largest_delay_and_time_compression():
    """AUTHORIZATION announces the longest delay; compression divides it, rounding up to whole seconds."""
    assert P50.largest_delay() == 900
    fast = Policy("fast", P50.rules, time_compression=60)
    assert fast.largest_delay() == 15
    assert fast.login_delay("a", 0, "tls") == 5
    odd = Policy("odd", {"tls": Rule(10, 1, 0.5, 0.05)}, time_compression=7)
    assert odd.login_delay("a", 0, "tls") == 1  # 3 s / 7 -> 0.43 -> 1
    assert odd.login_delay("a", 0, "plain") == 0  # no rule for plain: not limited


def test_over_policy_asks_like_the_provider():
    """Over size: reduce below the figure; too frequent: the required interval, or shrink to poll more."""
    big = P50.over_policy("alice", 55 * MB, "tls", observed_interval_s=60)
    assert big.over_size and big.too_frequent and big.over_policy
    assert big.required_interval_s == 900
    assert big.asks == (
        "reduce the mailbox below 50 MB",
        "poll no more often than every 15 min",
        "or keep the mailbox at 20 MB or less to poll every 5 min",
    )
    frequent = P50.over_policy("bob", 1 * MB, "plain", observed_interval_s=299)
    assert frequent.too_frequent and not frequent.over_size
    assert frequent.asks == ("poll no more often than every 5 min",)
    compliant = P50.over_policy("carol", 1 * MB, "plain", observed_interval_s=300)
    assert not compliant.over_policy and compliant.asks == ()


def test_unknown_connection_is_a_programming_error():
    """Only "tls" and "plain" exist; a typo must not silently mean "no limit"."""
    with pytest.raises(ValueError, match="connection"):
        P50.login_delay("a", 0, "ssl")


# ------------------------------------------------------ derived guidance.json


def test_guidance_json_is_applied(tmp_path):
    """The rows of the chosen backend become the policy, per connection."""
    path = write_guidance(
        tmp_path / "guidance.json",
        [
            row("tls"),
            row("plain", keep_under_mb=80, poll_min=1),
            row("tls", "mbox", keep_under_mb=5, above_mb=1),
        ],
    )
    maildir = load_guidance(path, "maildir")
    assert maildir.rules["tls"] == Rule(40, 10, 20, 2)
    assert maildir.login_delay("a", 10 * MB + 1, "tls") == 20 * 60
    assert maildir.login_delay("a", 10 * MB, "plain") == 60
    mbox = load_guidance(path, "mbox")
    assert set(mbox.rules) == {"tls"} and mbox.over_policy("a", 5 * MB, "tls").over_size
    assert mbox.login_delay("a", 0, "plain") == 0


def test_guidance_json_from_the_config_file(tmp_path):
    """server.policy may name a guidance.json relative to the config; [policy] picks the backend."""
    write_guidance(tmp_path / "guidance.json", [row("tls"), row("tls", "mbox", keep_under_mb=7, above_mb=3)])
    settings = parse('[server]\nstorage = "mbox"\npolicy = "guidance.json"\n', tmp_path)
    assert settings.policy.rules["tls"].keep_under_mb == 7
    assert settings.policy_log == tmp_path / "policy-log.jsonl"
    settings = parse('[policy]\nbase = "guidance.json"\nbackend = "maildir"\n', tmp_path)
    assert settings.policy.rules["tls"].keep_under_mb == 40


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([row("ssl")], "key 'rows[0].connection': expected tls or plain"),
        ([row(), row("plain", poll_min="5")], "key 'rows[1].poll_min': expected a number"),
        ([row(poll_min=-1)], "key 'rows[0].poll_min': must be at least 0"),
        ([row(keep_under_mb=0)], "key 'rows[0].keep_under_mb': must be more than 0"),
        ([row(above_mb=40)], "key 'rows[0].above_mb': must be below keep_under_mb"),
        ([row(poll_min_above=1)], "key 'rows[0].poll_min_above': a larger mailbox cannot poll more often"),
        ([{k: v for k, v in row().items() if k != "above_mb"}], "key 'rows[0].above_mb' is missing"),
        ([row(backend="")], "key 'rows[0].backend'"),
        ([row(), row()], "key 'rows[1]': a second row for tls on maildir"),
        ([row(), row(backend="mbox")], "rows for several backends (maildir, mbox); choose one"),
        ([], "key 'rows': expected a non-empty list"),
    ],
)
def test_bad_guidance_names_file_and_key(tmp_path, rows, message):
    """Every bad value in a guidance file is reported with the file and the row's key."""
    path = write_guidance(tmp_path / "guidance.json", rows)
    with pytest.raises(config.ConfigError) as error:
        load_guidance(path)
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)


def test_guidance_errors_also_name_the_config_key(tmp_path):
    """A bad or missing guidance file named by the config says which config key pointed at it."""
    write_guidance(tmp_path / "guidance.json", [row(backend="mbox")])
    with pytest.raises(
        config.ConfigError, match=r"no row for backend 'maildir'.*'server.policy' in .*pop3suite.toml"
    ):
        parse('[server]\nstorage = "maildir"\npolicy = "guidance.json"\n', tmp_path)
    with pytest.raises(config.ConfigError, match=r"missing.json: no such guidance file .*'policy.base'"):
        parse('[policy]\nbase = "missing.json"\n', tmp_path)
    (tmp_path / "broken.json").write_text("{rows: [", encoding="utf-8")
    with pytest.raises(config.ConfigError, match=r"broken\.json: not valid JSON"):
        parse('[server]\npolicy = "broken.json"\n', tmp_path)


# ------------------------------------------------------------- config keys


def test_policy_is_off_by_default(tmp_path):
    """No policy, no log: the server behaves as before."""
    settings = parse("[server]\n", tmp_path)
    assert settings.policy is None and settings.policy_log is None
    assert parse('[server]\npolicy = "off"\n', tmp_path).policy is None


def test_builtin_policy_and_log_path(tmp_path):
    """server.policy names a built-in; policy_log is relative to the config file."""
    settings = parse('[server]\npolicy = "provider-30mb"\npolicy_log = "var/logins.jsonl"\n', tmp_path)
    assert settings.policy is P30
    assert settings.policy_log == tmp_path / "var" / "logins.jsonl"
    observing = parse('[server]\npolicy_log = "logins.jsonl"\n', tmp_path)
    assert observing.policy is None and observing.policy_log == tmp_path / "logins.jsonl"


def test_policy_table_overrides_a_base(tmp_path):
    """[policy] with base = NAME keeps the base's rows and overrides single keys."""
    settings = parse(
        '[policy]\nbase = "provider-50mb"\ntime_compression = 60\n[policy.tls]\nkeep_under_mb = 40\n',
        tmp_path,
    )
    policy = settings.policy
    assert policy.name == "provider-50mb, modified"
    assert policy.rules["tls"] == Rule(40, 20, 15, 5) and policy.rules["plain"] == P50.rules["plain"]
    assert policy.login_delay("a", 21 * MB, "tls") == 15
    full = parse(
        "[policy]\nname = 'lab'\n[policy.plain]\n"
        "keep_under_mb = 9\nabove_mb = 1\npoll_min_above = 2\npoll_min = 1\n",
        tmp_path,
    )
    assert full.policy.name == "lab" and set(full.policy.rules) == {"plain"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server]\npolicy = "provider-90mb"\n', "key 'server.policy': unknown policy 'provider-90mb'"),
        ("[server]\npolicy = 5\n", "key 'server.policy': expected a string"),
        ('[server]\npolicy = "provider-50mb"\n[policy]\nbase = "provider-30mb"\n', "not both"),
        ("[policy]\nbsae = 'provider-50mb'\n", "unknown key 'policy.bsae'"),
        (
            "[policy]\nbase = 'provider-50mb'\n[policy.tls]\npoll_minutes = 3\n",
            "unknown key 'policy.tls.poll_minutes'",
        ),
        ("[policy]\n[policy.tls]\nkeep_under_mb = 50\n", "key 'policy.tls.above_mb' is missing"),
        (
            "[policy]\nbase = 'provider-50mb'\ntime_compression = 0\n",
            "key 'policy.time_compression': must be more",
        ),
        (
            "[policy]\nbase = 'provider-50mb'\n[policy.plain]\nabove_mb = true\n",
            "key 'policy.plain.above_mb'",
        ),
        ("[policy]\nname = 'empty'\n", "key 'policy': give base = NAME"),
        ("[policy]\nbase = 'provider-50mb'\ntls = 3\n", "key 'policy.tls': expected a table"),
    ],
)
def test_bad_policy_config_names_file_and_key(tmp_path, text, message):
    """Every config mistake is one ConfigError naming the file and the key."""
    with pytest.raises(config.ConfigError) as error:
        parse(text, tmp_path)
    assert str(error.value).startswith(str(tmp_path / "pop3suite.toml"))
    assert message in str(error.value)


# ------------------------------------------------- per-user CAPA in the core


def capa_lines(session: ServerSession) -> list[str]:
    session.receive_data(b"CAPA\r\n")
    action = session.next_action()
    assert isinstance(action, Send)
    return action.data.decode().split("\r\n")[1:-2]


def test_core_announces_largest_delay_with_user_then_the_users_value():
    """RFC 2449 §6.5: "LOGIN-DELAY 900 USER" before login, this user's value after it."""
    session = ServerSession(SessionOptions(login_delay=900, login_delay_per_user=True))
    assert "LOGIN-DELAY 900 USER" in capa_lines(session)
    session.receive_data(b"USER alice\r\nPASS secret\r\n")
    session.next_action()
    assert isinstance(session.next_action(), Authenticate)
    session.accept_login("alice", [])
    session.options.login_delay = 300  # what the shell does for a small mailbox
    assert "LOGIN-DELAY 300" in capa_lines(session)
    assert not any(line.endswith(" USER") for line in capa_lines(session) if line.startswith("LOGIN-DELAY"))


def test_core_without_per_user_delay_is_unchanged():
    """A global login_delay is announced without USER, as before."""
    assert "LOGIN-DELAY 60" in capa_lines(ServerSession(SessionOptions(login_delay=60)))


# ------------------------------------------------------------- the login log


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_tracker_logs_json_lines_and_keeps_a_bounded_history(tmp_path):
    """Each login is one JSON line another process can read back; memory keeps the last few."""
    clock = Clock(1_700_000_000.0)
    tracker = LoginTracker(P50, tmp_path / "sub" / "log.jsonl", wall_clock=clock)
    for _ in range(40):
        tracker.record("bob", "plain", False, 300, 1000, 2, "pop3")
        clock.now += 120
    tracker.record("bob", "tls", True, 300, 1000, 2, "pop3s")
    assert len(tracker.history["bob"]) == 32
    assert tracker.observed_interval("bob") == 120
    assert tracker.observed_interval("nobody") is None
    with open(tmp_path / "sub" / "log.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"account": "cut sh')  # a line cut short by a crash
    records, bad = read_log(tmp_path / "sub" / "log.jsonl")
    assert bad == 1 and len(records["bob"]) == 41
    last = records["bob"][-1]
    assert (last.connection, last.outcome, last.policy, last.listener) == (
        "tls",
        "login-delay",
        "provider-50mb",
        "pop3s",
    )
    assert read_log(tmp_path / "missing.jsonl") == ({}, 0)


def test_observed_interval_is_the_median_of_recent_gaps():
    """One long gap (a night) does not hide a client that otherwise polls every minute."""
    times = [0, 60, 120, 180, 30_000, 30_060, 30_120]
    tracker = LoginTracker(None, wall_clock=Clock(0))
    for t in times:
        tracker.wall_clock = Clock(t)
        tracker.record("a", "plain", False, 0)
    assert observed_interval(tracker.history["a"]) == 60
    assert tracker.login_delay("a", 10**9, "tls") == 0  # observing only: no delay
    assert tracker.announced(0) == (None, False) and tracker.announced(30) == (30, False)
    assert LoginTracker(P50).announced(30) == (900, True)


def test_recent_logins_from_the_log_tail(tmp_path):
    """A restarted server learns each account's last accepted login from the end of the log."""
    clock = Clock(1_700_000_000.0)
    path = tmp_path / "log.jsonl"
    writer = LoginTracker(P50, path, wall_clock=clock)
    for _ in range(300):  # more than the tail that is read
        writer.record("old", "tls", False, 300)
    clock.now += 1000
    writer.record("bob", "plain", False, 300)
    clock.now += 100
    writer.record("bob", "plain", True, 300)  # refusals do not restart the delay
    clock.now += 20
    reader = LoginTracker(P50, path, wall_clock=clock)
    assert reader.recent_logins(tail_bytes=4096) == {"bob": 120}  # "old": older than the longest delay
    records, bad = read_log(path, tail_bytes=4096)
    assert bad == 0 and set(records) == {"old", "bob"} and len(records["old"]) < 300
    assert LoginTracker(None, path).recent_logins() == {}  # observing only: nothing enforced


def test_log_rotates_past_max_bytes_and_readers_see_both_files(tmp_path):
    """A long-running server's log stays bounded (current + one ``.1``), and
    the report and a restarted server still see the logins on both sides of
    the rotation."""
    clock = Clock(1_700_000_000.0)
    path = tmp_path / "log.jsonl"
    writer = LoginTracker(P50, path, max_bytes=4096, wall_clock=clock)
    for _ in range(200):  # about 40 KB of records: nine or ten rotations
        writer.record("alice", "plain", False, 300, 1000, 2, "pop3")
        clock.now += 60
    assert path.stat().st_size < 4096 and (tmp_path / "log.jsonl.1").stat().st_size >= 4096
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl", "log.jsonl.1"]
    records, bad = read_log(path)
    times = [r.time for r in records["alice"]]
    assert bad == 0 and times == sorted(times) and len(times) < 200  # older files are gone
    assert times[-1] == clock.now - 60
    # A tail longer than the current file spans both files.
    tail, _ = read_log(path, tail_bytes=path.stat().st_size + 500)
    assert 0 < len(tail["alice"]) < len(records["alice"]) and tail["alice"][-1].time == times[-1]
    assert LoginTracker(P50, path, wall_clock=clock).recent_logins() == {"alice": 60}
    never = LoginTracker(P50, tmp_path / "never.jsonl", max_bytes=0, wall_clock=clock)
    for _ in range(100):
        never.record("bob", "plain", False, 300)
    assert not (tmp_path / "never.jsonl.1").exists()


@pytest.mark.parametrize(
    ("value", "error"),
    [(-1, "must not be negative"), ("big", "expected a number"), (True, "expected a number")],
)
def test_policy_log_max_mb_errors_name_the_file_and_key(value, error):
    path = Path("/lab/pop3suite.toml")
    with pytest.raises(config.ConfigError, match=rf"^{path}: key 'server.policy_log_max_mb': {error}"):
        config.parse({"server": {"policy_log_max_mb": value}}, path)
    assert config.parse({"server": {"policy_log_max_mb": 0.5}}, path).policy_log_max_mb == 0.5
    assert config.parse({}, path).policy_log_max_mb == 64.0
