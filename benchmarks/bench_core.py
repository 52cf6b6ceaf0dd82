"""Micro-benchmarks of the sans-I/O core, :mod:`pop3suite.proto` (numbers, not tests).

No sockets and no server: these time the pure-Python code that every RETR
and every command goes through, so they show the core's ceiling apart from
the network, TLS and the event loop.

* body framing on a 20 MB message fed in 256 KB chunks (chunk boundaries
  fall anywhere, also inside a line): :func:`encode_body` on CRLF and on
  bare-LF input, :class:`DotStuffer` alone (what the server runs for a
  CRLF-clean Maildir file), :func:`wire_size` (the LIST size of a file
  without ``W=``), and :class:`BodyReader` (the client side), in MB/s;
* :class:`ServerSession` commands per second for a pipelined STAT/LIST/NOOP
  stream fed in 64 KB chunks, with a 20-message and a 10,000-message listing.

Every figure is the median over ``--rounds`` rounds (each round repeats the
work for at least ``--min-time`` seconds), with min and max.

Usage::

    python benchmarks/bench_core.py [--quick] [--rounds N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pop3suite.proto import (
    BodyReader,
    CrlfNormalizer,
    DotStuffer,
    MessageInfo,
    Send,
    ServerSession,
    SessionOptions,
    encode_body,
    wire_size,
)
from pop3suite.proto.server import Authenticate

MB = 1_000_000
CHUNK = 256 * 1024
COMMAND_CHUNK = 64 * 1024


def make_text(size: int, dot_every: int = 25, newline: bytes = b"\r\n") -> bytes:
    """About ``size`` octets of mail text: short lines (1-75 octets), every
    ``dot_every``-th line starting with a dot, some lines a lone dot."""
    words = b"the quick brown fox jumps over the lazy dog while POP3 servers stuff dots".split()
    lines = [b"Subject: core benchmark", b"From: bench@example.test", b""]
    for i in range(2000):
        line = b" ".join(words[: (i * 7) % len(words)])[: (i * 13) % 76]
        if i % dot_every == 0:
            line = b"." + line
        elif dot_every > 1 and i % (dot_every * 4) == 7:
            line = b"."
        lines.append(line)
    block = newline.join(lines) + newline
    text = block * (size // len(block) + 1)
    return text[: text.rfind(newline, 0, size) + len(newline)]


def chunked(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# ---------------------------------------------------------------- timing


@dataclass
class Row:
    group: str
    name: str
    unit: str
    values: list[float] = field(default_factory=list)  # by wall-clock time (perf_counter)
    cpu_values: list[float] = field(default_factory=list)  # by CPU time (process_time)
    note: str = ""

    def summary(self) -> list[float]:
        return [
            statistics.median(self.values),
            min(self.values),
            max(self.values),
            statistics.median(self.cpu_values),
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "name": self.name,
            "unit": self.unit,
            "median": statistics.median(self.values),
            "min": min(self.values),
            "max": max(self.values),
            "values": self.values,
            "cpu_time_median": statistics.median(self.cpu_values),
            "cpu_time_values": self.cpu_values,
            "note": self.note,
        }


def measure(row: Row, work: Callable[[], float], rounds: int, min_time: float) -> Row:
    """Fill ``row`` with rates over ``rounds`` rounds; ``work`` does one unit
    of work and returns its size (MB, commands ...).  Each round repeats it
    for at least ``min_time`` seconds and records size per wall-clock second
    (``perf_counter``) and per CPU second (``process_time``: on a busy
    machine the second is steadier, since time spent waiting for a CPU does
    not count)."""
    work()  # warm-up (imports, caches, first allocations)
    for _ in range(rounds):
        done = 0.0
        cpu_started = time.process_time()
        started = time.perf_counter()
        while True:
            done += work()
            elapsed = time.perf_counter() - started
            if elapsed >= min_time:
                break
        cpu = time.process_time() - cpu_started
        row.values.append(done / elapsed)
        row.cpu_values.append(done / cpu if cpu > 0 else float("nan"))
    return row


# ---------------------------------------------------------------- body framing


def framing_rows(args: argparse.Namespace) -> list[Row]:
    crlf_text = make_text(args.size)
    lf_text = crlf_text.replace(b"\r\n", b"\n")
    dense_text = make_text(args.size, dot_every=1)
    crlf_chunks, lf_chunks = chunked(crlf_text), chunked(lf_text)
    wire = b"".join(encode_body(crlf_chunks))
    wire_chunks = chunked(wire)
    dense_wire_chunks = chunked(b"".join(encode_body(chunked(dense_text))))
    size_mb = len(crlf_text) / MB

    # Correctness first: the two sides must undo each other byte for byte.
    if b"".join(encode_body(lf_chunks)) != wire:
        raise AssertionError("encode_body(LF input) differs from encode_body(CRLF input)")
    for name, text, chunks in (("text", crlf_text, wire_chunks), ("dense", dense_text, dense_wire_chunks)):
        reader = BodyReader()
        body = b"".join(reader.feed(chunk) for chunk in chunks)
        if not reader.finished or body != text or reader.unstuffed_dot_lines or reader.leftover:
            raise AssertionError(f"BodyReader did not give back the {name} message")
    if wire_size(lf_chunks) != len(crlf_text):
        raise AssertionError("wire_size(LF input) != length of the CRLF form")

    def encode(chunks: list[bytes]) -> Callable[[], float]:
        def work() -> float:
            for _ in encode_body(chunks):
                pass
            return size_mb

        return work

    def stuff_only() -> float:
        stuffer = DotStuffer()
        for chunk in crlf_chunks:
            stuffer.feed(chunk)
        stuffer.finish()
        return size_mb

    def normalize_lf() -> float:
        normalizer = CrlfNormalizer()
        for chunk in lf_chunks:
            normalizer.feed(chunk)
        normalizer.finish()
        return size_mb

    def read(chunks: list[bytes], mb: float) -> Callable[[], float]:
        def work() -> float:
            reader = BodyReader()
            for chunk in chunks:
                reader.feed(chunk)
            return mb

        return work

    lines = crlf_text.count(b"\n")
    dots = crlf_text.count(b"\n.")
    dense_mb = len(dense_text) / MB
    label = f"{size_mb:.0f} MB, {CHUNK // 1024} KB chunks"
    cases: list[tuple[str, Callable[[], float], str]] = [
        (f"encode_body, CRLF input ({label})", encode(crlf_chunks), ""),
        (f"encode_body, bare-LF input ({label})", encode(lf_chunks), "LF -> CRLF, then stuffing"),
        (f"DotStuffer only, CRLF input ({label})", stuff_only, "server path for CRLF-clean files"),
        (f"CrlfNormalizer, bare-LF input ({label})", normalize_lf, "what wire_size() runs"),
        (f"BodyReader ({label})", read(wire_chunks, size_mb), f"{lines} lines, {dots} dot lines"),
        (
            f"BodyReader, every line a dot line ({dense_mb:.0f} MB)",
            read(dense_wire_chunks, dense_mb),
            "Python loop per dot line",
        ),
    ]
    rows = []
    for name, work, note in cases:
        rows.append(measure(Row("framing", name, "MB/s", note=note), work, args.rounds, args.min_time))
        _progress(f"{name}: {statistics.median(rows[-1].values):.0f} MB/s")
    return rows


# ---------------------------------------------------------------- server session


def logged_in_session(messages: int) -> ServerSession:
    session = ServerSession(SessionOptions())
    session.receive_data(b"USER bench\r\nPASS secret\r\n")
    first = session.next_action()
    second = session.next_action()
    if not isinstance(first, Send) or not isinstance(second, Authenticate):
        raise AssertionError(f"unexpected login actions {first!r}, {second!r}")
    listing = [MessageInfo(1000 + i, f"uid{i:06d}") for i in range(messages)]
    session.accept_login("bench", listing)
    return session


def session_rows(args: argparse.Namespace) -> list[Row]:
    cases = [
        ("STAT/LIST/NOOP pipelined, 20-message listing", b"STAT\r\nLIST\r\nNOOP\r\n", 20, 30_000),
        ("NOOP pipelined, 20-message listing", b"NOOP\r\n", 20, 30_000),
        ("STAT/NOOP pipelined, 10,000-message listing", b"STAT\r\nNOOP\r\n", 10_000, 1_000),
    ]
    rows = []
    for name, unit_cmds, messages, repeat in cases:
        per_unit = unit_cmds.count(b"\n")
        stream = unit_cmds * repeat
        chunks = chunked(stream, COMMAND_CHUNK)
        expected = per_unit * repeat

        def work(chunks: list[bytes] = chunks, messages: int = messages, expected: int = expected) -> float:
            session = logged_in_session(messages)
            count = 0
            for chunk in chunks:
                session.receive_data(chunk)
                while (action := session.next_action()) is not None:
                    if not isinstance(action, Send) or not action.data.startswith(b"+OK"):
                        raise AssertionError(f"unexpected action {action!r}")
                    count += 1
            if count != expected:
                raise AssertionError(f"{count} replies for {expected} commands")
            return count

        rows.append(measure(Row("session", name, "commands/s"), work, args.rounds, args.min_time))
        _progress(f"{name}: {statistics.median(rows[-1].values):,.0f} commands/s")
    return rows


# ---------------------------------------------------------------- main


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def print_table(rows: list[Row]) -> None:
    head = f"{'benchmark':<58} {'unit':<11} {'median':>10} {'min':>10} {'max':>10} {'by CPU':>10}  note"
    print(head)
    print("-" * len(head))
    group = None
    for row in rows:
        if group is not None and row.group != group:
            print()
        group = row.group
        cells = [f"{v:>10,.0f}" if v >= 100 else f"{v:>10.2f}" for v in row.summary()]
        print(f"{row.name:<58} {row.unit:<11} {' '.join(cells)}  {row.note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Micro-benchmarks of the pop3suite sans-I/O core.")
    parser.add_argument("--quick", action="store_true", help="3 short rounds")
    parser.add_argument("--rounds", type=int, help="rounds per figure (default 7, --quick 3)")
    parser.add_argument("--min-time", type=float, help="seconds per round (default 0.5, --quick 0.2)")
    parser.add_argument("--size", type=int, default=20 * MB, help="message size in octets (default 20 MB)")
    parser.add_argument("--json", metavar="OUT", help="write every number to this JSON file")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.min_time = args.min_time or (0.2 if args.quick else 0.5)

    started = time.monotonic()
    rows = framing_rows(args) + session_rows(args)
    elapsed = time.monotonic() - started
    print(
        f"\npop3suite core benchmarks: Python {platform.python_version()} on {platform.machine()}; "
        f"rounds={args.rounds}, >= {args.min_time}s each; median/min/max over rounds by wall-clock time, "
        "'by CPU' = median by CPU time; MB = 10^6 octets\n"
    )
    print_table(rows)
    print(f"\ntotal {elapsed:.1f} s")
    if args.json:
        payload = {
            "meta": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "args": vars(args),
                "elapsed_seconds": round(elapsed, 1),
            },
            "results": [row.as_dict() for row in rows],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"numbers written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
