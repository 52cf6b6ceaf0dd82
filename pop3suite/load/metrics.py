"""Exact, mergeable latency histograms per step (HdrHistogram).

Locust's own stats round response times to about two significant digits;
verdicts are computed from these instead.  Every Locust ``request`` event
lands in :meth:`Recorder.record`: successes go into one HdrHistogram per
request name (microseconds, 3 significant digits, 1 µs .. 1 h), failures
are counted per name and exception type, and SPECmail2001 QoS compliance
(5 s; RETR 5 s + bytes/3000) is counted per request, since the RETR limit
depends on each message's size.  Workers ship :meth:`snapshot` deltas to the
master in ``report_to_master``; the master merges them with :meth:`merge`.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, DIGITS = 1, 3_600_000_000, 3
SPEC_BASE_MS = 5000.0
SPEC_BYTES_PER_MS = 3.0  # 3,000 B/s = half a 6,000 B/s modem (SPECmail2001 §6)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def spec_limit_ms(name: str, octets: int) -> float:
    """SPECmail2001 §6 response-time limit for one request."""
    if name.startswith(("RETR", "SMTP-DATA", "DELIVER")):
        return SPEC_BASE_MS + octets / SPEC_BYTES_PER_MS
    return SPEC_BASE_MS


class Recorder:
    """Per-name histograms and counters of one process (or merged)."""

    def __init__(self) -> None:
        self.histograms: dict[str, HdrHistogram] = {}
        self.failures: Counter[tuple[str, str]] = Counter()
        self.spec_within: Counter[str] = Counter()
        self.spec_total: Counter[str] = Counter()
        self.octets: Counter[str] = Counter()
        self.cells: dict[str, Recorder] = {}

    def record(
        self,
        name: str,
        response_time_ms: float,
        octets: int,
        exception: BaseException | None,
        cell: str | None = None,
    ) -> None:
        """Record one request; with ``cell`` (a client class) also in that
        cell's own recorder, so cells can be compared (keep vs delete ...)."""
        if cell is not None:
            sub = self.cells.get(cell)
            if sub is None:
                sub = self.cells[cell] = Recorder()
            sub.record(name, response_time_ms, octets, exception)
        self.spec_total[name] += 1
        if exception is not None:
            self.failures[(name, type(exception).__name__)] += 1
            return
        histogram = self.histograms.get(name)
        if histogram is None:
            histogram = self.histograms[name] = new_histogram()
        histogram.record_value(min(HIGHEST_US, max(LOWEST_US, int(response_time_ms * 1000))))
        self.octets[name] += octets or 0
        if response_time_ms <= spec_limit_ms(name, octets or 0):
            self.spec_within[name] += 1

    def snapshot(self, reset: bool = True) -> dict:
        """A JSON/msgpack-able delta; with ``reset`` the recorder starts over."""
        data = {
            "h": {name: h.encode().decode("ascii") for name, h in self.histograms.items()},
            "f": [[n, e, c] for (n, e), c in self.failures.items()],
            "w": dict(self.spec_within),
            "t": dict(self.spec_total),
            "o": dict(self.octets),
            "c": {cell: sub.snapshot(reset=False) for cell, sub in self.cells.items()},
        }
        if reset:
            self.__init__()
        return data

    def merge(self, data: dict) -> None:
        for name, blob in data.get("h", {}).items():
            histogram = self.histograms.get(name)
            if histogram is None:
                histogram = self.histograms[name] = new_histogram()
            histogram.decode_and_add(blob.encode("ascii") if isinstance(blob, str) else blob)
        for name, error, count in data.get("f", []):
            self.failures[(name, error)] += count
        self.spec_within.update(data.get("w", {}))
        self.spec_total.update(data.get("t", {}))
        self.octets.update(data.get("o", {}))
        for cell, sub_data in data.get("c", {}).items():
            sub = self.cells.get(cell)
            if sub is None:
                sub = self.cells[cell] = Recorder()
            sub.merge(sub_data)

    def names(self) -> list[str]:
        return sorted(set(self.spec_total) | set(self.histograms))

    def summary(self) -> dict[str, dict]:
        """Per name: count, failures, percentiles in ms (exact to 3 digits)."""
        failures_by_name: dict[str, dict[str, int]] = defaultdict(dict)
        for (name, error), count in self.failures.items():
            failures_by_name[name][error] = count
        out = {}
        for name in self.names():
            h = self.histograms.get(name)
            ok = h.get_total_count() if h else 0
            row = {
                "requests": self.spec_total[name],
                "ok": ok,
                "failures": sum(failures_by_name[name].values()),
                "failure_types": failures_by_name[name],
                "octets": self.octets[name],
                "spec_within": self.spec_within[name],
            }
            if h and ok:
                row.update(
                    {
                        "min_ms": h.get_min_value() / 1000,
                        "mean_ms": round(h.get_mean_value() / 1000, 3),
                        **{f"p{p:g}_ms": h.get_value_at_percentile(p) / 1000 for p in (50, 90, 95, 99, 99.9)},
                        "max_ms": h.get_max_value() / 1000,
                    }
                )
            out[name] = row
        return out
