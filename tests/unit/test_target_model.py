"""The target model (pop3suite.target.model): URLs and USER:PASS options go
through the one parser each (pop3suite.target.preflight), and a bad one is a
TargetError naming the flag."""

from __future__ import annotations

import pytest

from pop3suite.target.model import Credentials, TargetError, build


def test_build_reads_url_and_account_options() -> None:
    target = build(
        "pop3://alice:s3cret%20pass@127.0.0.1:11110",
        pop3s="pop3s://alice:x@127.0.0.1:11995",
        apop_user="carol:with:colons",
        second_user="bob:",
    )
    assert target.user == Credentials("alice", "s3cret pass")
    assert (target.pop3.port, target.pop3s.port) == (11110, 11995)
    assert target.apop_user == Credentials("carol", "with:colons")
    assert target.second_user == Credentials("bob", "")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"apop_user": "carol"}, "--apop-user: expected USER:PASS, got 'carol'"),
        ({"second_user": ":pw"}, "--second-user: expected USER:PASS, got ':pw'"),
    ],
)
def test_bad_account_option_is_a_target_error_naming_the_flag(options: dict, message: str) -> None:
    with pytest.raises(TargetError) as caught:
        build("pop3://alice:pw@127.0.0.1:11110", **options)
    assert str(caught.value) == message


def test_bad_url_is_a_target_error() -> None:
    with pytest.raises(TargetError, match="expected pop3://HOST:PORT"):
        build("http://alice:pw@127.0.0.1:80")
