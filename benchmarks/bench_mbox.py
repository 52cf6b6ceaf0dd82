"""What a big mailbox costs on mbox versus Maildir (load-workloads.md §3.2).

For each mailbox size (10 KB messages: 1 MB = 100 messages ... 100 MB =
10,000 messages) one lab per backend is filled through the backend's own
``deliver``, then measured:

* ``open``: ``open_maildrop`` + ``close`` in this process -- the storage's
  share of a login (mbox: read and index the whole file; Maildir: list the
  directories).
* ``update``: ``remove([1])`` of an open maildrop in this process -- the
  storage's share of DELE 1 + QUIT (mbox: rewrite the whole file; Maildir:
  one unlink).
* ``login``: USER/PASS + STAT + QUIT against ``pop3suite serve`` over TCP.
* ``uidl``: login + UIDL (every UID) + QUIT.
* ``dele1``: login + DELE 1 + QUIT (mbox: the whole file is rewritten;
  Maildir: one unlink).

Medians of ``--repeat`` runs, warm page cache (the files were just
written), fsync off unless ``--fsync``.  Prints a table and, with ``--json``, writes the numbers.  Not a
test: the numbers depend on the machine.

    .venv/bin/python benchmarks/bench_mbox.py               # 1 10 50 100 MB
    .venv/bin/python benchmarks/bench_mbox.py --sizes 1 10 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pop3suite.client import Pop3Client
from pop3suite.lab import ServerProcess, start_server
from pop3suite.server.lab import LabOptions, create_lab
from pop3suite.server.storage import open_store

PASSWORD = "bench"
MESSAGE_SIZE = 10 * 1024
USER = "alice"


def message(number: int) -> bytes:
    """A ~10 KB message with ordinary text lines and one 'From ' line
    (quoted on disk by the mbox backend)."""
    head = b"From: sender@example.test\r\nTo: alice@example.test\r\nSubject: message %d\r\n\r\n" % number
    line = b"The quick brown fox jumps over the lazy dog, message %06d, line.\r\n" % number
    body = b"From the archive:\r\n" + line * ((MESSAGE_SIZE - len(head)) // len(line))
    return head + body


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _drain(server: ServerProcess) -> None:
    """Keep reading the server's output so its pipe never fills."""
    assert server.process.stdout is not None
    for _ in server.process.stdout:
        pass


def measure(storage: str, megabytes: int, repeat: int, root: Path, fsync: bool) -> dict[str, float]:
    """Fill one lab of ``megabytes`` and time its operations."""
    ports = {"pop3_port": "auto", "pop3s_port": 0, "smtp_port": 0, "submission_port": 0, "smtps_port": 0}
    options = LabOptions(
        password=PASSWORD,
        ports=ports,
        idle_timeout=600,
        login_failure_delay=0.1,
        scrypt_n=2**10,
        fsync=fsync,
        storage=storage,
    )
    lab = create_lab(root / f"{storage}-{megabytes}", options)
    store = open_store(lab.settings, fsync=False)  # the fill is not what is measured
    count = megabytes * 1024 * 1024 // MESSAGE_SIZE
    started = time.perf_counter()
    for number in range(count):
        store.deliver(USER, message(number))
    fill = time.perf_counter() - started

    def open_close() -> None:
        store.open_maildrop(USER).close()

    def update_times() -> float:
        store = open_store(lab.settings)  # fsync as the server does it
        times = []
        for _ in range(repeat):
            drop = store.open_maildrop(USER)
            started = time.perf_counter()
            drop.remove([1])
            times.append(time.perf_counter() - started)
            drop.close()
        return statistics.median(times)

    result = {"messages": count, "fill_s": fill, "open_s": median_seconds(open_close, repeat)}
    result["update_s"] = update_times()
    server = start_server(lab.config_path)
    threading.Thread(target=_drain, args=(server,), daemon=True).start()
    port = server.endpoints["pop3"]

    def session(work: Callable[[Pop3Client], object]) -> Callable[[], None]:
        def run() -> None:
            pop = Pop3Client("127.0.0.1", port, timeout=300)
            pop.connect()
            pop.login(USER, PASSWORD)
            work(pop)
            pop.command("QUIT")
            pop.close()

        return run

    try:
        result["login_s"] = median_seconds(session(lambda pop: pop.stat()), repeat)
        result["uidl_s"] = median_seconds(session(lambda pop: pop.uidl()), repeat)
        result["dele1_s"] = median_seconds(session(lambda pop: pop.dele(1)), repeat)
    finally:
        server.stop()
    shutil.rmtree(lab.directory, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50, 100], metavar="MB")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument("--fsync", action="store_true", help="fsync like a production server (default off)")
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    rows = []
    columns = ("open ms", "update ms", "login ms", "uidl ms", "dele1 ms")
    print(f"{'MB':>5} {'msgs':>6} {'backend':<8} " + " ".join(f"{c:>9}" for c in columns))
    with tempfile.TemporaryDirectory(prefix="bench-mbox-") as directory:
        for megabytes in args.sizes:
            for storage in ("maildir", "mbox"):
                numbers = measure(storage, megabytes, args.repeat, Path(directory), args.fsync)
                rows.append({"megabytes": megabytes, "storage": storage, **numbers})
                print(
                    f"{megabytes:>5} {numbers['messages']:>6} {storage:<8} "
                    f"{numbers['open_s'] * 1000:>9.1f} {numbers['update_s'] * 1000:>9.1f} "
                    f"{numbers['login_s'] * 1000:>9.1f} "
                    f"{numbers['uidl_s'] * 1000:>9.1f} {numbers['dele1_s'] * 1000:>9.1f}",
                    flush=True,
                )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
