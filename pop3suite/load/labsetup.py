"""The embedded target of a load run: a lab, its accounts, pre-filled
mailboxes, and ``pop3suite serve`` as its own process.

The reference server is asyncio; Locust patches sockets with gevent, so the
two never share a process.  :func:`prepare` writes the lab and the pre-fill
(with ledger events for every message), :func:`start` runs the server with
:func:`pop3suite.lab.start_server` and returns the ``run.json`` fields that
tell the Locust processes where the target is.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pop3suite.lab import ServerProcess, auto_ports, start_server
from pop3suite.server.lab import Lab, LabOptions, add_accounts, create_lab
from pop3suite.server.storage import open_store

from .accounting import digest, make_message
from .scenario import Scenario, prefill_plan

PASSWORD = "load-secret"
CHEAP_N = 2**10  # load labs measure POP3, not scrypt


@dataclass
class EmbeddedTarget:
    lab: Lab
    server: ServerProcess
    run: dict

    def stop(self) -> None:
        self.server.stop()


def prepare(scenario: Scenario, directory: Path, workers: int = 1) -> tuple[Lab, list[tuple]]:
    """Write the lab with the scenario's accounts and pre-fill them.

    Returns:
        The lab and the ledger events of the pre-fill (("D", nonce, account, sha)).
    """
    options = LabOptions(
        password=PASSWORD,
        ports=auto_ports(),
        idle_timeout=scenario.idle_timeout,
        login_failure_delay=0.2,
        scrypt_n=CHEAP_N,
        fsync=False,
        **({"storage": scenario.storage} if scenario.storage != "maildir" else {}),
    )
    lab = create_lab(directory, options)
    accounts = scenario.accounts(workers)
    with open(lab.config_path, "a", encoding="utf-8") as handle:
        # Server-side latency beside the client's (pop3suite.load.monitor scrapes it).
        handle.write('\n[metrics]\nport = "auto"\n')
    apop = {name: client.auth == "apop" for name, client in accounts.items()}
    add_accounts(lab, apop, PASSWORD, CHEAP_N, "load accounts (pop3suite load): one per simulated mailbox")
    store = open_lab_store(lab)
    rng = random.Random(scenario.seed)
    events: list[tuple] = []
    for name, client in accounts.items():
        store.ensure_mailbox(name)
        for size in prefill_plan(scenario, client, rng):
            nonce = uuid.uuid4().hex
            data = make_message(nonce, size, name)
            store.deliver(name, data)
            events.append(("D", nonce, name, digest(data)))
    return lab, events


def open_lab_store(lab: Lab):
    """The lab's own store (maildir or mbox, as its config says)."""
    return open_store(lab.settings, fsync=False)


def start(
    scenario: Scenario,
    directory: Path,
    results: Path,
    workers: int = 1,
    configure: Callable[[Lab], None] | None = None,
) -> EmbeddedTarget:
    """Prepare the lab, start its server, write ``results/prefill.json``.
    ``configure(lab)`` may change the lab before its server starts (the era
    profile's certificate and ``[era]`` table, pop3suite/load/capacity/era.py)."""
    lab, events = prepare(scenario, directory, workers)
    if configure is not None:
        configure(lab)
    (results / "prefill.json").write_text(json.dumps(events), encoding="utf-8")
    server = start_server(lab.config_path)
    run = {
        "host": "127.0.0.1",
        "pop3_port": server.endpoints.get("pop3"),
        "pop3s_port": server.endpoints.get("pop3s"),
        "smtp_port": server.endpoints.get("smtp"),
        "cafile": str(lab.ca_file),
        "password": PASSWORD,
        "mail_root": str(lab.settings.mail_root),
        "storage": lab.settings.storage,
        "server_pid": server.process.pid,
        "metrics_port": server.endpoints.get("metrics"),
        "prefill": str(results / "prefill.json"),
        "prefilled": len(events),
    }
    return EmbeddedTarget(lab, server, run)
