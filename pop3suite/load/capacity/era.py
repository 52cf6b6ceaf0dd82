"""The CentOS 5 era profile: ``[era]`` of a capacity scenario, every parameter sourced.

``pop3suite/scenarios/capacity-centos5.toml`` models a shared mail server of about
2007-2010 (docs/capacity.md, "The CentOS 5 era profile").  Its ``[era]``
table is a list of parameters, each ``{name, value, unit, source}``; the
run copies them into ``guidance.json`` (``era.parameters``) and the report
prints them.  Parameters are fixed before the comparison; none is fitted to
the provider's table.

What the parameters do:

* the server of every cell gets ``[era]`` in its config
  (:mod:`pop3suite.server.prefork`: a process per connection, an RSA
  key-exchange CBC suite, TLS <= 1.0, no resumption), an RSA certificate of
  ``rsa_bits`` made here with ``cryptography``, and ``OPENSSL_ia32cap`` in
  its environment when ``aesni`` is false (OpenSSL then uses its
  table-based AES, as a CPU without AES-NI did);
* the era CPU speed: ``openssl speed`` on this machine (same algorithms,
  same block size, AES-NI off the same way) against the published figures
  of an era CPU gives one ratio per algorithm; measured CPU per poll is
  multiplied by it (a documented scale factor: a cgroup quota would
  stretch wall time, not CPU seconds per poll, so it would not change the
  CPU-budget table).  The algorithms disagree, so the ratio is a band: the
  table uses their geometric mean, the band their minimum and maximum;
* the RSA key size of the time ranged over 1024 and 2048 bits: cells run
  ``rsa_bits``; real handshakes with both sizes, measured here
  (:func:`handshake_cpu_ms`), move the TLS term to the other end of the band.
"""

from __future__ import annotations

import datetime
import math
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from pop3suite.server.tls import allow_era_tls

from .grid import GridError

#: OPENSSL_ia32cap mask that clears AES-NI (bit 57) and PCLMULQDQ (bit 33):
#: OpenSSL then runs AES as on a Core 2 / Pentium 4 (docs/capacity.md).
NO_AESNI = "~0x200000200000000"

#: Algorithms compared with the published era figures: openssl speed name -> parameter name.
SPEED_ALGORITHMS = {
    "aes-256-cbc": "era_speed_aes256cbc",
    "sha1": "era_speed_sha1",
    "des-ede3-cbc": "era_speed_3des",
}
SPEED_BLOCK = 8192  # the block size column the published figures are read from

REQUIRED: dict[str, type | tuple[type, ...]] = {
    "tls_ciphers": str,
    "tls_max_version": str,
    "rsa_bits": int,
    "rsa_bits_band": int,
    "aesni": bool,
    "session_resumption": bool,
    "process_per_connection": bool,
    "era_speed_aes256cbc": (int, float),
    "era_speed_sha1": (int, float),
    "era_speed_3des": (int, float),
    "modern_a_ms": (int, float),
    "modern_d_tls_ms": (int, float),
    "modern_e_tls_sent_ms_per_mb": (int, float),
    "modern_b_scan_ms_per_mb": (int, float),
    "modern_c_sent_ms_per_mb": (int, float),
}
#: A real era daemon stack measured by benchmarks/bench_era_daemon.py (optional, all four or none).
DAEMON = ("daemon_a_ms", "daemon_b_scan_ms_per_mb", "daemon_d_tls_ms", "daemon_e_tls_ms_per_mb")


class EraParameter(BaseModel):
    """One parameter and where it comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, Field(min_length=1, pattern=r"^[a-z0-9_]+$")]
    value: StrictBool | StrictInt | StrictFloat | StrictStr
    unit: StrictStr
    source: Annotated[str, Field(min_length=12)]


class EraTable(BaseModel):
    """``[era]`` of a capacity scenario."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    description: StrictStr = ""
    parameters: list[EraParameter]


class EraProfile:
    """The validated era parameters, by name."""

    def __init__(self, table: EraTable, where: str) -> None:
        self.table = table
        self.values = {p.name: p.value for p in table.parameters}
        names = [p.name for p in table.parameters]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise GridError(f"{where}: era.parameters: {', '.join(twice)} given twice")
        for name, kind in REQUIRED.items():
            if name not in self.values:
                raise GridError(f"{where}: era.parameters: {name!r} is missing")
            value = self.values[name]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise GridError(f"{where}: era.parameters: {name}: expected {_kind(kind)}, got {value!r}")
        given = [n for n in DAEMON if n in self.values]
        if given and len(given) != len(DAEMON):
            missing = ", ".join(n for n in DAEMON if n not in self.values)
            raise GridError(f"{where}: era.parameters: the daemon terms come together; missing {missing}")
        for name in given:
            if not isinstance(self.values[name], int | float) or isinstance(self.values[name], bool):
                raise GridError(f"{where}: era.parameters: {name}: expected a number")
        if self.values["rsa_bits"] not in (1024, 2048) or self.values["rsa_bits_band"] not in (1024, 2048):
            raise GridError(f"{where}: era.parameters: rsa_bits and rsa_bits_band: 1024 or 2048")

    def __getitem__(self, name: str):
        return self.values[name]

    @property
    def has_daemon(self) -> bool:
        return DAEMON[0] in self.values

    def parameters(self) -> list[dict]:
        return [p.model_dump() for p in self.table.parameters]

    def server_config(self) -> str:
        """The ``[era]`` table of the cell server's config (pop3suite.server.prefork)."""
        return (
            "\n[era]\n"
            f"process_per_connection = {str(self['process_per_connection']).lower()}\n"
            f'ciphers = "{self["tls_ciphers"]}"\n'
            f'max_tls = "{self["tls_max_version"]}"\n'
            f"session_resumption = {str(self['session_resumption']).lower()}\n"
        )

    def server_environment(self) -> dict[str, str]:
        """Environment of the server process: AES-NI off when the era had none."""
        return {} if self["aesni"] else {"OPENSSL_ia32cap": NO_AESNI}


