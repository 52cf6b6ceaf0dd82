"""The mailbox/polling policy over real sockets, and the ``pop3suite policy``
report (docs/policy.md; provider-pop-service.md §3; RFC 2449 §§6.5, 8.1.1).

The server's login clock is replaced by a clock the test moves, so "15
minutes later" takes no time; everything else (TLS, STLS, Maildir, the
JSON-lines log, the CLI) is the real thing.
"""

from __future__ import annotations

import json
import time

import pytest

from pop3suite.cli import main
from pop3suite.server.policy import BUILTIN_POLICIES
from tests.conftest import PASSWORD, open_client
from tests.integration.conftest_smtp import FakeClock

MB = 2**20
LINE = b"x" * 1022 + b"\r\n"  # 1 KiB per line, CRLF already: stored size = wire size


def message(size: int, subject: str = "big") -> bytes:
    header = f"From: a@example.test\r\nSubject: {subject}\r\n\r\n".encode()
    return header + LINE * ((size - len(header)) // len(LINE) + 1)


def delay_value(capa: list[str]) -> str | None:
    return next((line.split(" ", 1)[1] for line in capa if line.startswith("LOGIN-DELAY ")), None)


@pytest.fixture
def policy_server(server_factory, lab, tls_context):
    """Start the lab server with a policy; returns (running, clock, login)."""

    def start(policy=BUILTIN_POLICIES["provider-50mb"], **overrides):
        running = server_factory(policy=policy, policy_log=lab.directory / "policy-log.jsonl", **overrides)
        clock = FakeClock()
        running.server.context.clock = clock

        def login(user: str, mode: str, check: bool = True):
            """Connect (plain / stls / implicit), USER/PASS; the client and the PASS reply."""
            pop = open_client(running, mode, tls_context)  # "stls" has already run STLS
            assert pop.tls_active == (mode != "plain")
            pop.user(user)
            reply = pop.pass_(PASSWORD, check=check)
            return pop, reply

        def login_free(user: str, mode: str, check: bool = True):
            """``login``, retried while the previous session still holds the lock."""
            return retry_in_use(lambda: login(user, mode, check=False), check)

        return running, clock, login_free

    return start


def retry_in_use(attempt, check: bool = True, patience: float = 5.0):
    """Run ``attempt`` (-> client, reply) again while the reply is [IN-USE]: the
    server releases a maildrop just after its QUIT reply is sent."""
    deadline = time.monotonic() + patience
    while True:
        pop, reply = attempt()
        if reply.code != ("IN-USE",):
            break
        pop.close()
        assert time.monotonic() < deadline, "maildrop still locked after the session ended"
        time.sleep(0.02)
    assert reply.ok or not check, reply.raw
    return pop, reply


def test_big_mailbox_over_tls_gets_the_long_delay_and_a_small_one_does_not(policy_server, deliver):
    """21 MB over TLS: LOGIN-DELAY 900 for that user, a login 301 s later is refused
    ([LOGIN-DELAY], nothing removed, lock released); 1 KB: 300, allowed after 301 s."""
    deliver("alice", message(21 * MB))
    deliver("bob", message(1024, "small"))
    _, clock, login = policy_server()
    alice, _ = login("alice", "implicit")
    assert delay_value(alice.capa()) == "900"
    alice.quit()
    bob, _ = login("bob", "implicit")
    assert delay_value(bob.capa()) == "300"
    bob.quit()

    clock.advance(301)
    again, reply = login("bob", "implicit", check=False)
    assert reply.ok, reply.raw
    again.quit()
    refused, reply = login("alice", "implicit", check=False)
    assert not reply.ok and reply.code == ("LOGIN-DELAY",), reply.raw
    refused.close()

    clock.advance(600)  # 901 s after alice's last accepted login
    later, reply = login("alice", "implicit", check=False)
    assert reply.ok, reply.raw  # not [IN-USE]: the refused login released the lock
    count, size = later.stat()
    assert count == 1 and size > 21 * MB  # the refusal removed nothing
    later.quit()


def test_authorization_capa_announces_the_largest_delay_per_user(policy_server, tls_context):
    """Before login: "LOGIN-DELAY 900 USER" on every port (RFC 2449 §6.5: the value varies per user)."""
    running, _, _ = policy_server()
    for mode in ("plain", "implicit"):
        pop = open_client(running, mode, tls_context)
        assert delay_value(pop.capa()) == "900 USER"
        pop.close()


def test_plain_and_tls_differ_as_the_table_says(policy_server, deliver):
    """21 MB: plain POP3 polls every 5 min (under 50 MB), TLS -- STLS too -- every 15 min (over 20 MB)."""
    deliver("alice", message(21 * MB))
    _, clock, login = policy_server()
    plain, _ = login("alice", "plain")
    assert delay_value(plain.capa()) == "300"
    plain.quit()
    clock.advance(301)
    plain, reply = login("alice", "plain", check=False)
    assert reply.ok, reply.raw
    plain.quit()
    clock.advance(301)
    stls, reply = login("alice", "stls", check=False)
    assert not reply.ok and reply.code == ("LOGIN-DELAY",), reply.raw  # STLS counts as SSL
    stls.close()
    clock.advance(600)
    stls, reply = login("alice", "stls", check=False)
    assert reply.ok, reply.raw
    assert delay_value(stls.capa()) == "900"
    stls.quit()


def test_global_login_delay_combines_with_the_policy(policy_server, deliver):
    """The larger of the global login_delay and the policy's value applies, announced as such."""
    deliver("bob", message(1024, "small"))
    _, clock, login = policy_server(BUILTIN_POLICIES["provider-30mb"], login_delay=400)
    bob, _ = login("bob", "plain")
    assert delay_value(bob.capa()) == "400"
    bob.quit()
    clock.advance(350)
    refused, reply = login("bob", "plain", check=False)
    assert reply.code == ("LOGIN-DELAY",), reply.raw
    refused.close()


def test_login_log_records_sizes_connections_and_refusals(policy_server, deliver, lab, tls_context):
    """Every login with valid credentials is one JSON line: size, connection, outcome."""
    deliver("alice", message(4096, "small"))
    running, _, login = policy_server()
    pop, _ = login("alice", "implicit")
    pop.quit()
    refused, _ = login("alice", "plain", check=False)
    refused.close()
    wrong = open_client(running, "plain", tls_context)
    wrong.user("alice")
    assert wrong.pass_("not the password", check=False).code == ("AUTH",)  # not a poll: not logged
    wrong.close()
    lines = (lab.directory / "policy-log.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["account"], r["connection"], r["outcome"]) for r in records] == [
        ("alice", "tls", "ok"),
        ("alice", "plain", "login-delay"),
    ]
    assert records[0]["mailbox_bytes"] == records[1]["mailbox_bytes"] > 4096
    assert records[0]["required_delay_s"] == 300 and records[0]["policy"] == "provider-50mb"


def test_login_delay_survives_a_restart(server_factory, lab, tls_context):
    """A restarted server reads its log: a poll 0 s after the last login is still refused."""
    log_path = lab.directory / "policy-log.jsonl"
    first = server_factory(policy=BUILTIN_POLICIES["provider-50mb"], policy_log=log_path)
    pop = open_client(first, "plain", tls_context)
    pop.login("bob", PASSWORD)
    pop.quit()
    # A second server on the same lab stands for the restarted one: it knows
    # nothing but what it reads from the log at start.
    second = server_factory(policy=BUILTIN_POLICIES["provider-50mb"], policy_log=log_path)

    def attempt():
        client = open_client(second, "plain", tls_context)
        client.user("bob")
        return client, client.pass_(PASSWORD, check=False)

    again, reply = retry_in_use(attempt, check=False)
    assert reply.code == ("LOGIN-DELAY",), reply.raw
    again.close()


def test_policy_off_changes_nothing(server, connect, lab):
    """Without a policy: no LOGIN-DELAY announced, immediate re-login works, no log written."""
    for _ in range(2):
        pop = connect("plain")
        assert delay_value(pop.capa()) is None
        pop.login("alice", PASSWORD)
        pop.quit()
    assert not (lab.directory / "policy-log.jsonl").exists()


# ------------------------------------------------------------- the report


def test_policy_report_names_oversize_and_frequent_pollers_only(
    server_factory, lab, tls_context, deliver, capsys
):
    """``pop3suite policy`` names the over-size account and the too-frequent poller, not the compliant one,
    with what to ask them; exit status 0 (it is a report)."""
    guidance = lab.directory / "guidance.json"
    rows = [
        {
            "connection": c,
            "backend": "maildir",
            "keep_under_mb": 1,
            "above_mb": 0.5,
            "poll_min_above": 15,
            "poll_min": 5,
        }
        for c in ("tls", "plain")
    ]
    guidance.write_text(json.dumps({"rows": rows}), encoding="utf-8")
    deliver("alice", message(MB + 10 * 1024))  # over the 1 MB figure
    # Observe only: the log is written, nothing is enforced.
    running = server_factory(policy_log=lab.directory / "policy-log.jsonl")
    wall = FakeClock(1_700_000_000.0)
    running.server.context.logins.wall_clock = wall
    for minutes, user in [
        (0, "alice"),
        (0, "bob"),
        (1, "bob"),
        (2, "bob"),
        (3, "bob"),
        (0, "carol"),
        (10, "carol"),
    ]:
        wall.now = 1_700_000_000.0 + minutes * 60

        def attempt(user=user):
            pop = open_client(running, "implicit", tls_context)
            if user == "carol":  # carol is the APOP account
                return pop, pop.apop(user, PASSWORD, check=False)
            pop.user(user)
            return pop, pop.pass_(PASSWORD, check=False)

        pop, _ = retry_in_use(attempt)
        pop.quit()

    assert main(["policy", "--config", str(lab.config_path), "--policy", str(guidance), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["over_policy"] == ["alice", "bob"]
    by_name = {a["account"]: a for a in report["accounts"]}
    assert by_name["alice"]["over_size"] and not by_name["alice"]["too_frequent"]
    assert by_name["alice"]["ask"][0] == "reduce the mailbox below 1 MB"
    assert by_name["bob"]["too_frequent"] and by_name["bob"]["observed_interval_s"] == 60
    assert by_name["bob"]["ask"] == ["poll no more often than every 5 min"]
    assert "carol" not in by_name

    assert main(["policy", "--config", str(lab.config_path), "--policy", str(guidance)]) == 0
    text = capsys.readouterr().out
    assert "3 accounts, 2 over policy: alice, bob" in text
    assert "alice: please reduce the mailbox below 1 MB" in text
    assert "carol" not in text


def test_policy_report_bad_config_exits_2_naming_file_and_key(lab, tmp_path, capsys):
    """A config the user must fix: exit 2 and one line naming the file and the key."""
    bad = tmp_path / "bad.toml"
    bad.write_text(
        lab.config_path.read_text(encoding="utf-8").replace(
            "[server]\n", '[server]\npolicy = "provider-99mb"\n', 1
        ),
        encoding="utf-8",
    )
    assert main(["policy", "--config", str(bad)]) == 2
    error = capsys.readouterr().err
    assert str(bad) in error and "key 'server.policy'" in error
    assert main(["policy", "--config", str(lab.config_path)]) == 2  # no policy anywhere
    assert "no policy" in capsys.readouterr().err
    assert main(["policy", "--config", str(lab.config_path), "--policy", "missing.json"]) == 2
    assert "missing.json: no such guidance file" in capsys.readouterr().err
