"""``pop3suite soak``: load with faults against the reference server, and the
message ledger at the end (docs/operations.md).

Theory of operation
-------------------
One lab, half its accounts on Maildir and half on mbox, served by
``pop3suite serve`` as a child process (so it can be SIGKILLed).  For a
bounded time:

* SMTP senders deliver small messages, each with a nonce
  (:func:`pop3suite.load.accounting.make_message`): ``P`` (outcome unknown) before
  DATA, ``D`` once the server said 250.
* POP3 consumers log in, RETR everything (hashing it), DELE it and QUIT:
  ``R`` per retrieval, ``C`` when QUIT answered ``+OK``.  Each account has
  exactly one consumer, so nobody else removes its mail.
* Faults: a consumer now and then resets its connection (RST) in the middle
  of a RETR, or right after sending QUIT (in the middle of UPDATE); the
  server is SIGKILLed and restarted on the same ports; the mail root, a
  small tmpfs, is filled to the last block for a few seconds.

A session whose QUIT got no ``+OK`` (reset, kill, ``-ERR [SYS/TEMP]`` on a
full disk) may have removed all, some or none of its messages.  Its
consumer settles it at its next login to that account: a retrieved UID that
is gone was removed (``R`` + ``C`` under a settling id), one still there was
not (it is fetched again: POP3 is at-least-once).  At the end the server is
stopped, the mailboxes are scanned and :meth:`pop3suite.load.accounting.Ledger.reconcile`
must find 0 lost, 0 duplicated and 0 corrupted, per backend.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import random
import re
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

EXIT_USAGE = 2
PASSWORD = "soak-secret"
MESSAGE_SIZES = (600, 1500, 4000, 20_000)


def add_soak_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "soak",
        help="load with faults (resets, SIGKILL, full disk) on both backends; the ledger must balance",
        description="Run the reference server under SMTP delivery and POP3 load with faults for a bounded "
        "time; exit 0 when the ledger finds no message lost, duplicated or corrupted.",
    )
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--messages", type=int, default=0, help="stop early once this many were delivered (0: no)")
    p.add_argument("--accounts", type=int, default=16, help="accounts, half Maildir, half mbox (default 16)")
    p.add_argument("--senders", type=int, default=4, help="SMTP sender threads (default 4)")
    p.add_argument("--consumers", type=int, default=4, help="POP3 consumer threads (default 4)")
    p.add_argument("--tmpfs-mb", type=int, default=48, help="size of the tmpfs mail root (default 48)")
    p.add_argument("--no-tmpfs", action="store_true", help="no tmpfs (and so no full-disk fault)")
    p.add_argument("--report", metavar="DIR", help="write soak.json and server.log here")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=cmd_soak)


def cmd_soak(args: argparse.Namespace) -> int:
    for name in ("duration", "accounts", "senders", "consumers", "tmpfs_mb"):
        if getattr(args, name) <= 0:
            print(f"pop3suite: error: --{name.replace('_', '-')} must be more than 0", file=sys.stderr)
            return EXIT_USAGE
    if args.accounts < 2:
        print("pop3suite: error: --accounts must be at least 2 (one per backend)", file=sys.stderr)
        return EXIT_USAGE
    report_dir = Path(args.report) if args.report else Path(tempfile.mkdtemp(prefix="pop3suite-soak-report-"))
    report_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pop3suite-soak-"))
    soak = Soak(args, work, report_dir)
    try:
        result = soak.run()
    finally:
        soak.cleanup()
    (report_dir / "soak.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_summary(result, report_dir)
    return 0 if result["ok"] else 1


def print_summary(result: dict, report_dir: Path) -> None:
    print(f"pop3suite soak: {result['elapsed_s']:.0f} s, faults {result['faults']}")
    if result.get("disk_full_skipped"):
        print(f"pop3suite soak: full-disk fault skipped: {result['disk_full_skipped']}")
    for backend, ledger in result["ledger"].items():
        print(
            f"pop3suite soak: {backend}: delivered {ledger['delivered']}, retrieved {ledger['retrievals']}, "
            f"removed {ledger['removed']}, left {ledger['left']}, lost {ledger['lost']}, "
            f"duplicated {ledger['duplicated']}, corrupted {ledger['corrupted']}"
        )
    print(f"pop3suite soak: {'PASS' if result['ok'] else 'FAIL'} (details: {report_dir / 'soak.json'})")


# ----------------------------------------------------------------- server


class ServedLab:
    """``pop3suite serve`` on the lab, restartable on the same ports."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.process: subprocess.Popen[str] | None = None
        self.ports: dict[str, int] = {}

    def start(self) -> None:
        with open(self.log, "a", encoding="utf-8") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pop3suite",
                    "serve",
                    "--config",
                    str(self.config),
                    "--log-format",
                    "json",
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 30
        for line in self.process.stdout:
            found = re.search(r"listening: (\S+) on \S+:(\d+)", line)
            if found:
                self.ports[found[1]] = int(found[2])
            if "ready" in line:
                threading.Thread(target=self.process.stdout.read, daemon=True).start()
                return
            if time.monotonic() > deadline:
                break
        raise RuntimeError(f"pop3suite serve did not start (see {self.log})")

    def pin_ports(self) -> None:
        """Write the ports the first start got into the config, so a restart
        after SIGKILL listens where the clients look."""
        text = self.config.read_text(encoding="utf-8")
        for name in ("pop3", "smtp"):
            text = re.sub(
                rf"^{name}_port = .*$", f"{name}_port = {self.ports[name]}", text, count=1, flags=re.M
            )
        self.config.write_text(text, encoding="utf-8")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


