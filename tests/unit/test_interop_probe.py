"""The interop matrix's server probe (``pop3suite.interop.probe``) against
tiny real POP3 servers on loopback sockets: one that refuses CAPA and sends
no APOP timestamp (like popa3d), one whose CAPA offers neither STLS nor SASL
PLAIN.  Cells those servers cannot do are ``unsupported`` with the server's
reason, before any maildrop is touched; nothing is marked unsupported for a
server the probe could not reach.  The same tiny server shows mpop's APOP
timestamp bug as a failure with a clear note.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest

from pop3suite.interop.base import ClientFailed, Login
from pop3suite.interop.mpop import Mpop
from pop3suite.interop.probe import ServerProbe, probe
from pop3suite.interop.pythonpoplib import PythonPoplib
from pop3suite.interop.runner import Runner
from pop3suite.netutil import free_port
from pop3suite.target.model import Target, build


def _handler(greeting: bytes, capa: bytes | None) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(greeting)
            for line in self.rfile:
                verb = line.strip().split(b" ", 1)[0].upper()
                if verb == b"QUIT":
                    self.wfile.write(b"+OK bye\r\n")
                    return
                if verb == b"CAPA" and capa is not None:
                    self.wfile.write(b"+OK\r\n" + capa + b".\r\n")
                else:
                    self.wfile.write(b"-ERR\r\n")

    return Handler


@pytest.fixture
def serve() -> Iterator:
    servers: list[socketserver.ThreadingTCPServer] = []

    def start(greeting: bytes, capa: bytes | None) -> Target:
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _handler(greeting, capa))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return build(f"pop3://alice:pw@127.0.0.1:{server.server_address[1]}", name="tiny")

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_no_capa_means_no_stls_no_sasl_and_no_timestamp_no_apop(serve):
    found = probe(serve(b"+OK\r\n", None))
    assert found.modes["plain"].reached and found.modes["plain"].capa is None
    assert "stls" not in found.modes  # STLS is never tried when CAPA does not offer it
    assert "refuses CAPA, so it offers no STLS" in (found.lacks("stls", "user") or "")
    assert "refuses CAPA, so it offers no SASL" in (found.lacks("plain", "sasl") or "")
    assert "no APOP timestamp" in (found.lacks("plain", "apop") or "")
    assert found.lacks("plain", "user") is None
    assert found.summary() == "plain: CAPA refused"


def test_capa_without_stls_or_plain(serve):
    found = probe(serve(b"+OK ready <1.2@tiny>\r\n", b"USER\r\nSASL LOGIN CRAM-MD5\r\nUIDL\r\n"))
    assert found.lacks("stls", "user") == "the server does not announce STLS in CAPA"
    assert found.lacks("plain", "sasl") == "the server's SASL mechanisms (LOGIN CRAM-MD5) lack PLAIN (plain)"
    assert found.lacks("plain", "apop") is None  # the greeting has a timestamp
    assert found.lacks("plain", "user") is None


def test_capa_with_sasl_plain_supports_sasl(serve):
    found = probe(serve(b"+OK\r\n", b"USER\r\nSASL PLAIN LOGIN\r\n"))
    assert found.lacks("plain", "sasl") is None


def test_unreachable_server_marks_nothing_unsupported():
    target = build(f"pop3://alice:pw@127.0.0.1:{free_port()}", name="down")
    found = probe(target, timeout=5)
    assert not found.modes["plain"].reached
    assert all(found.lacks(mode, auth) is None for mode in ("plain", "stls") for auth in ("user", "sasl"))


def test_runner_reports_cells_the_server_lacks_as_unsupported(serve):
    """The probe's reason becomes the cell's; the maildrop is never touched
    (the tiny server could not even log in)."""
    target = serve(b"+OK\r\n", None)
    runner = Runner([PythonPoplib()], progress=lambda line: None)
    runner.server = probe(target)
    for mode, auth in (("stls", "user"), ("stls", "apop"), ("plain", "apop")):
        cell = runner.run_cell(target, PythonPoplib(), mode, auth, "keep")
        assert cell.status == "unsupported", cell
        assert "the server" in cell.note
    assert ServerProbe().lacks("stls", "sasl") is None  # not probed: nothing assumed


def test_mpop_apop_timestamp_bug_is_a_failure_with_a_clear_note(serve, tmp_path):
    """mpop 1.4.18 refuses an APOP timestamp containing '=' (as Dovecot's
    are): the cell stays a failure, and the note says why."""
    mpop = Mpop()
    if mpop.available():
        pytest.skip(mpop.available() or "")
    target = serve(b"+OK ready <1.2.ab==@tiny>\r\n", b"USER\r\n")
    endpoint = target.pop3
    assert endpoint is not None
    login = Login(endpoint.host, endpoint.port, "plain", "alice", "pw", None, "localhost")
    with pytest.raises(ClientFailed) as failed:
        mpop.retrieve(login, "plain", "apop", "keep", tmp_path)
    assert "known mpop bug" in failed.value.summary and "<1.2.ab==@tiny>" in failed.value.summary
