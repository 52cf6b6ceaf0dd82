"""The 60-second soak (``pop3suite soak``, docs/operations.md): SMTP delivery
and POP3 load on Maildir and mbox accounts, with connection resets in the
middle of RETR and of UPDATE, the server SIGKILLed and restarted, and (as
root) the tmpfs mail root filled to the last block.  The message ledger must
find nothing lost, duplicated or corrupted on either backend.

The long run (at least 100,000 messages) is the same command with a longer
``--duration`` and ``--messages``, run on demand.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_pop3suite


@pytest.mark.timeout(400)
def test_sixty_second_soak_with_faults_loses_nothing(tmp_path: Path) -> None:
    """Every fault is injected at least once, every unanswered QUIT is settled,
    and the ledger balances on both backends."""
    result = run_pop3suite("soak", "--duration", "60", "--report", str(tmp_path), timeout=360)
    assert result.returncode == 0, result.stdout + result.stderr
    soak = json.loads((tmp_path / "soak.json").read_text())
    faults = soak["faults"]
    for kind in ("server-sigkill", "reset-in-retr", "reset-in-update"):
        assert faults.get(kind, 0) >= 1, faults
    if soak["disk_full_skipped"] is None:
        assert faults.get("disk-full", 0) >= 1, faults
    assert soak["settled_unknown_quits"] >= 1
    assert soak["threads_left_running"] == 0
    for backend in ("maildir", "mbox"):
        ledger = soak["ledger"][backend]
        assert ledger["delivered"] > 500, ledger
        assert ledger["removed"] > 0, ledger
        assert (ledger["lost"], ledger["duplicated"], ledger["corrupted"]) == (0, 0, 0), ledger
    log = (tmp_path / "server.log").read_text()
    assert '"event": "session_end"' in log
