"""``pop3suite check`` and ``pop3suite report``: the conformance suite from the CLI.

``check`` runs the installed suite under pytest with its plugin
(:mod:`pop3suite.conformance.plugin`, loaded with ``-p pop3suite`` so it works
with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` too) and the package's own
``pytest.ini`` (the user's configuration in the working directory does not
apply); each flag maps onto the plugin's ``--pop3-`` option of the same
name, so ``pop3suite check --fast URL`` is ``pytest --pop3-fast --pop3-target URL``.
Before any case runs, the target and ``--report`` pass a pre-flight
(pop3suite/target/preflight.py).  Exit status (docs/conformance.md): 0 conformant,
1 some case FAILED (not a known deviation from ``--expectations``), 2 a usage
error or a failed pre-flight (nothing ran), 3 the run finished but some case
could not be judged (ERROR); FAILED wins over ERROR.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pop3suite import conformance
from pop3suite.target import preflight

EXIT_USAGE = 2

CHECK_VALUE_OPTIONS = (
    "pop3s",
    "smtp",
    "apop_user",
    "second_user",
    "cafile",
    "idle_timeout",
    "profile",
    "seed",
    "domain",
    "report",
    "target_file",
    "expectations",
    "source_address",
    "name",
)
CHECK_FLAGS = ("insecure", "allow_destructive", "fast")
#: The plugin's entry-point name (pyproject.toml, ``[project.entry-points.pytest11]``).
PLUGIN = "pop3suite"  # == pop3suite.conformance.plugin.PLUGIN_NAME (not imported: keeps the CLI start fast)


def add_check_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="run the conformance suite against a POP3 server (default: the embedded reference server)",
        description="Run the RFC-addressed conformance suite. URL is pop3://USER:PASS@HOST:PORT "
        "(pop3s:// for implicit TLS). Without URL the embedded reference server is tested.",
    )
    p.add_argument("url", nargs="?", help="pop3://USER:PASS@HOST:PORT or pop3s://...")
    p.add_argument("--pop3s", metavar="URL", help="the implicit-TLS endpoint of the same server")
    p.add_argument("--smtp", metavar="URL", help="smtp://HOST:PORT for seeding and relay cases")
    p.add_argument("--apop-user", metavar="USER:PASS", help="an account with APOP on")
    p.add_argument("--second-user", metavar="USER:PASS", help="a second account")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--cafile", metavar="FILE", help="CA to verify the server certificate against")
    tls.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    p.add_argument("--idle-timeout", type=float, metavar="SECONDS", help="the server's idle timeout")
    p.add_argument(
        "--profile", choices=("rfc", "provider"), help="judge by the RFCs (default) or add provider rules"
    )
    p.add_argument("--seed", metavar="ROUTE", help="smtp, maildir:DIR, exec:CMD or none: how fixtures get in")
    p.add_argument("--domain", help="mail domain of the user for SMTP seeding (default example.test)")
    p.add_argument("--allow-destructive", action="store_true", help="allow DELE+QUIT of scratch messages")
    p.add_argument("--report", metavar="DIR", help="write results.json, junit.xml and report.html")
    p.add_argument("--fast", action="store_true", help="skip slow cases (real 120 s / 600 s timers)")
    p.add_argument("--target-file", metavar="FILE", help="TOML file describing the target")
    p.add_argument("--expectations", metavar="FILE", help="known deviations (TOML: case id = reason)")
    p.add_argument("--source-address", metavar="ADDR", help="second local address for policy probes")
    p.add_argument("--name", help="the target's name in reports (default HOST:PORT)")
    p.add_argument(
        "--storage",
        choices=("maildir", "mbox"),
        help="mailbox format of the embedded reference server (default maildir; no URL only)",
    )
    p.add_argument("-k", dest="keyword", metavar="EXPR", help="only cases matching EXPR (pytest -k)")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    p.set_defaults(func=cmd_check)


def pytest_args(args: argparse.Namespace) -> list[str]:
    """The pytest command line equivalent to ``args``."""
    package = Path(conformance.__file__).parent
    argv = [
        "-p",
        PLUGIN,
        str(package),
        "-c",
        str(package / "pytest.ini"),
        "--rootdir",
        str(package.parent),
        "-p",
        "no:cacheprovider",
        "-v" if args.verbose else "-q",
    ]
    if args.url:
        argv += ["--pop3-target", args.url]
    for key in CHECK_VALUE_OPTIONS:
        value = getattr(args, key)
        if value is not None:
            argv += ["--pop3-" + key.replace("_", "-"), str(value)]
    for key in CHECK_FLAGS:
        if getattr(args, key):
            argv.append("--pop3-" + key.replace("_", "-"))
    if getattr(args, "storage", None):
        argv += ["--pop3-storage", args.storage]
    if args.keyword:
        argv += ["-k", args.keyword]
    if args.url or args.target_file:
        argv.append("--pop3-no-preflight")  # cmd_check did it (run_preflight)
    return argv


def run_preflight(args: argparse.Namespace) -> None:
    """The pre-flight of ``check``: ``--report`` is writable, an
    ``--expectations`` file reads and, for an external target (URL or
    ``--target-file``), the target answers and every account logs in.  The
    embedded server needs no more.

    Raises:
        preflight.PreflightError: one line naming the flag and what was found.
    """
    from pop3suite.target.model import TargetError, load_expectations, load_file

    if args.report:
        preflight.writable_dir(args.report, "--report")
    if args.expectations:  # read here, so the error names this command's flag
        try:
            load_expectations(args.expectations)
        except TargetError as error:
            raise preflight.PreflightError(f"--expectations: {error}") from None
    if not (args.url or args.target_file):
        return

    values: dict = {}
    if args.target_file:
        try:
            values = load_file(args.target_file)
        except TargetError as error:
            raise preflight.PreflightError(f"--target-file {error}") from None
    for key in ("pop3s", "apop_user", "second_user", "cafile"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.insecure:
        values["insecure"] = True
    url = args.url or values.get("url")
    if not isinstance(url, str):
        raise preflight.PreflightError(
            f'--target-file {args.target_file}: no url = "pop3://USER:PASS@HOST:PORT"'
        )
    values["url"] = url
    preflight.check_target_values(
        values, url_flag="URL" if args.url else f"--target-file {args.target_file}: url"
    )


def cmd_check(args: argparse.Namespace) -> int:
    import pytest

    if getattr(args, "storage", None) and (args.url or args.target_file):
        print("pop3suite check: --storage is for the embedded server (no URL)", file=sys.stderr)
        return 2
    try:
        run_preflight(args)
    except preflight.PreflightError as error:
        print(f"pop3suite check: {error}", file=sys.stderr)
        return EXIT_USAGE
    code = pytest.main(pytest_args(args))
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("pop3suite check: no case matched", file=sys.stderr)
        return EXIT_USAGE
    if code == pytest.ExitCode.USAGE_ERROR:  # pytest's 4: our 2 (nothing ran)
        return EXIT_USAGE
    return int(code)


def add_report_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="render reports: pop3suite/load/capacity runs (RUN...) or a matrix across check --report DIRs",
        description="pop3suite report RUN... [--out DIR]: an HTML report with charts of load run "
        "directories (run.json) or capacity directories (capacity.json). "
        "pop3suite report --matrix DIR... [--out FILE] [--markdown FILE]: the conformance matrix.",
    )
    p.add_argument("runs", nargs="*", metavar="RUN", help="load run or capacity directories")
    p.add_argument("--matrix", nargs="+", metavar="DIR", help="check report directories")
    p.add_argument(
        "--out",
        default=None,
        help="with RUN: output directory (default the first RUN); "
        "with --matrix: HTML file (default results/matrix.html)",
    )
    p.add_argument("--markdown", metavar="FILE", help="also write a Markdown table (--matrix only)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    if bool(args.runs) == bool(args.matrix):
        print("pop3suite report: give either RUN directories or --matrix DIR..., not both or neither",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.runs:
        return _cmd_load_report(args)
    from pop3suite.conformance import report

    out = Path(args.out or "results/matrix.html")
    try:  # before reading anything: an unwritable --out is a usage error, not a traceback at the end
        preflight.writable_file(out, "--out")
        if args.markdown:
            preflight.writable_file(args.markdown, "--markdown")
    except preflight.PreflightError as error:
        print(f"pop3suite: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    documents = []
    for directory in args.matrix:
        try:
            documents.append(report.load(Path(directory)))
        except (OSError, ValueError) as error:
            print(f"pop3suite: error: {directory}: no readable results.json ({error})", file=sys.stderr)
            return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.render_matrix(documents), encoding="utf-8")
    print(f"matrix of {len(documents)} targets: {out}")
    if args.markdown:
        Path(args.markdown).write_text(report.render_markdown_matrix(documents), encoding="utf-8")
        print(f"markdown: {args.markdown}")
    return 0


def _cmd_load_report(args: argparse.Namespace) -> int:
    """``pop3suite report RUN...``: the pop3suite/load/capacity report (pop3suite/load/report/)."""
    from pop3suite.load.report import ReportInputError, render_report

    if args.markdown:
        print("pop3suite report: --markdown applies to --matrix only", file=sys.stderr)
        return 2
    out = Path(args.out or args.runs[0])
    try:
        preflight.writable_dir(out, "--out")
    except preflight.PreflightError as error:
        print(f"pop3suite: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        html = render_report([Path(r) for r in args.runs], out)
    except ReportInputError as error:
        print(f"pop3suite: error: {error}", file=sys.stderr)
        return 2
    print(f"report: {html}")
    return 0