# ------------------------------------------------------------------- soak


@dataclass
class Counters:
    sessions: int = 0
    commits: int = 0
    settled: int = 0
    client_errors: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fault(self, kind: str) -> None:
        with self.lock:
            self.faults[kind] = self.faults.get(kind, 0) + 1


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path, report_dir: Path) -> None:
        from pop3suite.load.accounting import Ledger

        self.args = args
        self.work = work
        self.report_dir = report_dir
        self.rng = random.Random(args.seed)
        self.ledger = Ledger()
        self.counters = Counters()
        self.stop_load = threading.Event()
        self.mounted: Path | None = None
        self.disk_full_skipped: str | None = None
        self.accounts = [f"soak{i:02d}" for i in range(args.accounts)]
        self.backend = {name: ("maildir" if i % 2 == 0 else "mbox") for i, name in enumerate(self.accounts)}
        self.delivered = itertools.count()
        self.delivered_n = 0

    # ----------------------------------------------------------- set-up

    def make_lab(self) -> Path:
        from pop3suite.server import passwords
        from pop3suite.server.lab import LabOptions, create_lab

        ports = {
            "pop3_port": "auto",
            "pop3s_port": 0,
            "smtp_port": "auto",
            "submission_port": 0,
            "smtps_port": 0,
        }
        options = LabOptions(
            password=PASSWORD,
            ports=ports,
            idle_timeout=60,
            login_failure_delay=0.1,
            scrypt_n=2**10,
            fsync=False,
        )
        lab = create_lab(self.work / "lab", options)
        hashed = passwords.hash_password(PASSWORD, n=2**10)
        text = lab.config_path.read_text(encoding="utf-8")
        text = text.replace("[server]\n", "[server]\nmax_connections_per_ip = 0\n", 1)
        text += "\n# soak accounts: even on Maildir, odd on mbox\n"
        for name in self.accounts:
            text += f'[accounts.{name}]\npassword = "{hashed}"\nstorage = "{self.backend[name]}"\n\n'
        lab.config_path.write_text(text, encoding="utf-8")
        self.mail_root = lab.directory / "mail"
        if not self.args.no_tmpfs:
            self.mount_tmpfs(self.mail_root)
        else:
            self.disk_full_skipped = "--no-tmpfs"
        return lab.config_path

    def mount_tmpfs(self, directory: Path) -> None:
        size = f"size={self.args.tmpfs_mb}m"
        try:
            result = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(directory)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError as error:
            self.disk_full_skipped = f"cannot run mount: {error}"
            return
        if result.returncode != 0:
            self.disk_full_skipped = (
                f"mount -t tmpfs not permitted: {result.stderr.strip() or result.returncode}"
            )
            return
        self.mounted = directory

    def cleanup(self) -> None:
        if getattr(self, "server", None) is not None:
            self.server.kill()
        if self.mounted is not None:
            subprocess.run(["umount", "-l", str(self.mounted)], capture_output=True, timeout=30, check=False)
            self.mounted = None
        subprocess.run(["rm", "-rf", str(self.work)], capture_output=True, timeout=120, check=False)

    # -------------------------------------------------------------- run

    def run(self) -> dict:
        config = self.make_lab()
        self.server = ServedLab(config, self.report_dir / "server.log")
        self.server.start()
        self.server.pin_ports()
        started = time.monotonic()
        threads = [
            threading.Thread(target=self.sender, args=(i,), daemon=True) for i in range(self.args.senders)
        ]
        for i in range(self.args.consumers):
            owned = self.accounts[i :: self.args.consumers]
            threads.append(threading.Thread(target=self.consumer, args=(i, owned), daemon=True))
        for thread in threads:
            thread.start()
        self.inject_faults(started)
        self.stop_load.set()
        for thread in threads:
            thread.join(120)
        alive = [t for t in threads if t.is_alive()]
        elapsed = time.monotonic() - started
        self.server.stop()
        result = self.reconcile()
        result.update(
            elapsed_s=round(elapsed, 1),
            faults=dict(self.counters.faults),
            sessions=self.counters.sessions,
            commits=self.counters.commits,
            settled_unknown_quits=self.counters.settled,
            client_errors=self.counters.client_errors,
            threads_left_running=len(alive),
            disk_full_skipped=self.disk_full_skipped,
            accounts={"maildir": self.accounts[0::2], "mbox": self.accounts[1::2]},
        )
        result["ok"] = result["ok"] and not alive
        return result

    def inject_faults(self, started: float) -> None:
        """SIGKILL + restart and full disk at spread-out times until the end."""
        duration = self.args.duration
        # At least 4 kills and 3 full disks a run, and at most a minute and a
        # half apart in a long one, which may also end early at --messages.
        kill_every = min(60.0, max(15.0, duration / 5))
        full_every = min(90.0, max(20.0, duration / 4))
        next_kill, next_full = kill_every * 0.7, full_every * 0.5
        while True:
            now = time.monotonic() - started
            if now >= duration or (self.args.messages and self.delivered_n >= self.args.messages):
                return
            if now >= next_kill:
                self.server.kill()
                self.counters.fault("server-sigkill")
                time.sleep(0.5)
                self.server.start()
                next_kill += kill_every
            elif now >= next_full and self.mounted is not None:
                self.fill_disk(3.0)
                self.counters.fault("disk-full")
                next_full += full_every
            time.sleep(0.2)

    def fill_disk(self, hold: float) -> None:
        """Fill the tmpfs to its last block, hold, then free it."""
        assert self.mounted is not None
        filler = self.mounted / "fill.bin"
        block = b"\0" * (1 << 20)
        with open(filler, "wb", buffering=0) as handle:
            for size in (1 << 20, 1 << 12):
                try:
                    while True:
                        handle.write(block[:size])
                except OSError:
                    continue
        time.sleep(hold)
        filler.unlink()

    # ---------------------------------------------------------- senders

    def sender(self, index: int) -> None:
        from pop3suite.load.accounting import digest, make_message

        rng = random.Random(self.args.seed * 1000 + index)
        smtp: smtplib.SMTP | None = None
        while not self.stop_load.is_set():
            if self.args.messages and self.delivered_n >= self.args.messages:
                break
            account = rng.choice(self.accounts)
            nonce = uuid.uuid4().hex
            data = make_message(nonce, rng.choice(MESSAGE_SIZES), account)
            try:
                if smtp is None:
                    smtp = smtplib.SMTP("127.0.0.1", self.server.ports["smtp"], timeout=30)
                self.ledger.pending(nonce, account)
                smtp.sendmail("soak@example.net", [f"{account}@example.test"], data)
            except smtplib.SMTPResponseException as error:  # 4xx/5xx: not delivered
                if error.smtp_code == 421:
                    smtp = _drop(smtp)
                time.sleep(0.05)
                continue
            except (smtplib.SMTPException, OSError):
                smtp = _drop(smtp)
                self.counters.client_errors += 1
                time.sleep(0.2)
                continue
            self.ledger.delivered(nonce, account, digest(data))
            self.delivered_n = next(self.delivered) + 1
        _drop(smtp)

    # -------------------------------------------------------- consumers

    def consumer(self, index: int, owned: list[str]) -> None:
        """Drain ``owned`` accounts over and over; after the load stops, one
        more pass settles every unknown QUIT."""
        rng = random.Random(self.args.seed * 2000 + index)
        unknown: dict[str, dict[str, tuple[str, str]]] = {}  # account -> uid -> (nonce, sha)
        serial = itertools.count()
        while not self.stop_load.is_set():
            for account in owned:
                if self.stop_load.is_set():
                    break
                self.pop_session(account, f"c{index}.{next(serial)}", rng, unknown, faults=True)
            time.sleep(0.05)
        deadline = time.monotonic() + 60
        while unknown and time.monotonic() < deadline:
            for account in list(unknown):
                self.pop_session(account, f"c{index}.{next(serial)}", rng, unknown, faults=False)
            time.sleep(0.2)

    def pop_session(
        self, account: str, sid: str, rng: random.Random, unknown: dict[str, dict], faults: bool
    ) -> None:
        from pop3suite.client import Pop3Client, Pop3ClientError
        from pop3suite.load.accounting import RetrSink

        pop = Pop3Client("127.0.0.1", self.server.ports["pop3"], timeout=30, transcript=False)
        retrieved: dict[str, tuple[str, str]] = {}
        quit_sent = False
        try:
            pop.connect()
            pop.user(account)
            if not pop.pass_(PASSWORD, check=False).ok:  # [IN-USE], [SYS/TEMP]: try again later
                pop.quit()
                return
            self.counters.sessions += 1
            uids = pop.uidl()
            self.settle(account, sid, set(uids.values()), unknown)
            fault = rng.random() if faults else 1.0
            numbers = sorted(uids)[:200]
            for number in numbers:
                if fault < 0.03 and number == numbers[0]:
                    pop.send_raw(b"RETR %d\r\n" % number)
                    pop.read_line()
                    pop.reset()  # RST in the middle of RETR: nothing may be removed
                    self.counters.fault("reset-in-retr")
                    return
                sink = RetrSink()
                pop.retr(number, sink=sink)
                if sink.nonce is not None:
                    retrieved[uids[number]] = (sink.nonce, sink.hexdigest())
                    self.ledger.retrieved(sink.nonce, account, sink.hexdigest(), sid, "delete")
                pop.dele(number)
            quit_sent = True
            if numbers and 0.03 <= fault < 0.06:
                pop.send_raw(b"QUIT\r\n")
                pop.reset()  # RST while UPDATE runs: all or none may be removed
                self.counters.fault("reset-in-update")
                unknown.setdefault(account, {}).update(retrieved)
                return
            reply = pop.quit() if not numbers else pop.command("QUIT", check=False)
            if reply.ok:
                self.ledger.committed(sid)
                self.counters.commits += 1
            else:  # -ERR [SYS/TEMP]: the UPDATE failed, maybe in part (Maildir)
                self.counters.fault("update-refused")
                unknown.setdefault(account, {}).update(retrieved)
        except (Pop3ClientError, OSError):
            self.counters.client_errors += 1
            if quit_sent and retrieved:  # QUIT sent, no answer: the server may have removed them
                unknown.setdefault(account, {}).update(retrieved)
            time.sleep(0.1)
        finally:
            pop.close()

    def settle(self, account: str, sid: str, present: set[str], unknown: dict[str, dict]) -> None:
        """An earlier QUIT without ``+OK``: a UID now gone was removed by it
        (committed), one still present was not (fetched again, at-least-once)."""
        pending = unknown.pop(account, None)
        if not pending:
            return
        gone = f"{sid}/settled"
        for uid, (nonce, sha) in pending.items():
            if uid not in present:
                self.ledger.retrieved(nonce, account, sha, gone, "delete")
        self.ledger.committed(gone)
        self.counters.settled += 1

    # -------------------------------------------------------- reconcile

    def reconcile(self) -> dict:
        from pop3suite.load.accounting import Ledger, scan_store
        from pop3suite.server import config
        from pop3suite.server.storage import open_store

        settings = config.load(self.server.config)
        left = scan_store(open_store(settings, fsync=False), self.accounts)
        commits = [e for e in self.ledger.events if e[0] == "C"]
        ledgers = {}
        ok = True
        for backend in ("maildir", "mbox"):
            names = {a for a in self.accounts if self.backend[a] == backend}
            events = [e for e in self.ledger.events if e[0] != "C" and e[2] in names] + commits
            report = Ledger(events).reconcile({n: a for n, a in left.items() if a in names})
            ok = ok and report["ok"] and report["delivered"] > 0
            ledgers[backend] = report
        return {"ledger": ledgers, "ok": ok}


def _drop(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.close()
    return None
