"""``python -m tests.broken_server --fault NAME --config FILE``: serve one fault.

Prints the same ``listening:`` / ``ready`` lines as ``pop3suite serve`` (it
*is* ``pop3suite serve`` after the fault is installed), so the same launcher
can read its ports.
"""

from __future__ import annotations

import argparse
import sys

from .faults import FAULTS, install


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.broken_server", description=__doc__)
    parser.add_argument("--fault", help="the fault to switch on ('none': the clean reference server)")
    parser.add_argument("--config", help="the lab's pop3suite.toml")
    parser.add_argument("--list", action="store_true", help="list the faults and the cases that catch them")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        for fault in FAULTS.values():
            print(f"{fault.name:<34} {fault.area:<14} {fault.description}")
            print(f"{'':<34} caught by: {', '.join(fault.catches)}")
        return 0
    if not args.fault or not args.config:
        parser.error("--fault and --config are required (or --list)")
    if args.fault != "none" and args.fault not in FAULTS:
        print(f"broken_server: --fault {args.fault!r}: no such fault (see --list)", file=sys.stderr)
        return 2
    if args.fault != "none":
        install(args.fault)
    from pop3suite.cli import build_parser, cmd_serve

    # The real `serve` parser, so the broken server gets every default a
    # `pop3suite serve` gets (log level, metrics port, ...).
    serve = build_parser().parse_args(["serve", "--config", args.config, *(["-v"] if args.verbose else [])])
    return cmd_serve(serve)


if __name__ == "__main__":
    sys.exit(main())
