"""Who may log in: the credential check, as a small policy object.

It is consulted by the server shell but knows nothing of sockets, so every
rule is testable directly:

* Unknown users and wrong passwords fail alike, and an unknown user still
  costs one hash verification (no user enumeration by timing).
* An account with APOP on logs in only with APOP (RFC 1939 §13: a server
  offering both "should not allow both for one user").
* The APOP digest is the lower-case hex MD5 of the greeting timestamp and the
  secret (RFC 1939 §7).  The timestamp is unique per connection, so a digest
  captured from another session never matches again.
* SASL PLAIN with an authorization identity other than the login fails (no
  proxy logins here).
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Mapping

from pop3suite.proto import Authenticate, apop_digest

from . import passwords
from .config import AccountSettings


class Authenticator:
    """Checks :class:`~pop3suite.proto.Authenticate` requests."""

    def __init__(self, accounts: Mapping[str, AccountSettings]) -> None:
        self.accounts = dict(accounts)

    @functools.cached_property
    def _dummy_hash(self) -> str:
        return passwords.dummy_hash(a.password for a in self.accounts.values())

    @property
    def any_apop(self) -> bool:
        """True if some account has APOP on (then the greeting carries a
        timestamp)."""
        return any(a.apop for a in self.accounts.values())

    def is_cheap(self, request: Authenticate) -> bool:
        """True if :meth:`check` costs microseconds for this request (an APOP
        digest, or a ``{PLAIN}`` account's password), so the server may run
        it on the event loop instead of paying a thread hop (~15 % of a
        session's CPU in the profile).  Whatever verifies a scrypt hash --
        including the dummy hash for unknown users and refused requests --
        is not cheap.
        """
        account = self.accounts.get(request.username)
        if account is None:  # costs what the dummy costs, like a known account's check
            return request.mechanism == "APOP" or self._dummy_hash.startswith("{PLAIN}")
        if request.mechanism == "APOP":
            return True
        if account.apop or (request.authzid and request.authzid != request.username):
            return False
        return passwords.plain_secret(account.password) is not None

    def check(self, request: Authenticate, apop_timestamp: str | None = None) -> str | None:
        """The account name if the credentials are good, else None.

        May take tens of milliseconds (scrypt): call it from a worker thread.
        """
        account = self.accounts.get(request.username)
        if request.mechanism == "APOP":
            return self._check_apop(account, request, apop_timestamp)
        if account is None or account.apop or (request.authzid and request.authzid != request.username):
            passwords.verify_password(self._dummy_hash, request.secret)
            return None
        if passwords.verify_password(account.password, request.secret):
            return account.name
        return None

    @staticmethod
    def _check_apop(
        account: AccountSettings | None, request: Authenticate, timestamp: str | None
    ) -> str | None:
        secret = passwords.plain_secret(account.password) if account else None
        if account is None or not account.apop or secret is None or not timestamp:
            return None
        expected = apop_digest(timestamp, secret).encode("ascii")
        return account.name if hmac.compare_digest(expected, request.secret) else None
