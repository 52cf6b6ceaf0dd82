"""Writes the interop matrix: ``clients.json``, ``clients.md``, ``clients.html``.

Rows are (client, mode, login), columns (server, keep/delete).  A cell is
pass, fail (the client's own error follows the table), unsupported (the
client, or the server, lacks that mode or login: the reason follows the
table) or unavailable (the client is not installed).  The Markdown file is
what ``docs/clients.md`` embeds, so the documentation is generated, not
typed.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from pathlib import Path

from pop3suite import __version__

from .runner import Cell, MatrixRun

SYMBOL = {"pass": "pass", "fail": "**FAIL**", "unsupported": "-", "unavailable": "n/a"}


def to_json(run: MatrixRun) -> dict[str, object]:
    return {
        "started": run.started,
        "fixtures": run.fixtures,
        "servers": run.servers,
        "probes": run.probes,
        "clients": {name: asdict(info) for name, info in run.clients.items()},
        "cells": [cell.to_dict() for cell in run.cells],
        "summary": summary(run),
    }


def summary(run: MatrixRun) -> dict[str, int]:
    counts: dict[str, int] = {}
    for cell in run.cells:
        counts[cell.status] = counts.get(cell.status, 0) + 1
    return counts


def _columns(run: MatrixRun) -> list[tuple[str, str]]:
    behaviours: list[str] = []
    for cell in run.cells:
        if cell.behaviour not in behaviours:
            behaviours.append(cell.behaviour)
    return [(server, behaviour) for server in run.servers for behaviour in behaviours]


def _rows(run: MatrixRun) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for cell in run.cells:
        key = (cell.client, cell.mode, cell.auth)
        if key not in rows:
            rows.append(key)
    return rows


def _index(run: MatrixRun) -> dict[tuple[str, str, str, str, str], Cell]:
    return {(c.client, c.mode, c.auth, c.server, c.behaviour): c for c in run.cells}


def _reasons(run: MatrixRun) -> list[str]:
    """Distinct 'unsupported'/'unavailable' reasons per client."""
    seen: list[str] = []
    for cell in run.cells:
        if cell.status in ("unsupported", "unavailable"):
            line = f"{cell.client}: {cell.note}"
            if line not in seen:
                seen.append(line)
    return seen


SERVER_NOTE = "server (not the client): "


def server_notes(run: MatrixRun) -> dict[str, list[str]]:
    """Per server, the distinct notes on how it serves the fixtures (a server
    property shown once, not a client failure)."""
    notes: dict[str, list[str]] = {}
    for cell in run.cells:
        for line in cell.note.splitlines():
            if line.startswith(SERVER_NOTE):
                kept = notes.setdefault(cell.server, [])
                text = line[len(SERVER_NOTE) :]
                if text not in kept:
                    kept.append(text)
    return notes


def _client_part(note: str) -> str:
    """A cell note without the server-property lines (listed once elsewhere)."""
    return "\n".join(line for line in note.splitlines() if not line.startswith(SERVER_NOTE))


def to_markdown(run: MatrixRun) -> str:
    columns = _columns(run)
    cells = _index(run)
    out = [f"Measured {run.started} with pop3suite {__version__}. Fixtures: {', '.join(run.fixtures)}.", ""]
    out.append("| server | description |")
    out.append("|---|---|")
    out += [f"| {name} | {description} |" for name, description in run.servers.items()]
    out.append("")
    if run.probes:
        out += ["What each server offers (the suite's own client, CAPA per mode, before its cells):", ""]
        out += [f"- {name}: {text}" for name, text in run.probes.items()]
        out.append("")
    notes = server_notes(run)
    if notes:
        out += [
            "How servers serve the fixtures, where not byte-exact (server properties, not client "
            "failures; clients are compared with what the server serves):",
            "",
        ]
        for name, lines in notes.items():
            out += [f"- {name}: {line}" for line in lines]
        out.append("")
    out.append("| client | version | Debian package | stored form compared |")
    out.append("|---|---|---|---|")
    for info in run.clients.values():
        version = info.version if info.available else f"not available: {info.reason}"
        out.append(f"| {info.name} | {version} | {info.package or '-'} | {info.normalisation} |")
    out.append("")
    out.append("| client | mode | login | " + " | ".join(f"{s} {b}" for s, b in columns) + " |")
    out.append("|---|---|---|" + "---|" * len(columns))
    for client, mode, auth in _rows(run):
        marks = []
        for server, behaviour in columns:
            cell = cells.get((client, mode, auth, server, behaviour))
            marks.append(SYMBOL.get(cell.status, cell.status) if cell else "")
        out.append(f"| {client} | {mode} | {auth} | " + " | ".join(marks) + " |")
    out.append("")
    counts = summary(run)
    out.append("Totals: " + ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) + ".")
    reasons = _reasons(run)
    if reasons:
        out += ["", "Unsupported (-) and unavailable (n/a) cells:", ""]
        out += [f"- {reason}" for reason in reasons]
    if run.failed:
        out += ["", "Failures:", ""]
        for cell in run.failed:
            out.append(
                f"- {cell.client} {cell.mode} {cell.auth} {cell.behaviour} on {cell.server}: "
                + _client_part(cell.note).replace("\n", "; ")
            )
            if cell.error:
                out += ["", "  ```", *("  " + line for line in cell.error.splitlines()), "  ```", ""]
    return "\n".join(out) + "\n"


def to_html(run: MatrixRun) -> str:
    columns = _columns(run)
    cells = _index(run)
    colour = {"pass": "#cfc", "fail": "#fbb", "unsupported": "#eee", "unavailable": "#ddd"}
    head = "".join(f"<th>{html.escape(s)}<br>{b}</th>" for s, b in columns)
    rows = []
    for client, mode, auth in _rows(run):
        tds = []
        for server, behaviour in columns:
            cell = cells.get((client, mode, auth, server, behaviour))
            if cell is None:
                tds.append("<td></td>")
                continue
            title = html.escape(cell.note + ("\n" + cell.error if cell.error else ""))
            tds.append(
                f'<td style="background:{colour.get(cell.status, "#fff")}" title="{title}">{cell.status}</td>'
            )
        rows.append(f"<tr><th>{client}</th><td>{mode}</td><td>{auth}</td>{''.join(tds)}</tr>")
    clients = "".join(
        f"<li><b>{html.escape(i.name)}</b> {html.escape(i.version or i.reason)}: "
        f"{html.escape(i.normalisation)}</li>"
        for i in run.clients.values()
    )
    failures = "".join(
        f"<li>{c.client} {c.mode} {c.auth} {c.behaviour} on {html.escape(c.server)}: "
        f"{html.escape(c.note)}<pre>{html.escape(c.error)}</pre></li>"
        for c in run.failed
    )
    served = "".join(
        f"<li>{html.escape(name)}: {html.escape(line)}</li>"
        for name, lines in server_notes(run).items()
        for line in lines
    )
    return (
        "<!doctype html><meta charset=utf-8><title>pop3suite client interop matrix</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #999;padding:2px 6px}"
        "table{border-collapse:collapse}</style>"
        f"<h1>Client interop matrix</h1><p>Measured {html.escape(run.started)}; fixtures "
        f"{html.escape(', '.join(run.fixtures))}.</p><ul>{clients}</ul>"
        f"<table><tr><th>client</th><th>mode</th><th>login</th>{head}</tr>{''.join(rows)}</table>"
        "<h2>How servers serve the fixtures, where not byte-exact (server properties)</h2><ul>"
        + (served or "<li>byte-exact everywhere</li>")
        + "</ul><h2>What each server offers (CAPA per mode)</h2><ul>"
        + "".join(f"<li>{html.escape(n)}: {html.escape(t)}</li>" for n, t in run.probes.items())
        + "</ul>"
        f"<h2>Failures</h2><ul>{failures or '<li>none</li>'}</ul>"
        "<h2>Unsupported</h2><ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in _reasons(run)) + "</ul>"
    )


def write(run: MatrixRun, directory: Path) -> list[Path]:
    """Write the three files into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "clients.json": json.dumps(to_json(run), indent=2, ensure_ascii=False) + "\n",
        "clients.md": to_markdown(run),
        "clients.html": to_html(run),
    }
    paths = []
    for name, text in files.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
