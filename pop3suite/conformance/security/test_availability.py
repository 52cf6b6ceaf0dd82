"""§3.4 availability probes.  D2 (idle timer, NOOP keep-alive, no UPDATE) is
rfc1939/3/timer-*."""

from __future__ import annotations

import os
import ssl
import time
from pathlib import Path

from pop3suite.client import Pop3Client
from pop3suite.conformance.case import SHOULD, case, expect, observe, unimplemented
from pop3suite.conformance.helpers import SERVER_CLOSED, login_when_unlocked

from .probe import DOVECOT_LOGIN_TIMEOUT, open_raw, rss, server_config, server_pid


@case(
    "security/D1-slowloris-prelogin-deadline",
    SHOULD,
    "Dovecot",
    "login_timeout",
    "A client that trickles one byte at a time (no CRLF, no login) is closed by an absolute pre-login "
    "deadline (Dovecot: 3 minutes); the trickle does not extend it.",
    slow=True,
    hardening=True,
    ref="security-probes/3.4/D1",
    probes=["D1"],
)
def test_trickle_does_not_extend_prelogin_deadline(target, request):
    """A byte-at-a-time client is closed by an absolute pre-login deadline."""
    deadline = float(server_config(target).get("login_timeout", DOVECOT_LOGIN_TIMEOUT))
    idle = target.idle_timeout or 600.0
    step = min(20.0, deadline / 6, idle / 2)
    client, greeting = open_raw(target, "plain" if target.pop3 else "implicit")
    expect(greeting.startswith(b"+OK"), "greeting", expected="+OK", actual=greeting)
    started = time.monotonic()
    try:
        while time.monotonic() - started < deadline * 1.5 + 10:
            try:
                client.send_raw(b"N")
            except SERVER_CLOSED:
                break
            if client.closed_within(step):
                break
        else:
            expect(
                False,
                "closed by the pre-login deadline",
                expected=f"<= {deadline * 1.5 + 10:.0f} s",
                actual="still open",
            )
        took = time.monotonic() - started
        observe(
            request, f"closed after {took:.0f} s (deadline {deadline:.0f} s, one byte every {step:.1f} s)"
        )
        expect(
            took <= deadline * 1.5 + 10,
            "closed by the pre-login deadline",
            expected=f"~{deadline:.0f} s",
            actual=f"{took:.0f} s",
        )
    finally:
        client.close()


@case(
    "security/D3-connection-flood",
    SHOULD,
    "Dovecot",
    "mail_max_userip_connections",
    "A flood of connections from one address beyond the per-address limit is refused gracefully "
    "(-ERR [SYS/TEMP] / [IN-USE] or a close); a logged-in session is unaffected, and service "
    "recovers within seconds.",
    hardening=True,
    ref="security-probes/3.4/D3",
    probes=["D3"],
)
def test_connection_flood_is_refused_gracefully(pop, target, request):
    """A connection flood from one address is refused gracefully; logged-in users are unaffected."""
    limit = server_config(target).get("max_connections_per_ip")
    if limit == 0:
        unimplemented("the server is configured without a per-address limit")
    flood = 2 * limit if limit else 200
    holder = login_when_unlocked(pop, target)
    clients: list[Pop3Client] = []
    accepted, refused, stalled = 0, 0, 0
    endpoint = target.pop3 or target.pop3s
    mode = "plain" if target.pop3 else "implicit"
    try:
        for _ in range(flood):
            try:
                client, line = open_raw(target, mode, timeout=5)
            except ssl.SSLCertVerificationError:
                raise  # our trust setting: graded ERROR, not a refusal
            except OSError:  # refused, reset, timed out or a failed handshake: the server said no
                refused += 1
                continue
            clients.append(client)
            if line.startswith(b"+OK"):
                accepted += 1
            elif line.startswith(b"-ERR") or not line:
                refused += 1
            else:
                stalled += 1
        observe(request, f"{flood} connections to {endpoint.port}: {accepted} greeted, {refused} refused")
        expect(
            holder.noop().ok, "NOOP in the logged-in session during the flood", expected="+OK", actual="-ERR"
        )
        expect(
            stalled == 0,
            "every flood connection greeted or refused",
            expected="no stalls",
            actual=f"{stalled} stalled",
        )
        expect(
            refused > 0,
            f"a flood of {flood} connections from one address",
            expected="some refused",
            actual="all accepted",
        )
        if limit:
            expect(
                accepted <= limit,
                "connections accepted from one address",
                expected=f"<= {limit}",
                actual=accepted,
            )
    finally:
        for client in clients:
            client.close()


