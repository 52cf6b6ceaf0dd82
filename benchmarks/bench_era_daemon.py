"""CPU per keep poll of a real inetd-style C daemon reading an mbox spool:
popa3d (Debian's, run by scripts/peers/popa3d.sh: one process per
connection behind socat), against the reference server's era mode
(docs/capacity.md, "The CentOS 5 era profile").

For each size, one account's spool is filled with the capacity grids'
message mix, then ``--polls`` keep polls (USER, PASS, STAT, UIDL, QUIT) run
one after another; the CPU is the peer's whole process tree (socat plus
the reaped popa3d children, ``pop3suite.load.monitor.tree_cpu_seconds``).  Prints ms
per poll and the slope per MB: the ``b`` of a C full-scan daemon.  Not a
test: the numbers depend on the machine.

    PEER_USERS="era1 era50" scripts/peers/popa3d.sh start /tmp/popa3d
    .venv/bin/python benchmarks/bench_era_daemon.py --peer /tmp/popa3d --sizes 1:era1 50:era50
"""

from __future__ import annotations

import argparse
import random
import shlex
import subprocess
import tempfile
import uuid
from pathlib import Path

from pop3suite.client import Pop3Client
from pop3suite.load.accounting import make_message
from pop3suite.load.monitor import tree_cpu_seconds
from pop3suite.load.scenario import parse_sizes

MIX = [[4000, 40], [20000, 30], [100000, 25], [500000, 5]]  # the capacity grids' message_sizes


def peer_env(peer: Path) -> dict[str, str]:
    env = {}
    for line in (peer / "peer.env").read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def seed(script: Path, peer: Path, user: str, mb: float, rng: random.Random) -> int:
    sizes = parse_sizes(MIX, "mix")
    with tempfile.TemporaryDirectory() as tmp:
        files, total = [], 0
        while total < mb * 1_000_000:
            data = make_message(uuid.uuid4().hex, sizes.sample(rng), user).replace(b"\r\n", b"\n")
            path = Path(tmp) / f"{len(files):05d}.eml"
            path.write_bytes(data)
            files.append(str(path))
            total += len(data)
        subprocess.run([str(script), "seed", str(peer), user, *files], check=True, capture_output=True)
    return len(files)


def poll(host: str, port: int, user: str, password: str, context=None) -> None:
    tls = "implicit" if context is not None else "none"
    client = Pop3Client(host, port, tls=tls, ssl_context=context, server_hostname="localhost", timeout=60)
    client.connect()
    client.login(user, password)
    client.stat()
    client.uidl()
    client.quit()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer", type=Path, required=True, help="the popa3d peer's DIR")
    p.add_argument("--sizes", nargs="+", required=True, help="MB:USER pairs (accounts of PEER_USERS)")
    p.add_argument("--polls", type=int, default=40)
    p.add_argument(
        "--tls-front",
        metavar="PORT:PID:CAFILE",
        help="also poll over TLS through this front (stunnel in inetd mode behind socat, PID its socat), "
        "with the era suite of pop3suite/scenarios/capacity-centos5.toml; its process tree's CPU is added",
    )
    args = p.parse_args()
    env = peer_env(args.peer)
    script = Path(__file__).resolve().parent.parent / "scripts" / "peers" / "popa3d.sh"
    rng = random.Random(17)
    pid, port = int(env["PEER_PID"]), int(env["PEER_POP3_PORT"])
    fronts = [("plain", port, [pid], None)]
    if args.tls_front:
        from pop3suite.load.capacity.era import client_context
        from pop3suite.load.capacity.grid import load_grid

        f_port, f_pid, cafile = args.tls_front.split(":", 2)
        context = client_context(cafile, load_grid("capacity-centos5").era)
        fronts.append(("stunnel TLS", int(f_port), [pid, int(f_pid)], context))
    rows: dict[str, list] = {name: [] for name, *_ in fronts}
    for pair in args.sizes:
        mb, user = float(pair.split(":")[0]), pair.split(":")[1]
        messages = seed(script, args.peer, user, mb, rng)
        for name, f_port, pids, context in fronts:
            poll(env["PEER_HOST"], f_port, user, env["PEER_PASSWORD"], context)  # warm the page cache
            before = sum(tree_cpu_seconds(p) for p in pids)
            for _ in range(args.polls):
                poll(env["PEER_HOST"], f_port, user, env["PEER_PASSWORD"], context)
            ms = (sum(tree_cpu_seconds(p) for p in pids) - before) / args.polls * 1000
            rows[name].append((mb, ms))
            print(f"popa3d {name} {mb:g} MB ({messages} messages): {ms:.2f} ms CPU per keep poll", flush=True)
    for name, points in rows.items():
        if len(points) >= 2:
            (mb0, ms0), (mb1, ms1) = points[0], points[-1]
            print(f"{name}: slope b = {(ms1 - ms0) / (mb1 - mb0):.3f} ms per MB; at {mb0:g} MB {ms0:.2f} ms")
    if len(rows) == 2 and all(len(v) >= 2 for v in rows.values()):
        plain, tls = rows["plain"], rows["stunnel TLS"]
        b = (plain[-1][1] - plain[0][1]) / (plain[-1][0] - plain[0][0])
        d = tls[0][1] - plain[0][1]
        print(f"TLS per poll d = {d:.2f} ms; d/b = {d / b:.1f} MB of scanning (the provider implies 23.3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
