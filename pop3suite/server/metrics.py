"""Prometheus metrics of the reference server (``serve --metrics-port``).

Every family lives in the server's own :class:`CollectorRegistry` (not the
process-wide default), so several servers in one process -- the test suite
runs many -- never collide.  Names start with ``pop3suite_``; labels take
only bounded values (listener names, TLS yes/no, outcomes, POP3 keywords or
``UNKNOWN``), never a user name or an address.

The hot path is one observation per command.  prometheus_client's
``Histogram.observe`` takes locks (0.86 µs with a cached label child, 2.9 µs
through ``labels()``), so command latencies go to :class:`CommandLatency`:
plain lists the event loop (the one writer) bumps without a lock (0.42 µs)
and a collector reads at scrape time.  docs/operations.md has the figures.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

#: POP3 commands are answered in microseconds to a few seconds (a big RETR
#: or an UPDATE): buckets from 50 µs to 10 s.
COMMAND_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0, 2.5, 5.0, 10.0)  # fmt: skip
STORAGE_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class CommandLatency(Collector):
    """``pop3suite_command_seconds``: a histogram per POP3 keyword, kept as
    bucket counts the event loop thread alone writes.  A scrape in the
    exporter thread may see an observation's count before its sum: harmless
    for a rate, and no lock on the hot path."""

    NAME = "pop3suite_command_seconds"

    def __init__(self, buckets: tuple[float, ...] = COMMAND_BUCKETS) -> None:
        self.buckets = buckets
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe(self, command: str, seconds: float) -> None:
        counts = self._counts.get(command)
        if counts is None:
            counts = self._counts[command] = [0] * (len(self.buckets) + 1)
            self._sums[command] = 0.0
        counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self._sums[command] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            self.NAME,
            "time from a command's parse to its last reply octet handed to the transport",
            labels=["command"],
        )
        for command, counts in list(self._counts.items()):
            running, cumulative = 0, []
            for bound, count in zip((*self.buckets, float("inf")), list(counts), strict=True):
                running += count
                cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
            family.add_metric([command], cumulative, self._sums[command])
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.NAME, "", labels=["command"])


class ServerMetrics:
    """All metric families of one server, and the exporter thread."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.sessions_active = Gauge(
            "pop3suite_sessions_active", "POP3 sessions open now", ["listener", "tls"], registry=registry
        )
        self.sessions = Counter(
            "pop3suite_sessions", "POP3 sessions ended", ["listener", "tls", "outcome"], registry=registry
        )
        self.logins = Counter(
            "pop3suite_logins",
            "POP3 login attempts by method and result",
            ["method", "result"],
            registry=registry,
        )
        self.login_delay_refusals = Counter(
            "pop3suite_login_delay_refusals",
            "logins refused by LOGIN-DELAY (RFC 2449 §6.5)",
            registry=registry,
        )
        self.commands = CommandLatency()
        registry.register(self.commands)
        self.octets_sent = Counter(
            "pop3suite_octets_sent", "octets written to POP3 clients", ["listener"], registry=registry
        )
        self.octets_received = Counter(
            "pop3suite_octets_received", "octets read from POP3 clients", ["listener"], registry=registry
        )
        self.mailbox_open = Histogram(
            "pop3suite_mailbox_open_seconds", "lock + snapshot of a maildrop at login",
            buckets=STORAGE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.update = Histogram(
            "pop3suite_update_seconds", "UPDATE (QUIT in TRANSACTION) storage time",
            buckets=STORAGE_BUCKETS, registry=registry,
        )  # fmt: skip
        self.messages_deleted = Counter(
            "pop3suite_messages_deleted", "messages removed by committed UPDATEs", registry=registry
        )
        self.messages_retrieved = Counter(
            "pop3suite_messages_retrieved", "RETR answered with a message", registry=registry
        )
        self.relay_windows = Counter(
            "pop3suite_relay_windows_opened", "POP-before-SMTP windows opened by a login", registry=registry
        )
        self.relay_decisions = Counter(
            "pop3suite_relay_decisions", "SMTP RCPT relay decisions", ["decision"], registry=registry
        )
        self.idle_timeouts = Counter(
            "pop3suite_idle_timeouts", "sessions closed by the idle or pre-login timer", registry=registry
        )
        self.refused_per_address = Counter(
            "pop3suite_connections_refused_per_address",
            "connections refused by server.max_connections_per_ip",
            registry=registry,
        )
        self._children: dict[tuple[int, tuple[str, ...]], Counter | Gauge] = {}
        self._http: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def child(self, family: Counter | Gauge, *labels: str) -> Counter | Gauge:
        """``family.labels(*labels)``, looked up once: prometheus_client's
        ``labels()`` costs about 2 µs (a lock and a tuple key), and a
        session touches six label sets."""
        key = (id(family), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = family.labels(*labels)
        return found

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` in a daemon thread; the bound
        port (``port`` 0 lets the OS pick one).

        Raises:
            OSError: the address cannot be bound.
        """
        self._http, self._thread = start_http_server(port, host, registry=self.registry)
        return self._http.server_address[1]

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
