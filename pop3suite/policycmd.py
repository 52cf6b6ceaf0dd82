"""``pop3suite policy``: the accounts over the mailbox/polling policy.

The provider asks customers whose mailboxes are far over its figures, or
whose polling overloads the server, to reduce them by a deadline; "a
capacity report should name the accounts over policy (size and polling
rate)" (provider-pop-service.md §3).  This command is that report for a
lab: current mailbox sizes through the storage layer, polling intervals
from the server's login log (``server.policy_log``), judged by
:class:`pop3suite.server.policy.Policy`.

It is a report: the exit status is 0 even when accounts are over policy,
and 2 only for a config or policy the user has to fix.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


@dataclass(frozen=True)
class AccountReport:
    """One account's line of the report."""

    account: str
    connection: str  # "tls", "plain" or "unknown" (never logged in)
    mailbox_bytes: int
    logins: int
    refused: int
    verdict: Any  # pop3suite.server.policy.Verdict

    def as_dict(self) -> dict[str, Any]:
        verdict = self.verdict
        rule = verdict.rule
        return {
            "account": self.account,
            "connection": self.connection,
            "mailbox_bytes": self.mailbox_bytes,
            "mailbox_mb": round(self.mailbox_bytes / 2**20, 2),
            "keep_under_mb": None if rule is None else rule.keep_under_mb,
            "required_interval_s": verdict.required_interval_s,
            "observed_interval_s": None
            if verdict.observed_interval_s is None
            else round(verdict.observed_interval_s, 3),
            "logins": self.logins,
            "refused_login_delay": self.refused,
            "over_size": verdict.over_size,
            "too_frequent": verdict.too_frequent,
            "over_policy": verdict.over_policy,
            "ask": list(verdict.asks),
        }


def _connection(records: list[Any]) -> str:
    """The connection type the account used most recently, ``unknown`` for
    an account never seen (it is then judged by the strictest size limit)."""
    if records:
        return max(records, key=lambda r: r.time).connection
    return "unknown"


def build_report(settings: Any, policy: Any, log_path: Path) -> tuple[list[AccountReport], int]:
    """Every configured account judged against ``policy``.

    Returns:
        The reports (sorted by account) and the number of unreadable log lines.
    """
    from pop3suite.server import policy as policy_mod
    from pop3suite.server import storage

    opener = getattr(storage, "open_store", None)
    store = opener(settings) if opener else storage.MaildirStore(str(settings.mail_root), fsync=False)
    records, bad = policy_mod.read_log(log_path)
    strictest = min(
        policy.rules, key=lambda c: policy.rules[c].keep_under_mb, default=policy_mod.CONNECTIONS[0]
    )
    reports = []
    for account in sorted(settings.accounts):
        seen = records.get(account, [])
        connection = _connection(seen)
        try:
            size = store.usage(account)
        except (OSError, storage.StorageError) as error:
            print(f"pop3suite: warning: cannot size {account}'s mailbox: {error}", file=sys.stderr)
            size = 0
        interval = policy_mod.observed_interval(seen)
        verdict = policy.over_policy(
            account, size, strictest if connection == "unknown" else connection, interval
        )
        refused = sum(1 for r in seen if r.outcome != "ok")
        reports.append(AccountReport(account, connection, size, len(seen), refused, verdict))
    return reports, bad


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def render_text(
    policy: Any, source: str, log_path: Path, reports: list[AccountReport], show_all: bool
) -> str:
    over = [r for r in reports if r.verdict.over_policy]
    shown = reports if show_all else over
    lines = [
        f"policy {policy.name} ({source}); login log {log_path}",
        f"{len(reports)} accounts, {len(over)} over policy"
        + (f": {', '.join(r.account for r in over)}" if over else ""),
    ]
    if shown:
        header = ("account", "connection", "mailbox MB", "limit MB", "polls every", "required", "over")
        rows = [header]
        for r in shown:
            verdict = r.verdict
            flags = [
                name for name, on in (("size", verdict.over_size), ("polling", verdict.too_frequent)) if on
            ]
            rows.append(
                (
                    r.account,
                    r.connection,
                    f"{r.mailbox_bytes / 2**20:.1f}",
                    "-" if verdict.rule is None else f"{verdict.rule.keep_under_mb:g}",
                    _minutes(verdict.observed_interval_s),
                    _minutes(verdict.required_interval_s),
                    "+".join(flags) or "no",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines.append("")
        lines += [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
    asks = [r for r in over if r.verdict.asks]
    if asks:
        lines.append("")
        lines.append("What to ask the customers:")
        for r in asks:
            lines.append(f"  {r.account}: please {'; '.join(r.verdict.asks)}.")
    return "\n".join(lines)


def cmd_policy(args: argparse.Namespace) -> int:
    from pop3suite.server import config
    from pop3suite.server import policy as policy_mod

    def fail(message: str) -> int:
        print(f"pop3suite: error: {message}", file=sys.stderr)
        return EXIT_USAGE

    try:
        settings = config.load(args.config)
        if args.policy:
            policy = policy_mod.resolve(args.policy, "the command line", "--policy", Path.cwd(), args.backend)
            source = "--policy"
        elif settings.policy is not None:
            policy, source = settings.policy, str(settings.path)
        else:
            return fail(
                f"{settings.path}: no policy: set server.policy or a [policy] table, or give --policy"
            )
    except config.ConfigError as error:
        return fail(str(error))
    log_path = settings.policy_log or settings.path.parent / "policy-log.jsonl"
    reports, bad = build_report(settings, policy, log_path)
    if bad:
        print(f"pop3suite: warning: {bad} unreadable lines in {log_path} skipped", file=sys.stderr)
    if args.json:
        shown = reports if args.all else [r for r in reports if r.verdict.over_policy]
        document = {
            "policy": policy.name,
            "source": source,
            "log": str(log_path),
            "accounts_checked": len(reports),
            "over_policy": [r.account for r in reports if r.verdict.over_policy],
            "accounts": [r.as_dict() for r in shown],
        }
        print(json.dumps(document, indent=2))
    else:
        print(render_text(policy, source, log_path, reports, args.all))
    return 0


def add_policy_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "policy",
        help="report the accounts over the mailbox/polling policy (size and polling rate)",
        description="Judge every account of a lab against the mailbox/polling policy: current mailbox "
        "size (storage layer) and observed polling interval (the server's login log). Exit 0 even when "
        "accounts are over policy; 2 for a bad config or policy.",
    )
    p.add_argument("--config", default="pop3suite.toml", help="lab config (default ./pop3suite.toml)")
    p.add_argument(
        "--policy",
        metavar="NAME|FILE",
        help="provider-50mb, provider-30mb or a guidance.json (default: the config's policy)",
    )
    p.add_argument("--backend", help="which backend's rows of a guidance.json to use")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--all", action="store_true", help="list compliant accounts too")
    p.set_defaults(func=cmd_policy)
