"""Result rows (median/min/max over rounds, CPU figures) and their table."""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    """One figure: its values over the rounds, with CPU and error notes."""

    group: str
    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    server_cpu_pct: list[float] = field(default_factory=list)
    client_cpu_pct: list[float] = field(default_factory=list)
    other_cpu_pct: list[float] = field(default_factory=list)
    server_ms_per_op: list[float] = field(default_factory=list)
    latency_p50_ms: list[float] = field(default_factory=list)
    latency_p95_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_errors(self, count: int, samples: list[str]) -> None:
        self.errors += count
        for sample in samples:
            if len(self.error_samples) < 5 and sample not in self.error_samples:
                self.error_samples.append(sample)

    @property
    def median(self) -> float | None:
        return median(self.values)

    def as_dict(self) -> dict[str, Any]:
        def summary(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            return {"median": statistics.median(values), "min": min(values), "max": max(values)}

        return {
            "group": self.group,
            "name": self.name,
            "unit": self.unit,
            **(summary(self.values) or {"median": None, "min": None, "max": None}),
            "values": self.values,
            "server_cpu_pct": summary(self.server_cpu_pct),
            "client_cpu_pct": summary(self.client_cpu_pct),
            "other_cpu_pct": summary(self.other_cpu_pct),
            "server_cpu_ms_per_op": summary(self.server_ms_per_op),
            "latency_p50_ms": summary(self.latency_p50_ms),
            "latency_p95_ms": summary(self.latency_p95_ms),
            "errors": self.errors,
            "error_samples": self.error_samples,
            "notes": self.notes,
        }


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def pow2(n: int) -> str:
    """``2^k`` for a power of two, else the number."""
    return f"2^{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else str(n)


def print_table(rows: list[Row]) -> None:
    """The bench_server table: one line per row, groups separated."""
    head = (
        f"{'benchmark':<44} {'unit':<10} {'median':>9} {'min':>9} {'max':>9} "
        f"{'srv CPU%':>8} {'cli CPU%':>8} {'oth CPU%':>8} {'srv ms/op':>9} {'p50 ms':>8} {'err':>4}"
    )
    print(head)
    print("-" * len(head))
    group = None
    for row in rows:
        if row.group != group:
            if group is not None:
                print()
            group = row.group
        values = row.values
        digits = 2 if values and max(values) < 10 else 1
        print(
            f"{row.name:<44} {row.unit:<10} {fmt(median(values), digits):>9} "
            f"{fmt(min(values) if values else None, digits):>9} "
            f"{fmt(max(values) if values else None, digits):>9} "
            f"{fmt(median(row.server_cpu_pct), 0):>8} {fmt(median(row.client_cpu_pct), 0):>8} "
            f"{fmt(median(row.other_cpu_pct), 0):>8} {fmt(median(row.server_ms_per_op), 2):>9} "
            f"{fmt(median(row.latency_p50_ms), 1):>8} {row.errors:>4}"
        )
    print_problems(rows)


def print_problems(rows: list[Row]) -> None:
    problems = [row for row in rows if row.errors or row.notes]
    if problems:
        print()
        for row in problems:
            for sample in row.error_samples:
                print(f"  {row.name}: error: {sample}")
            for note in row.notes:
                print(f"  {row.name}: note: {note}")


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
