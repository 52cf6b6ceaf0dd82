"""Dovecot as a benchmark target, through ``scripts/peers/dovecot.sh``.

The peer is started with the benchmark's accounts (``PEER_USERS``) and
password (``{PLAIN}`` in a passwd-file, as the script always writes), in
its high-performance login mode (``service_count = 0``; docs/peers.md).
Mail is written straight into its Maildirs -- the same bytes the reference
server gets -- as ``new/<unique>,S=<size>,W=<size>`` files owned by the
peer's mail user, i.e. what ``dovecot.sh seed`` does, without a process per
message (10,000 of them for the UIDL mailbox).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pop3suite.netutil import free_port

from .messages import wire
from .targets import PASSWORD, MailPlan, Target, account_names

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "peers" / "dovecot.sh"
PEER_ROOT = Path("/var/tmp/pop3suite-peers")  # not under a 0700 parent (docs/peers.md)


class DovecotUnavailable(RuntimeError):
    """The peer cannot run here (not root, no apt-get ...): skip, do not fail."""


def _env_file(path: Path) -> dict[str, str]:
    out = subprocess.run(
        ["bash", "-c", 'set -a; . "$1"; env', "_", str(path)], capture_output=True, text=True, check=True
    )
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if line.startswith("PEER_"))


def _write_message(box: Path, unique: str, data: bytes, uid: int, gid: int) -> Path:
    body = wire(data)
    tmp = box / "tmp" / unique
    final = box / "new" / f"{unique},S={len(body)},W={len(body)}"
    tmp.write_bytes(body)
    os.chown(tmp, uid, gid)
    os.chmod(tmp, 0o600)
    os.rename(tmp, final)
    return final


def build_dovecot(plan: MailPlan, concurrency: int, retr: int) -> Target:
    """Start a private Dovecot with the benchmark accounts and mail."""
    PEER_ROOT.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="bench-", dir=PEER_ROOT))
    names = account_names(concurrency, retr)
    users = names["sessions"] + names["retr"] + names["special"]
    env = {
        **os.environ,
        "PEER_POP3_PORT": str(free_port()),
        "PEER_POP3S_PORT": str(free_port()),
        "PEER_PASSWORD": PASSWORD,
        "PEER_USERS": " ".join(users),
    }
    done = subprocess.run([str(SCRIPT), "start", str(directory)], env=env, capture_output=True, text=True)
    if done.returncode == 4:
        shutil.rmtree(directory, ignore_errors=True)
        raise DovecotUnavailable(done.stderr.strip().splitlines()[-1] if done.stderr else "exit 4")
    if done.returncode != 0:
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"dovecot.sh start failed ({done.returncode}): {done.stderr.strip()}")
    peer = _env_file(directory / "peer.env")
    root_pid = int((directory / "dovecot.pid").read_text().split()[0])

    def stop() -> None:
        subprocess.run([str(SCRIPT), "stop", str(directory)], capture_output=True, text=True)
        shutil.rmtree(directory, ignore_errors=True)

    try:
        mail = Path(peer["PEER_MAILDIR_ROOT"])
        owner = os.stat(mail / users[0])
        uid, gid = owner.st_uid, owner.st_gid
        stamp = int(time.time())
        for name in names["sessions"]:
            for i, data in enumerate(plan.session_msgs):
                _write_message(mail / name, f"{stamp - 10 + i}.M{i}P{os.getpid()}Q{i}.bench", data, uid, gid)
        first = mail / names["retr"][0]
        files = [
            _write_message(first, f"{stamp - 10 + i}.M{i}P{os.getpid()}Q{i}.bench", data, uid, gid)
            for i, data in enumerate(plan.retr_msgs)
        ]
        for name in names["retr"][1:]:
            for path in files:
                os.link(path, mail / name / "new" / path.name)
        for i, data in enumerate(plan.bulk()):
            _write_message(mail / "bulk", f"{stamp - 100}.M{i}P{os.getpid()}Q{i}.bench", data, uid, gid)
    except Exception:
        stop()
        raise
    return Target(
        name="dovecot",
        ports={"none": int(peer["PEER_POP3_PORT"]), "implicit": int(peer["PEER_POP3S_PORT"])},
        cafile=peer["PEER_CA"],
        root_pid=root_pid,
        session_accounts={"PLAIN": names["sessions"]},
        retr_accounts=names["retr"],
        plan=plan,
        bulk_uids=None,  # Dovecot assigns its own (%08Xu%08Xv)
        stop=stop,
        extra={"directory": str(directory)},
    )


def dovecot_version() -> str:
    done = subprocess.run(["dovecot", "--version"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"
