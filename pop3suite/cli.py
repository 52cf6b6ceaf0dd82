"""The ``pop3suite`` command.

The sub-commands and their flags are a contract users' scripts rely on:
extend, never rename.  Errors a user can fix (bad config, unknown account,
busy port) print one line to stderr and exit 2; nothing prints a traceback
for them.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from . import __version__

EXIT_USAGE = 2


def _fail(message: str) -> int:
    print(f"pop3suite: error: {message}", file=sys.stderr)
    return EXIT_USAGE


# ---------------------------------------------------------------- init


def cmd_init(args: argparse.Namespace) -> int:
    from pop3suite.server import config, passwords
    from pop3suite.server.lab import DEFAULT_PORTS, LabOptions, create_lab

    ports = dict(DEFAULT_PORTS)
    for key in ports:
        value = getattr(args, key)
        if value is not None:
            if value != "auto" and not (value.isdigit() and 0 <= int(value) <= 65535):
                return _fail(f"--{key.replace('_', '-')}: expected 0-65535 or 'auto', got {value!r}")
            ports[key] = value if value == "auto" else int(value)
    try:
        options = LabOptions(password=args.password, ports=ports, listen=args.listen, storage=args.storage)
        if args.scrypt_n is not None:
            passwords.check_cost(args.scrypt_n)
            options.scrypt_n = args.scrypt_n
        lab = create_lab(args.dir, options)
    except FileExistsError as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"cannot write lab in {args.dir}: {error.strerror}")
    except config.ConfigError as error:
        return _fail(str(error))
    except passwords.BadHash as error:
        return _fail(f"--scrypt-n: {error}")
    settings = lab.settings
    print(f"Lab written to {lab.directory}")
    print(f"  config:   {lab.config_path}")
    print(f"  mail:     {settings.mail_root}")
    print(f"  test CA:  {lab.ca_file}  (give this to clients)")
    print(f"  accounts: {', '.join(settings.accounts)} (carol uses APOP) @ {', '.join(settings.domains)}")
    if lab.password_generated:
        print(f"  password: {lab.password}  (generated; the same for every account)")
    print(f"Start it with: pop3suite serve --config {lab.config_path}")
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    from pop3suite.server import config, tls

    try:
        settings = config.load(args.config)
    except config.ConfigError as error:
        return _fail(str(error))
    directory = settings.tls_cert.parent if settings.tls_cert else settings.path.parent / "tls"
    files = tls.issue(directory, tuple(args.name) if args.name else tls.DEFAULT_NAMES)
    print(f"Issued {files.server_cert} (CA {files.ca_cert})")
    return 0


# ---------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses

    from pop3suite.server import config, eventlog
    from pop3suite.server.server import ReferenceServer, loop_factory

    try:
        settings = config.load(args.config)
    except config.ConfigError as error:
        return _fail(str(error))
    overrides: dict[str, object] = {}
    if args.verbose or args.log_level:
        overrides["log_level"] = args.log_level or "debug"
    if args.log_format:
        overrides["log_format"] = args.log_format
    if args.metrics_port is not None:
        port = args.metrics_port
        if port == "auto":
            overrides["metrics_port"] = config.AUTO_PORT
        elif not port.isdigit() or int(port) > 65535:
            return _fail(f'--metrics-port: expected a port 0-65535 (0 = off) or "auto", got {port!r}')
        else:
            overrides["metrics_port"] = int(port)
    settings = dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]
    eventlog.configure(settings.log_level, settings.log_format)

    async def run() -> int:
        server = ReferenceServer(settings)
        try:
            endpoints = await server.start()
        except OSError as error:
            await server.stop()
            return _fail(f"cannot listen: {error.strerror or error}")
        for endpoint in endpoints:
            print(f"pop3suite serve: listening: {endpoint}", flush=True)
        print("pop3suite serve: ready (Ctrl-C or SIGTERM stops)", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()
        print("pop3suite serve: stopped", flush=True)
        return 0

    factory, note = loop_factory(settings.event_loop)
    if note:
        print(f"pop3suite serve: {note}", flush=True)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run())


# ---------------------------------------------------------------- deliver


def cmd_deliver(args: argparse.Namespace) -> int:
    from pop3suite.server import config
    from pop3suite.server.storage import StorageError, open_store

    try:
        settings = config.load(args.config)
    except config.ConfigError as error:
        return _fail(str(error))
    user, _, domain = args.user.partition("@")
    if domain and domain.lower() not in settings.domains:
        return _fail(
            f"{domain} is not a local domain of {settings.path} (domains: {', '.join(settings.domains)})"
        )
    if user not in settings.accounts:
        return _fail(f"no account {user!r} in {settings.path}")
    store = open_store(settings)
    store.ensure_mailbox(user)
    sources = args.eml or ["-"]
    for source in sources:
        try:
            data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        except OSError as error:
            return _fail(f"cannot read {source}: {error.strerror}")
        try:
            uid = store.deliver(user, data)
        except StorageError as error:
            return _fail(str(error))
        print(f"delivered {'stdin' if source == '-' else source} to {user} as {uid}")
    return 0


# ---------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(keep=args.keep, sessions=args.sessions, results=args.results)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pop3suite", description="POP3/POP3S conformance and load-testing suite with a reference server."
    )
    parser.add_argument("--version", action="version", version=f"pop3suite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="write a ready lab: config, mailboxes, test CA")
    p.add_argument("dir", help="lab directory (created if missing)")
    p.add_argument("--password", help="password for the demo accounts (default: random, printed)")
    p.add_argument("--listen", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    for key, label in (
        ("pop3_port", "plain POP3 (+STLS)"),
        ("pop3s_port", "POP3 over implicit TLS"),
        ("smtp_port", "SMTP (port-25 role)"),
        ("submission_port", "submission (587 role)"),
        ("smtps_port", "SMTP over TLS (465 role)"),
    ):
        p.add_argument(
            f"--{key.replace('_', '-')}",
            dest=key,
            metavar="N",
            help=f"{label}; 0 = off, 'auto' = a free port",
        )
    p.add_argument(
        "--storage",
        choices=("maildir", "mbox"),
        default="maildir",
        help="mailbox format (default maildir; mbox = one file per account, see docs/storage.md)",
    )
    p.add_argument(
        "--scrypt-n",
        type=int,
        default=None,
        metavar="N",
        help="scrypt cost of the account hashes, a power of two (default 16384 = 2^14; lower = faster "
        "logins, cheaper to brute-force; see docs/performance.md)",
    )
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("serve", help="run the reference server until SIGINT/SIGTERM")
    p.add_argument("--config", required=True, help="lab config (pop3suite.toml)")
    p.add_argument("-v", "--verbose", action="store_true", help="the same as --log-level debug")
    p.add_argument(
        "--log-level", choices=("debug", "info", "warning"), help="log level (default: [log] level, info)"
    )
    p.add_argument("--log-format", choices=("text", "json"), help="log format (default: [log] format, text)")
    p.add_argument(
        "--metrics-port",
        metavar="N",
        help="serve Prometheus /metrics on port N of [metrics] listen, loopback by default "
        '("auto": a free port; 0: off; default: [metrics] port)',
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("deliver", help="deliver .eml files (or stdin) into an account's mailbox")
    p.add_argument("--config", required=True, help="lab config (pop3suite.toml)")
    p.add_argument("user", help="account name or address (alice or alice@example.test)")
    p.add_argument("eml", nargs="*", help="message files; none or '-' reads stdin")
    p.set_defaults(func=cmd_deliver)

    p = sub.add_parser("certs", help="(re)issue the lab's server certificate from its test CA")
    p.add_argument("--config", required=True, help="lab config (pop3suite.toml)")
    p.add_argument("--name", action="append", help="DNS name or IP for the certificate (repeatable)")
    p.set_defaults(func=cmd_certs)

    from .checkcmd import add_check_parser, add_report_parser

    add_check_parser(sub)
    add_report_parser(sub)

    from .loadcmd import add_load_parser

    add_load_parser(sub)

    from .interop.cli import add_clients_parser

    add_clients_parser(sub)

    from .capacitycmd import add_capacity_parser

    add_capacity_parser(sub)

    from .policycmd import add_policy_parser

    add_policy_parser(sub)

    from .soakcmd import add_soak_parser

    add_soak_parser(sub)

    from .scenarioscmd import add_scenarios_parser

    add_scenarios_parser(sub)

    p = sub.add_parser("demo", help="the main job on the embedded reference server")
    p.add_argument("--keep", action="store_true", help="keep the temporary lab and print its path")
    p.add_argument("--sessions", type=int, default=20, help="POP3 sessions per mode (default 20)")
    p.add_argument("--results", default="results/demo", help="where reports go (default results/demo)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
