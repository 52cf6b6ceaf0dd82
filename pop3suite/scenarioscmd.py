"""``pop3suite scenarios``: the scenario files shipped in the package.

Scenarios are package data (``pop3suite/scenarios/*.toml``), so a user who
installed the wheel has no checkout to browse: ``pop3suite scenarios`` lists
them with their descriptions and ``pop3suite scenarios show NAME`` prints one
to copy and edit (``> mine.toml``, then ``pop3suite load mine.toml``).
"""

from __future__ import annotations

import argparse
import sys
import tomllib

from pop3suite.load.scenario import scenario_dir


def _description(text: str) -> str:
    try:
        return str(tomllib.loads(text).get("description", ""))
    except tomllib.TOMLDecodeError:
        return "(not valid TOML)"


def cmd_scenarios(args: argparse.Namespace) -> int:
    shipped = {p.stem: p for p in sorted(scenario_dir().glob("*.toml"))}
    if args.action == "show":
        if not args.name:
            print("pop3suite scenarios show: give the NAME of a scenario", file=sys.stderr)
            return 2
        if args.name not in shipped:
            print(
                f"pop3suite scenarios: no scenario {args.name!r} (one of: {', '.join(shipped)})",
                file=sys.stderr,
            )
            return 2
        sys.stdout.write(shipped[args.name].read_text(encoding="utf-8"))
        return 0
    width = max((len(name) for name in shipped), default=0)
    for name, path in shipped.items():
        kind = "capacity grid" if name.startswith("capacity-") else "load scenario"
        print(f"{name:<{width}}  {kind:<13}  {_description(path.read_text(encoding='utf-8'))}")
    print(f"\n{len(shipped)} shipped in {scenario_dir()}")
    print("copy one to edit: pop3suite scenarios show NAME > mine.toml; run it: pop3suite load mine.toml")
    return 0


def add_scenarios_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scenarios",
        help="list the shipped load scenarios and capacity grids, or print one to copy",
        description="List the scenario files shipped with pop3suite (load scenarios for `pop3suite load`, "
        "capacity grids for `pop3suite capacity`), or print one with `show NAME`.",
    )
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?", help="the scenario to print (with show)")
    p.set_defaults(func=cmd_scenarios)
