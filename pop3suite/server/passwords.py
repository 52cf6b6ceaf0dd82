"""Password hashes: scrypt by default, ``{PLAIN}`` where APOP needs the secret.

Format (one string in the config)::

    $scrypt$n=16384,r=8,p=1$<salt b64>$<hash b64>
    {PLAIN}secret

scrypt is deliberately slow; the cost parameters are stored with each hash
so they can be tuned per lab (a load-test lab with many logins per second
wants a cheaper ``n``; docs/performance.md explains the trade-off).
Verification runs in a worker thread so it never blocks the event loop.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from collections.abc import Iterable

DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1


class BadHash(ValueError):
    """A stored hash string that cannot be parsed."""


#: The scrypt costs ``check_cost`` accepts: 2^1 (tests, load labs) to 2^17
#: (128 MiB per verification with r=8, the most under the 256 MiB cap).
MIN_N, MAX_N = 2, 2**17


def check_cost(n: int) -> None:
    """Raise :class:`BadHash` unless ``n`` is a usable scrypt cost.

    The trade-off (docs/performance.md): one verification costs about 4 ms
    of CPU at 2^10 on the project's 2.5 GHz test machine and grows linearly
    with n, so the default 2^14 is ~60-75 ms per login (~15 logins/s per
    core); a stolen config is brute-forced that much faster too.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < MIN_N or n > MAX_N or n & (n - 1):
        raise BadHash(f"scrypt n must be a power of two from {MIN_N} to {MAX_N} (2^17), got {n!r}")


def hash_password(password: str, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> str:
    """Hash ``password`` with scrypt and a fresh 16-byte salt."""
    check_cost(n)
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024)
    b64 = base64.b64encode
    return f"$scrypt$n={n},r={r},p={p}${b64(salt).decode()}${b64(digest).decode()}"


def check_format(stored: str) -> None:
    """Raise :class:`BadHash` if ``stored`` is not a hash this module reads."""
    if stored.startswith("{PLAIN}"):
        return
    _parse_scrypt(stored)


def _parse_scrypt(stored: str) -> tuple[dict[str, int], bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "scrypt":
        raise BadHash("expected '$scrypt$n=..,r=..,p=..$salt$hash' or '{PLAIN}secret'")
    try:
        params = {k: int(v) for k, v in (item.split("=") for item in parts[2].split(","))}
        salt = base64.b64decode(parts[3], validate=True)
        digest = base64.b64decode(parts[4], validate=True)
    except ValueError as error:
        raise BadHash(f"malformed scrypt hash: {error}") from None
    if set(params) != {"n", "r", "p"}:
        raise BadHash("scrypt hash needs exactly n, r and p")
    return params, salt, digest


def verify_password(stored: str, password: bytes) -> bool:
    """True if ``password`` matches ``stored``; constant-time comparison."""
    if stored.startswith("{PLAIN}"):
        return hmac.compare_digest(stored[7:].encode("utf-8"), password)
    params, salt, digest = _parse_scrypt(stored)
    candidate = hashlib.scrypt(
        password,
        salt=salt,
        n=params["n"],
        r=params["r"],
        p=params["p"],
        maxmem=256 * 1024 * 1024,
        dklen=len(digest),
    )
    return hmac.compare_digest(candidate, digest)


def plain_secret(stored: str) -> str | None:
    """The cleartext secret of a ``{PLAIN}`` entry (APOP needs it), else None."""
    return stored[7:] if stored.startswith("{PLAIN}") else None


@functools.cache
def _dummy(n: int, r: int, p: int) -> str:
    return hash_password(secrets.token_urlsafe(16), n=n, r=r, p=p)


def dummy_hash(stored_hashes: Iterable[str] = ()) -> str:
    """A hash no password matches, with the cost parameters of the first
    scrypt hash in ``stored_hashes``.  Verified for unknown users, so an
    unknown user costs the same time as a wrong password (no user
    enumeration by latency).  Made on first use, not at import.

    When the accounts are all ``{PLAIN}`` (as in a benchmark lab) a scrypt
    dummy would make unknown users the *slow* ones, which leaks just as
    well, so the dummy is then a ``{PLAIN}`` secret nobody knows."""
    hashes = list(stored_hashes)
    for stored in hashes:
        if stored.startswith("$scrypt$"):
            params, _, _ = _parse_scrypt(stored)
            return _dummy(params["n"], params["r"], params["p"])
    if hashes:
        return "{PLAIN}" + secrets.token_urlsafe(32)
    return _dummy(DEFAULT_N, DEFAULT_R, DEFAULT_P)
