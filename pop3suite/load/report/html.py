"""Minimal HTML building blocks for the report: escaping, tables, the page.

Plain strings, no template engine: the report is a handful of sections and
tables, and every value passes through :func:`cell` (escaped, numbers
formatted the same way everywhere).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f2f2f2; } td.text, th.text { text-align: left; }
.pass { color: #176317; font-weight: bold; } .fail { color: #b00020; font-weight: bold; }
.note { color: #666; font-style: italic; } .how { color: #444; font-size: 0.9em; max-width: 900px; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def fmt(value: object) -> str:
    """One number format for every table: ints as is, floats with up to 6
    significant digits (the inputs' own precision), None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


class Raw(str):
    """Markup built here (a finished ``<td>``), passed through unescaped."""


def verdict_cell(passed: bool | None, yes: str = "PASS", no: str = "FAIL") -> Raw:
    if passed is None:
        return Raw('<td class="text">-</td>')
    return Raw(f'<td class="text {"pass" if passed else "fail"}">{esc(yes if passed else no)}</td>')


def cell(value: object) -> str:
    """A table cell, escaped; strings left-aligned, numbers right-aligned.
    A :class:`Raw` cell (from :func:`verdict_cell`) passes as is."""
    if isinstance(value, Raw):
        return value
    css = ' class="text"' if isinstance(value, str) else ""
    return f"<td{css}>{esc(fmt(value))}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], text_columns: int = 1) -> str:
    """An HTML table; the first ``text_columns`` headers are left-aligned."""
    head = "".join(
        f'<th class="text">{esc(h)}</th>' if i < text_columns else f"<th>{esc(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "\n".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
        f"<style>{CSS}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n{body}\n</body></html>\n"
    )
