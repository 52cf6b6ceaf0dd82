"""The login fast paths: what may run on the event loop without a thread
hop (``Authenticator.is_cheap``, ``MaildirStore.cheap_to_open``), and that
the answer never changes what :meth:`Authenticator.check` decides."""

from __future__ import annotations

from pathlib import Path

import pytest

from pop3suite.proto import Authenticate
from pop3suite.server import passwords
from pop3suite.server.accounts import Authenticator
from pop3suite.server.config import AccountSettings
from pop3suite.server.storage import maildir
from pop3suite.server.storage.maildir import MaildirStore


@pytest.fixture(scope="module")
def auth() -> Authenticator:
    scrypt = passwords.hash_password("pw", n=2**4)
    return Authenticator(
        {
            "plain": AccountSettings("plain", "{PLAIN}pw"),
            "hashed": AccountSettings("hashed", scrypt),
            "apopuser": AccountSettings("apopuser", "{PLAIN}pw", apop=True),
        }
    )


@pytest.mark.parametrize(
    ("request_", "cheap", "accepted"),
    [
        (Authenticate("USER", "plain", b"pw"), True, "plain"),
        (Authenticate("USER", "plain", b"wrong"), True, None),
        (Authenticate("PLAIN", "plain", b"pw"), True, "plain"),
        (Authenticate("PLAIN", "plain", b"pw", authzid="hashed"), False, None),
        (Authenticate("USER", "hashed", b"pw"), False, "hashed"),
        (Authenticate("USER", "nobody", b"pw"), False, None),
        (Authenticate("USER", "apopuser", b"pw"), False, None),  # APOP-only account
    ],
)
def test_is_cheap_and_check_agree(
    auth: Authenticator, request_: Authenticate, cheap: bool, accepted: str | None
) -> None:
    assert auth.is_cheap(request_) is cheap
    assert auth.check(request_) == accepted


def test_apop_is_cheap(auth: Authenticator) -> None:
    import hashlib

    stamp = "<1.2@host>"
    digest = hashlib.md5((stamp + "pw").encode()).hexdigest().encode()
    request = Authenticate("APOP", "apopuser", digest)
    assert auth.is_cheap(request)
    assert auth.check(request, stamp) == "apopuser"


def test_cheap_to_open(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = MaildirStore(str(tmp_path), fsync=False)
    store.ensure_mailbox("u")
    assert not store.cheap_to_open("u")  # never listed
    assert not store.cheap_to_open("../etc")  # not a mailbox name
    for i in range(3):
        store.deliver("u", b"Subject: %d\r\n\r\nx\r\n" % i)
    store.open_maildrop("u").close()
    assert store.cheap_to_open("u")
    monkeypatch.setattr(maildir, "INLINE_OPEN_MAX", 2)
    assert not store.cheap_to_open("u")  # too big for the event loop
    assert not MaildirStore(str(tmp_path), index=False).cheap_to_open("u")
