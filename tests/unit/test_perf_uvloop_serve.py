"""``pop3suite serve`` on uvloop (``server.event_loop = "uvloop"``): the
same sessions as on asyncio -- plain, STLS (``loop.start_tls`` on a uvloop
transport) and implicit TLS -- with RETR byte for byte.  A real server
process; skipped when uvloop is not installed."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from pop3suite.client import Pop3Client
from pop3suite.lab import start_server
from pop3suite.proto import crlf_form as expected_wire
from pop3suite.server.lab import LabOptions, create_lab
from pop3suite.server.storage import MaildirStore

pytest.importorskip("uvloop")

PASSWORD = "s3cret pass"
MESSAGE = b"Subject: uvloop\r\n\r\n.leading dot\r\n.\r\nbare\nLF line\r\nend"


def test_serve_on_uvloop_all_modes(tmp_path: Path) -> None:
    ports = {"pop3_port": "auto", "pop3s_port": "auto", "smtp_port": 0, "submission_port": 0, "smtps_port": 0}
    options = LabOptions(password=PASSWORD, ports=ports, login_failure_delay=0.05, scrypt_n=2**4, fsync=False)
    lab = create_lab(tmp_path / "lab", options)
    text = lab.config_path.read_text(encoding="utf-8")
    lab.config_path.write_text(text.replace("[server]\n", '[server]\nevent_loop = "uvloop"\n', 1))
    MaildirStore(str(lab.settings.mail_root), fsync=False).deliver("alice", MESSAGE)
    server = start_server(lab.config_path)
    try:
        maps = Path(f"/proc/{server.process.pid}/maps")
        if maps.exists():  # the server really runs on uvloop's extension
            assert "uvloop" in maps.read_text()
        context = ssl.create_default_context(cafile=str(lab.ca_file))
        modes = [
            (server.endpoints["pop3"], "none"),
            (server.endpoints["pop3"], "stls"),
            (server.endpoints["pop3s"], "implicit"),
        ]
        for port, tls in modes:
            pop = Pop3Client("127.0.0.1", port, tls=tls, ssl_context=context, timeout=10)
            pop.connect()
            assert pop.tls_active == (tls != "none")
            pop.login("alice", PASSWORD)
            assert pop.retr(1) == expected_wire(MESSAGE)
            pop.quit()
    finally:
        server.stop()
    output = server.process.stdout.read() if server.process.stdout else ""
    assert "Traceback" not in output and "ERROR" not in output, output
