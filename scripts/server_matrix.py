#!/usr/bin/env python3
"""The server matrix: ``pop3suite check`` against the reference server and
every real peer in ``scripts/peers/``, in both profiles, rendered with the
same code as ``pop3suite report --matrix`` into one HTML page and a
Markdown page (default ``docs/server-matrix.{html,md}``).

    .venv/bin/python scripts/server_matrix.py                 # every peer, needs root
    .venv/bin/python scripts/server_matrix.py --peers dovecot,popa3d --out results/matrix

The rfc profile runs the whole fast suite; the provider profile adds the
provider's own rules (``-k provider``), so its columns only fill those rows.
A peer that cannot run here (script exit 4) is listed with the reason
instead of a column.  Each run's reports stay in the work directory.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pop3suite import __version__, peers  # noqa: E402
from pop3suite.conformance import report  # noqa: E402

PASSWORD = "s3cret pass"


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def check(args: list[str], out: Path, profile: str, log: Path) -> dict | None:
    """One ``pop3suite check --fast`` run; its results.json, or None."""
    command = [sys.executable, "-m", "pop3suite", "check", *args, "--fast", "--report", str(out)]
    if profile == "provider":
        command += ["--profile", "provider", "-k", "provider"]
    started = time.monotonic()
    with log.open("w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=3600)
    path = out / "results.json"
    if not path.exists():
        say(f"  no results ({result.returncode}); see {log}")
        return None
    document = json.loads(path.read_text())
    tally = ", ".join(f"{k} {v}" for k, v in document["counts"].items() if v)
    say(f"  {profile}: {tally} in {time.monotonic() - started:.0f} s")
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    known = ", ".join(peers.available_peers())
    parser.add_argument("--peers", help=f"comma-separated (default: all of {known})")
    parser.add_argument("--profiles", default="rfc,provider", help="rfc,provider (default both)")
    parser.add_argument("--out", default=str(ROOT / "docs"), help="where server-matrix.{md,html} go")
    parser.add_argument("--work", default="/var/tmp/pop3suite-matrix", help="peer dirs and check reports")
    parser.add_argument("--no-reference", action="store_true", help="leave the reference server out")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the running peer is stopped by its script.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    names = args.peers.split(",") if args.peers else peers.available_peers()
    profiles = args.profiles.split(",")
    work = Path(args.work) / time.strftime("run-%Y%m%d-%H%M%S")
    work.mkdir(parents=True)
    work.chmod(0o755)
    documents: list[dict] = []
    servers: list[tuple[str, str, str]] = []  # name, version/modes, note
    if not args.no_reference:
        say("reference server (embedded)")
        for profile in profiles:
            # The POP-before-SMTP cases need a client address that never logged in.
            extra = ["--source-address", "127.0.0.2"] if profile == "provider" else []
            document = check(extra, work / f"reference-{profile}", profile, work / f"reference-{profile}.log")
            if document:
                documents.append(document)
        servers.append((f"pop3suite reference server {__version__}", "plain+STLS, implicit TLS", "embedded"))
    for name in names:
        say(f"{name}: starting")
        try:
            peer = peers.start_peer(name, work / name, PASSWORD)
        except peers.PeerUnavailable as exc:
            say(f"  unavailable: {exc}")
            servers.append((name, "-", f"not run: {exc}"))
            continue
        except (RuntimeError, FileNotFoundError) as exc:
            say(f"  failed to start: {exc}")
            servers.append((name, "-", f"failed to start: {str(exc).splitlines()[0]}"))
            continue
        try:
            env = peer.env
            modes = ["plain" + ("+STLS" if env.get("PEER_STLS") == "yes" else "")]
            if env.get("PEER_POP3S_PORT"):
                modes.append("implicit TLS")
            servers.append((peers.display_name(env), ", ".join(modes), f"scripts/peers/{name}.sh"))
            for profile in profiles:
                document = check(
                    peers.check_args(env), work / f"{name}-{profile}", profile, work / f"{name}-{profile}.log"
                )
                if document:
                    documents.append(document)
        finally:
            peer.stop()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    header = [
        "# Server matrix",
        "",
        f"Generated {stamp} by `scripts/server_matrix.py` on {platform.platform()} "
        f"({platform.machine()}), Python {platform.python_version()}. Each column is one "
        "`pop3suite check --fast` run; the provider profile adds only the provider's rules.",
        "`*` marks a FAILED that is a known deviation recorded in "
        "`pop3suite/conformance/expectations/<server>.toml` "
        "(each names the RFC sentence and the observed bytes).",
        "ERROR marks a case the suite could not judge (its own error, TLS trust, the peer unreachable): "
        "it is not the server's failure.",
        "Provider columns judge each server as its peer script sets it up: the peers have no SMTP side "
        "(POP-before-SMTP cases are UNIMPLEMENTED), and where a peer's password store keeps recoverable "
        "secrets APOP is on for every account, so `provider/apop-off-by-default` (APOP off unless the "
        "account asks for it) fails there.",
        "",
        "| server | modes | how it ran |",
        "|---|---|---|",
        *(f"| {s} | {m} | {n} |" for s, m, n in servers),
        "",
    ]
    (out / "server-matrix.md").write_text(
        "\n".join(header) + "\n" + report.render_markdown_matrix(documents), encoding="utf-8"
    )
    (out / "server-matrix.html").write_text(report.render_matrix(documents), encoding="utf-8")
    say(f"wrote {out / 'server-matrix.md'} and {out / 'server-matrix.html'} (reports in {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