@case(
    "security/D4-mass-disconnect",
    SHOULD,
    "Dovecot 1.2.15 DoS",
    "D4",
    "Hundreds of connections (some logged in) reset at the same moment leave the server up.",
    hardening=True,
    ref="security-probes/3.4/D4",
    probes=["D4"],
)
def test_mass_reset_leaves_server_up(pop, target, request):
    """Hundreds of sessions reset at once leave the server up."""
    limit = server_config(target).get("max_connections_per_ip") or 200
    count = min(200, limit - 5)
    mode = "plain" if target.pop3 else "implicit"
    clients: list[Pop3Client] = []
    refused = False
    try:
        for i in range(count):
            client, line = open_raw(target, mode, timeout=10)
            if not line.startswith(b"+OK"):
                # An external target's per-address limit is unknown here:
                # stop at the first refusal (D3 judges the limit itself).
                client.close()
                refused = True
                break
            if i % 2:
                client.send_raw(b"USER nobody\r\n")
            clients.append(client)
        if refused and clients:
            clients.pop().reset()  # one slot below the limit for the logged-in holder
        reached = " (the server's per-address limit reached)" if refused else ""
        observe(request, f"{len(clients)} connections open{reached}")
        holder = login_when_unlocked(pop, target)
        if holder.stat()[0]:
            holder.dele(1)  # reset below without QUIT: must remove nothing (the guard checks)
        clients.append(holder)
    finally:
        # Reset everything, also when the case failed half-way: leaked
        # connections would count against the limit for every later case.
        for client in clients:
            client.reset()
    line = _greeting_after_reset(target, mode)
    expect(line.startswith(b"+OK"), "greeting right after the mass reset", expected="+OK", actual=line)


def _greeting_after_reset(target, mode: str, wait: float = 5.0) -> bytes:
    """The first greeting line within ``wait`` s: a server may need a moment
    to count the reset connections out of its per-address limit."""
    deadline = time.monotonic() + wait
    while True:
        fresh, line = open_raw(target, mode)
        fresh.close()
        if line.startswith(b"+OK") or time.monotonic() > deadline:
            return line
        time.sleep(0.2)


BIG = 100 * 1024 * 1024


@case(
    "security/D5-stalled-100mb-retr",
    SHOULD,
    "Dovecot",
    "pop3-client.h (POP3_OUTBUF_THROTTLE_SIZE)",
    "A RETR of a 100 MB message to a client that stops reading keeps the server's memory bounded "
    "(streaming with a throttle), and other users are served meanwhile.",
    slow=True,
    hardening=True,
    ref="security-probes/3.4/D5",
    probes=["D5"],
)
def test_stalled_big_retr_keeps_memory_bounded(pop, target, request):
    """A stalled 100 MB RETR keeps server memory bounded while others are served."""
    if not target.seed.startswith("maildir:") or target.second_user is None:
        unimplemented("white-box: needs the maildir seed route and a second user")
    pid = server_pid(target)
    if pid is None:
        unimplemented("the server process is not on this host")
    maildir = Path(target.seed.removeprefix("maildir:"))
    line = b"y" * 78 + b"\r\n"
    name = f"1700000001.M1P{os.getpid()}.security-d5,S={BIG}"
    path = maildir / "new" / name
    tmp = maildir / "tmp" / name
    with open(tmp, "wb") as handle:
        block = line * (1024 * 1024 // len(line))
        written = handle.write(b"Subject: d5\r\n\r\n")
        while written + len(block) <= BIG:
            written += handle.write(block)
    os.rename(tmp, path)
    try:
        baseline = rss(pid)
        client = login_when_unlocked(pop, target)
        sizes = client.list()
        number = max(sizes, key=lambda n: sizes[n])
        client.set_receive_buffer(4096)
        client.send_raw(b"RETR %d\r\n" % number)
        expect(client.read_line().startswith(b"+OK"), "RETR status", expected="+OK", actual="")
        time.sleep(3)
        other = pop(user=target.second_user)
        expect(other.noop().ok, "another user is served meanwhile", expected="+OK", actual="-ERR")
        other.quit()
        grown = rss(pid) - baseline
        observe(request, f"server RSS grew {grown / 2**20:.1f} MiB during a stalled 100 MB RETR")
        expect(
            grown < 50 * 2**20,
            "server memory during a stalled 100 MB RETR",
            expected="< 50 MiB growth",
            actual=f"{grown / 2**20:.0f} MiB",
        )
        client.reset()
    finally:
        time.sleep(0.5)
        path.unlink(missing_ok=True)
        for leftover in (maildir / "cur").glob(f"{name}*"):
            leftover.unlink()
