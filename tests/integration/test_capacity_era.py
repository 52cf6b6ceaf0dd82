"""The era profile's server, for real: a forked child per connection does an
RSA key-exchange AES256-SHA handshake over TLS 1.0 with AES-NI off, and a
POP3 session runs in it (pop3suite/server/prefork.py, pop3suite/load/capacity/era.py)."""

from __future__ import annotations

import shutil
import socket
import ssl
from pathlib import Path

import psutil
import pytest

from pop3suite.client import Pop3Client
from pop3suite.lab import start_server
from pop3suite.load.capacity.era import (
    client_context,
    handshake_cpu_ms,
    load_era,
    negotiated,
    write_rsa_certificate,
)
from pop3suite.load.capacity.grid import load_grid
from pop3suite.server.lab import LabOptions, create_lab

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def era():
    return load_grid("capacity-centos5").era


@pytest.fixture
def era_server(tmp_path: Path, era):
    ports = {"pop3_port": "auto", "pop3s_port": "auto", "smtp_port": 0, "submission_port": 0, "smtps_port": 0}
    lab = create_lab(tmp_path / "lab", LabOptions(password="pw", ports=ports, scrypt_n=2**10, fsync=False))
    cert, key = write_rsa_certificate(tmp_path / "rsa", int(era["rsa_bits"]))
    shutil.copyfile(cert, lab.settings.tls_cert)
    shutil.copyfile(key, lab.settings.tls_key)
    shutil.copyfile(cert, lab.ca_file)
    with open(lab.config_path, "a", encoding="utf-8") as handle:
        handle.write(era.server_config())
    with pytest.MonkeyPatch.context() as patch:
        for name, value in era.server_environment().items():
            patch.setenv(name, value)
        server = start_server(lab.config_path)
    try:
        yield lab, server
    finally:
        server.stop()


def test_era_suite_is_negotiated_in_a_child_process(era_server, era) -> None:
    lab, server = era_server
    assert (
        psutil.Process(server.process.pid).environ().get("OPENSSL_ia32cap")
        == era.server_environment()["OPENSSL_ia32cap"]
    )
    cipher, protocol = negotiated("127.0.0.1", server.endpoints["pop3s"], str(lab.ca_file), era)
    assert (cipher, protocol) == ("AES256-SHA", "TLSv1")
    user = next(iter(lab.settings.accounts))
    context = client_context(str(lab.ca_file), era)
    client = Pop3Client("127.0.0.1", server.endpoints["pop3s"], tls="implicit", ssl_context=context)
    client.connect()
    try:
        client.login(user, "pw")
        children = psutil.Process(server.process.pid).children()
        assert len(children) == 1  # the session runs in its own process
        client.stat()
    finally:
        client.quit()


def test_default_client_cannot_talk_to_the_era_server(era_server) -> None:
    """Python's default client list has no RSA key exchange: the era suite
    really is the only one offered by the server."""
    lab, server = era_server
    context = ssl.create_default_context(cafile=str(lab.ca_file))
    with (
        socket.create_connection(("127.0.0.1", server.endpoints["pop3s"]), timeout=10) as raw,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(raw, server_hostname="localhost")


def test_handshake_cost_grows_with_the_rsa_key(era) -> None:
    small = handshake_cpu_ms(1024, era, n=40)
    big = handshake_cpu_ms(2048, era, n=40)
    assert 0 < small < big


def test_bad_era_table_is_one_line(tmp_path: Path) -> None:
    from pop3suite.load.capacity.grid import GridError

    with pytest.raises(GridError, match=r"era\.parameters\.0\.source"):
        load_era({"parameters": [{"name": "x", "value": 1, "unit": "u", "source": ""}]}, "f.toml")
