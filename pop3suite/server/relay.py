"""POP-before-SMTP: which client addresses may relay, and until when.

The provider's rule (provider-pop-service.md §6): a successful POP3 login
on the plain POP3 port -- with or without STLS -- lets that client's address
relay through the port-25 listener for 20 minutes.  A login on the
implicit-TLS port does not, and neither does a failed login (the server
calls the login hook only after a login succeeded, so a wrong password, a
mailbox refused with ``[IN-USE]`` or a cleartext login refused by policy
never reach :meth:`RelayWindow.login_hook`).

The window is a map address -> expiry on an injected monotonic clock, so a
test can advance time instead of waiting 20 minutes.  Each new login
restarts the window from that login (DRAC and poprelayd do the same).
Addresses are compared as IP addresses: ``::ffff:192.0.2.1`` and
``192.0.2.1`` are one client.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable

#: The provider's window: 20 minutes.
DEFAULT_WINDOW_SECONDS = 20 * 60


def normalize_address(address: str) -> str:
    """The canonical text of an IP address (IPv4-mapped IPv6 -> IPv4).

    Anything that is not an IP address (a Unix socket path) is returned as
    it is.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


class RelayWindow:
    """Client addresses allowed to relay, each until an expiry time.

    Args:
        seconds: window length; 0 switches POP-before-SMTP off.
        clock: a monotonic clock in seconds (injected by tests).
    """

    def __init__(self, seconds: float = DEFAULT_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self._expiry: dict[str, float] = {}

    def open(self, address: str) -> None:
        """Let ``address`` relay for the next ``seconds``."""
        if self.seconds <= 0:
            return
        now = self.clock()
        self._prune(now)
        self._expiry[normalize_address(address)] = now + self.seconds

    def allowed(self, address: str) -> bool:
        """True while ``address`` is inside its window."""
        expiry = self._expiry.get(normalize_address(address))
        return expiry is not None and self.clock() < expiry

    def remaining(self, address: str) -> float:
        """Seconds left in ``address``'s window (0 if none)."""
        expiry = self._expiry.get(normalize_address(address))
        return 0.0 if expiry is None else max(0.0, expiry - self.clock())

    def close(self, address: str) -> None:
        """End ``address``'s window now."""
        self._expiry.pop(normalize_address(address), None)

    def _prune(self, now: float) -> None:
        if len(self._expiry) > 1024:
            for address in [a for a, expiry in self._expiry.items() if expiry <= now]:
                del self._expiry[address]

    def login_hook(self, listeners: Iterable[str]) -> Callable[[str, str, str, bool], None]:
        """A :data:`~pop3suite.server.session.LoginHook` that opens the window
        for logins on the named POP3 listeners (``pop3`` is the plain port,
        also after STLS; ``pop3s`` the implicit-TLS port)."""
        opening = frozenset(listeners)

        def hook(account: str, address: str, listener: str, tls_active: bool) -> None:
            if listener in opening:
                self.open(address)

        return hook
