"""The reference server as a benchmark target: a temporary lab (free ports,
fsync off), the benchmark accounts appended to its ``pop3suite.toml``, mail
delivered with ``MaildirStore.deliver``, and ``pop3suite serve`` as its own
process."""

from __future__ import annotations

import os
import shutil
import threading
from collections import deque
from pathlib import Path

from pop3suite.lab import ServerProcess, start_server
from pop3suite.netutil import free_port
from pop3suite.server import config, passwords
from pop3suite.server.lab import LabOptions, create_lab
from pop3suite.server.storage import MaildirStore

from .results import pow2
from .targets import PASSWORD, MailPlan, Target, account_names


def build_reference(
    directory: Path,
    plan: MailPlan,
    concurrency: int,
    retr: int,
    scrypt_n: list[int],
    server_settings: dict[str, str] | None = None,
) -> Target:
    """Build the lab, start the server, return the running target.

    Session accounts ``s<i>`` have ``{PLAIN}`` passwords (what Dovecot's
    peer uses); for each cost in ``scrypt_n`` there are also ``z<n>_<i>``
    accounts with scrypt hashes, so the price of hashing shows as its own
    row.  ``server_settings`` are extra ``[server]`` lines (TOML values).
    """
    ports = {"pop3_port": free_port(), "pop3s_port": free_port()}
    ports.update(smtp_port=0, submission_port=0, smtps_port=0)
    options = LabOptions(
        password=PASSWORD, ports=ports, idle_timeout=600, login_failure_delay=0.2, scrypt_n=2**10, fsync=False
    )
    lab = create_lab(directory, options)
    names = account_names(concurrency, retr)
    sessions = {"PLAIN": names["sessions"]}
    hashes = {name: "{PLAIN}" + PASSWORD for name in names["sessions"] + names["retr"] + names["special"]}
    for n in scrypt_n:
        hashed = passwords.hash_password(PASSWORD, n=n)  # one hash per cost: same verify time
        label = f"scrypt n={pow2(n)}"
        sessions[label] = [f"z{n}_{i}" for i in range(concurrency)]
        hashes.update(dict.fromkeys(sessions[label], hashed))
    text = lab.config_path.read_text(encoding="utf-8")
    extra = {"max_connections_per_ip": "0", **(server_settings or {})}
    lines = "".join(f"{key} = {value}\n" for key, value in extra.items())
    text = text.replace("[server]\n", "[server]\n" + lines, 1)
    text += "\n# added by benchmarks/benchlib/reflab.py\n"
    text += "".join(f'[accounts.{name}]\npassword = "{stored}"\n\n' for name, stored in hashes.items())
    lab.config_path.write_text(text, encoding="utf-8")
    settings = config.load(lab.config_path)  # fail early on a bad config
    store = MaildirStore(str(settings.mail_root), fsync=False)
    for name in hashes:
        store.ensure_mailbox(name)
    for label_accounts in sessions.values():
        for name in label_accounts:
            for data in plan.session_msgs:
                store.deliver(name, data)
    first = names["retr"][0]
    for data in plan.retr_msgs:
        store.deliver(first, data)
    first_new = Path(store.user_dir(first)) / "new"
    for name in names["retr"][1:]:
        for path in first_new.iterdir():
            os.link(path, Path(store.user_dir(name)) / "new" / path.name)
    uids = {store.deliver("bulk", data) for data in plan.bulk()}

    server = start_server(lab.config_path)
    log: deque[str] = deque(maxlen=200)
    threading.Thread(target=_drain, args=(server, log), daemon=True).start()

    def stop() -> None:
        server.stop()

    return Target(
        name="reference",
        ports={"none": server.endpoints["pop3"], "implicit": server.endpoints["pop3s"]},
        cafile=str(lab.ca_file),
        root_pid=server.process.pid,
        session_accounts=sessions,
        retr_accounts=names["retr"],
        plan=plan,
        bulk_uids=uids,
        stop=stop,
        extra={"log": log, "directory": str(directory), "server": server},
    )


def _drain(server: ServerProcess, log: deque[str]) -> None:
    """Keep the server's stdout pipe from filling up; keep the tail."""
    assert server.process.stdout is not None
    for line in server.process.stdout:
        log.append(line.rstrip())


def log_problems(target: Target) -> list[str]:
    """WARNING/ERROR/Traceback lines from the reference server's log."""
    log = target.extra.get("log") or ()
    return [line for line in log if any(w in line for w in ("WARNING", "ERROR", "Traceback"))]


def remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
