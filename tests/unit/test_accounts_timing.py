"""An unknown user must cost what a known user's failed check costs, whatever
password scheme the accounts use (no user enumeration by latency)."""

from __future__ import annotations

import time

from pop3suite.proto import Authenticate
from pop3suite.server import passwords
from pop3suite.server.accounts import Authenticator
from pop3suite.server.config import AccountSettings


def _median_seconds(check, request: Authenticate, rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        assert check(request) is None
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def test_all_plain_accounts_make_unknown_users_cheap_too() -> None:
    auth = Authenticator({"alice": AccountSettings("alice", "{PLAIN}right")})
    unknown = Authenticate("USER", "mallory", b"guess")
    known = Authenticate("USER", "alice", b"wrong")
    assert auth.is_cheap(unknown) and auth.is_cheap(known)
    assert auth._dummy_hash.startswith("{PLAIN}")
    # A scrypt dummy here took ~60 ms against microseconds for alice.
    assert _median_seconds(auth.check, unknown) < 0.005
    assert auth.check(Authenticate("USER", "alice", b"right")) == "alice"


def test_scrypt_accounts_make_unknown_users_pay_scrypt() -> None:
    stored = passwords.hash_password("right", n=2**10)
    auth = Authenticator({"alice": AccountSettings("alice", stored)})
    unknown = Authenticate("USER", "mallory", b"guess")
    assert not auth.is_cheap(unknown)
    assert auth._dummy_hash.startswith("$scrypt$n=1024,")
    assert auth.check(Authenticate("USER", "alice", b"right")) == "alice"
