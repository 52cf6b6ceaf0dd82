"""A test PKI made with ``cryptography``: a CA and a server certificate.

``pop3suite init`` writes ``DIR/tls/ca.pem`` (give it to clients as their
trust anchor), ``DIR/tls/server.pem`` and ``DIR/tls/server.key``.  Keys are
ECDSA P-256: a fresh TLS handshake per poll is the dominant TLS cost for POP3
polling, and P-256 signatures are several times cheaper than RSA-2048.
Operators can point ``[tls]`` in the config at their own certificate instead.

:func:`allow_era_tls` is the other end of TLS: the protocol versions of the
CentOS 5 era profile (``[era] max_tls``, pop3suite/server/prefork.py), which the
load suite's era client must speak too (pop3suite/load/capacity/era.py).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")

with warnings.catch_warnings():  # deprecated by Python, and exactly what the era spoke
    warnings.simplefilter("ignore", DeprecationWarning)
    TLS_1_0, TLS_1_1 = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
#: ``[era] max_tls`` values.
ERA_TLS_VERSIONS = {"1.0": TLS_1_0, "1.1": TLS_1_1, "1.2": ssl.TLSVersion.TLSv1_2}


def allow_era_tls(context: ssl.SSLContext, max_tls: str | None = None) -> None:
    """Let ``context`` (a server's or a client's) speak TLS 1.0, up to ``max_tls``
    (a key of :data:`ERA_TLS_VERSIONS`), without Python's deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = TLS_1_0
        if max_tls is not None:
            context.maximum_version = ERA_TLS_VERSIONS[max_tls]


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pop3suite test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _sans(names: tuple[str, ...]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    return sans


def issue(directory: str | Path, names: tuple[str, ...] = DEFAULT_NAMES, days: int = 825) -> TlsFiles:
    """Write a CA (reused if ``ca.pem``/``ca.key`` exist) and a fresh server
    certificate for ``names`` into ``directory``."""
    directory = Path(directory)
    files = TlsFiles(
        directory / "ca.pem", directory / "ca.key", directory / "server.pem", directory / "server.key"
    )
    now = datetime.datetime.now(datetime.UTC)
    if files.ca_cert.exists() and files.ca_key.exists():
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        loaded = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("pop3suite test CA"))
            .issuer_name(_name("pop3suite test CA"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(files.ca_key, _pem_key(ca_key), private=True)
        _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_sans(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(files.server_key, _pem_key(key), private=True)
    _write(files.server_cert, cert.public_bytes(serialization.Encoding.PEM))
    return files