def _kind(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def load_era(raw: object, where: str) -> EraProfile | None:
    """Validate the ``[era]`` table of a capacity scenario (None when absent).

    Raises:
        GridError: one line naming the file and the key.
    """
    if raw is None:
        return None
    try:
        table = EraTable.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise GridError(f"{where}: era.{loc}: {first['msg']}") from None
    return EraProfile(table, where)


# ------------------------------------------------------------------ certificate


def write_rsa_certificate(
    directory: Path, bits: int, names: tuple[str, ...] = ("localhost", "127.0.0.1")
) -> tuple[Path, Path]:
    """A self-signed RSA server certificate of ``bits`` (the client trusts it
    directly, so it is also the lab's CA file).  Returns (cert, key)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"era-rsa{bits}.pem", directory / f"era-rsa{bits}.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def client_ciphers(era: EraProfile) -> str:
    """The client's cipher string: the era suite, allowed by this OpenSSL at SECLEVEL 0."""
    return f"{era['tls_ciphers']}:@SECLEVEL=0"


def client_context(cafile: str, era: EraProfile) -> ssl.SSLContext:
    """A client context that offers the era suite (Python's default list has no RSA key exchange)."""
    context = ssl.create_default_context(cafile=cafile)
    allow_era_tls(context)
    context.set_ciphers(client_ciphers(era))
    return context


# ------------------------------------------------------------------ CPU speed


def openssl_speed(algorithm: str, env: dict[str, str], seconds: int = 1) -> float:
    """``openssl speed`` throughput in kB/s (1000 bytes) at :data:`SPEED_BLOCK`
    bytes, as the published tables print it."""
    evp = ["-evp", algorithm] if algorithm != "sha1" else ["sha1"]
    out = subprocess.run(
        ["openssl", "speed", "-mr", "-seconds", str(seconds), *evp],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=True,
    ).stdout
    header = next(line for line in out.splitlines() if line.startswith("+H:"))
    sizes = [int(x) for x in header.split(":")[1:]]
    row = next(line for line in out.splitlines() if line.startswith("+F:"))
    values = [float(x) for x in row.split(":")[3:]]
    return values[sizes.index(SPEED_BLOCK)] / 1000.0


def cpu_ratio(era: EraProfile, measure=openssl_speed) -> dict:
    """How many times slower the era CPU is than this one, per algorithm,
    with AES-NI off here as the era server runs (``measure`` is
    :func:`openssl_speed`; tests pass their own figures)."""
    env = era.server_environment()
    per_alg = {}
    for alg, name in SPEED_ALGORITHMS.items():
        here = measure(alg, env)
        per_alg[alg] = {"here_kBps": here, "era_kBps": float(era[name]), "ratio": here / float(era[name])}
    ratios = [v["ratio"] for v in per_alg.values()]
    return {
        "per_algorithm": per_alg,
        "central": math.exp(sum(math.log(r) for r in ratios) / len(ratios)),
        "low": min(ratios),
        "high": max(ratios),
        "block_bytes": SPEED_BLOCK,
        "openssl_ia32cap": env.get("OPENSSL_ia32cap", ""),
    }


# ------------------------------------------------------------------ handshakes


def handshake_cpu_ms(bits: int, era: EraProfile, n: int = 150) -> float:
    """Server CPU ms per full handshake with the era suite and an RSA key of
    ``bits``: a child process accepts ``n`` real handshakes from this one and
    reports its own CPU time (the client's CPU is not counted)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pop3suite-era-") as tmp:
        cert, key = write_rsa_certificate(Path(tmp), bits)
        child = subprocess.Popen(
            [sys.executable, "-m", "pop3suite.load.capacity.era", "serve-handshakes",
             str(cert), str(key), str(n), str(era["tls_ciphers"]), str(era["tls_max_version"])],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **era.server_environment()},
        )  # fmt: skip
        assert child.stdout is not None
        port = int(child.stdout.readline())
        context = client_context(str(cert), era)
        for _ in range(n):
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                tls.recv(1)
        cpu_s = float(child.stdout.readline())
        child.wait(10)
    return cpu_s / n * 1000.0


def _serve_handshakes(cert: str, key: str, n: int, ciphers: str, max_tls: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    allow_era_tls(context, max_tls)
    context.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    context.options |= ssl.OP_NO_TICKET
    context.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        print(listener.getsockname()[1], flush=True)
        start = time.process_time()
        for _ in range(n):
            conn, _addr = listener.accept()
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"+")
        print(time.process_time() - start, flush=True)


def negotiated(host: str, port: int, cafile: str, era: EraProfile) -> tuple[str, str]:
    """(cipher, protocol) a real handshake with the server negotiates."""
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        client_context(cafile, era).wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        cipher = tls.cipher()
        return (cipher[0] if cipher else "", tls.version() or "")


def tls_band_ms(era: EraProfile) -> dict:
    """Server handshake CPU here for both ends of the RSA key-size band."""
    bits = sorted({int(era["rsa_bits"]), int(era["rsa_bits_band"])})
    return {str(b): handshake_cpu_ms(b, era) for b in bits}


def main(argv: list[str]) -> int:
    if len(argv) == 6 and argv[0] == "serve-handshakes":
        _serve_handshakes(argv[1], argv[2], int(argv[3]), argv[4], argv[5])
        return 0
    print(
        "usage: python -m pop3suite.load.capacity.era serve-handshakes CERT KEY N CIPHERS MAX_TLS",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
