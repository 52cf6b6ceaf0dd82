"""Reports: one JSON record per case, HTML for people, and a matrix
across targets (Autobahn|Testsuite's model).  JUnit XML for CI is pytest's
own ``--junitxml`` (``--pop3-report DIR`` points it at ``DIR/junit.xml``;
the plugin, :mod:`pop3suite.conformance.plugin`, adds each case's id, level,
RFC section and outcome as properties).

``results.json``::

    {"target": ..., "profile": ..., "started": ..., "counts": {...},
     "cases": [{"id", "level", "outcome", "rfc", "section", "description",
                "probes", "expected", "actual", "transcript", "duration_s", ...}]}

ERROR (the suite could not judge the case) is counted and shown apart from
the server's outcomes everywhere: its own line in the summary, a JUnit
``<error>`` rather than a ``<failure>`` (the plugin's doing), its own colour
in the matrix.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

OUTCOMES = ("OK", "NON-STRICT", "FAILED", "INFORMATIONAL", "UNIMPLEMENTED", "ERROR")
#: report.html lists cases in this order: what needs a look first.
ORDER = {"FAILED": 0, "ERROR": 1, "NON-STRICT": 2, "UNIMPLEMENTED": 3, "INFORMATIONAL": 4, "OK": 5}
COLOURS = {
    "OK": "#c8f7c5",
    "NON-STRICT": "#fff3b0",
    "FAILED": "#f7c5c5",
    "INFORMATIONAL": "#dde8ff",
    "UNIMPLEMENTED": "#e6e6e6",
    "ERROR": "#e0c8f7",
}


def counts(cases: list[dict[str, Any]]) -> dict[str, int]:
    tally = dict.fromkeys(OUTCOMES, 0)
    for case in cases:
        tally[case["outcome"]] = tally.get(case["outcome"], 0) + 1
    return tally


def finding(case: dict[str, Any]) -> str:
    """What a non-OK outcome means: "RFC violation" or "hardening gap" (a
    security probe no RFC requires; never FAILED), "suite could not judge"
    for ERROR, else ""."""
    if case["outcome"] == "ERROR":
        return "suite could not judge"
    if case["outcome"] not in ("FAILED", "NON-STRICT"):
        return ""
    return "hardening gap" if case.get("kind") == "hardening" else "RFC violation"


#: What :func:`write_reports` writes (junit.xml beside them is pytest's).
REPORT_FILES = ("results.json", "report.html")


def write_reports(directory: Path, results: Any) -> list[Path]:
    """Write results.json and report.html into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    cases = sorted(results.records, key=lambda c: c["id"])
    document = {
        "target": results.target,
        "profile": results.profile,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(results.started)),
        "duration_s": round(time.time() - results.started, 1),
        "counts": counts(cases),
        "cases": cases,
    }
    json_path = directory / "results.json"
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
    html_path = directory / "report.html"
    html_path.write_text(render_html(document), encoding="utf-8")
    return [json_path, html_path]


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}
th{background:#f4f4f4;text-align:left}pre{white-space:pre-wrap;font-size:12px;margin:0;max-height:20em;overflow:auto}
details summary{cursor:pointer}.id{font-family:monospace}
"""


def _cell(outcome: str, title: str = "") -> str:
    return (
        f'<td style="background:{COLOURS.get(outcome, "#fff")}" title="{html.escape(title)}">{outcome}</td>'
    )


_FILTER_SCRIPT = """
function pop3filter(){
 var o=document.getElementById('f-outcome').value,l=document.getElementById('f-level').value,n=0;
 document.querySelectorAll('tr.case').forEach(function(r){
  var show=(!o||r.dataset.outcome===o)&&(!l||r.dataset.level===l);r.hidden=!show;if(show)n++;});
 document.getElementById('f-count').textContent=n+' shown';}
"""


def _options(values: list[str]) -> str:
    esc = html.escape
    return '<option value="">all</option>' + "".join(
        f'<option value="{esc(v)}">{esc(v)}</option>' for v in values
    )


def render_html(document: dict[str, Any]) -> str:
    """One target's report: counts, then every case with its evidence,
    failures first (FAILED, then ERROR, then the rest), with a filter by
    outcome and by level (inline script; the file stands alone)."""
    esc = html.escape
    rows = []
    cases = sorted(document["cases"], key=lambda c: (ORDER.get(c["outcome"], 9), c["id"]))
    for case in cases:
        deviation = f"<br><em>known deviation: {esc(case['deviation'])}</em>" if case.get("deviation") else ""
        probes = f"<br><small>probes: {esc(', '.join(case['probes']))}</small>" if case.get("probes") else ""
        evidence = ""
        if case["expected"] or case["actual"] or case["transcript"]:
            evidence = (
                "<details><summary>evidence</summary>"
                f"<p><b>Expected:</b> {esc(case['expected'])}<br><b>Actual:</b> {esc(case['actual'])}</p>"
                f"<pre>{esc(case['transcript'])}</pre></details>"
            )
        rows.append(
            f'<tr class=case data-outcome="{esc(case["outcome"])}" data-level="{esc(case["level"])}">'
            f"<td class=id>{esc(case['id'])}</td><td>{esc(case['level'])}</td>"
            f"<td>RFC {esc(case['rfc'])} §{esc(case['section'])}</td>{_cell(case['outcome'])}"
            f"<td>{esc(finding(case))}</td><td>{esc(case['description'])}{probes}{deviation}{evidence}</td></tr>"
        )
    tally = " ".join(f"{_cell(k)}<td>{v}</td>" for k, v in document["counts"].items())
    outcomes = sorted({c["outcome"] for c in document["cases"]}, key=lambda o: ORDER.get(o, 9))
    levels = sorted({c["level"] for c in document["cases"]})
    filters = (
        "<p>outcome <select id=f-outcome onchange=pop3filter()>" + _options(outcomes) + "</select> "
        "level <select id=f-level onchange=pop3filter()>" + _options(levels) + "</select> "
        f"<span id=f-count>{len(cases)} shown</span></p>"
    )
    return (
        f"<!doctype html><meta charset=utf-8><title>pop3suite: {esc(document['target'])}</title>"
        f"<style>{_STYLE}</style><script>{_FILTER_SCRIPT}</script>"
        f"<h1>pop3suite conformance: {esc(document['target'])}</h1>"
        f"<p>profile <b>{esc(document['profile'])}</b>, started {esc(document['started'])}, "
        f"{document['duration_s']} s</p><table><tr>{tally}</tr></table>"
        "<p>ERROR: the suite could not judge the case (its own error, the TLS trust setting, or the "
        "target unreachable); it is not counted as the server's failure.</p>"
        f"<h2>Cases</h2>{filters}"
        "<table><tr><th>case</th><th>level</th><th>where</th><th>outcome</th><th>finding</th>"
        "<th>requirement</th></tr>" + "".join(rows) + "</table>"
    )


def load(directory: Path) -> dict[str, Any]:
    path = directory / "results.json" if directory.is_dir() else directory
    return json.loads(path.read_text(encoding="utf-8"))


def render_matrix(documents: list[dict[str, Any]]) -> str:
    """Cases as rows, targets as columns."""
    esc = html.escape
    ids: dict[str, dict[str, Any]] = {}
    for document in documents:
        for case in document["cases"]:
            ids.setdefault(case["id"], case)
    header = "".join(f"<th>{esc(d['target'])}<br><small>{esc(d['profile'])}</small></th>" for d in documents)
    rows = []
    for case_id in sorted(ids):
        info = ids[case_id]
        cells = []
        for document in documents:
            found = next((c for c in document["cases"] if c["id"] == case_id), None)
            if found is None:
                cells.append("<td>-</td>")
            else:
                label = found["outcome"] + (" *" if found.get("deviation") else "")
                cells.append(_cell(found["outcome"], found.get("deviation") or found["actual"]).replace(
                    f">{found['outcome']}<", f">{esc(label)}<"))  # fmt: skip
        rows.append(
            f'<tr><td class=id title="{esc(info["description"])}">{esc(case_id)}</td>'
            f"<td>{esc(info['level'])}</td>{''.join(cells)}</tr>"
        )
    totals = "".join(
        "<td>" + "<br>".join(f"{k}: {v}" for k, v in d["counts"].items() if v) + "</td>" for d in documents
    )
    return (
        f"<!doctype html><meta charset=utf-8><title>pop3suite matrix</title><style>{_STYLE}</style>"
        "<h1>pop3suite conformance matrix</h1>"
        "<p>* = known deviation recorded in the target's expectations. "
        "ERROR = the suite could not judge (not the server's failure).</p>"
        f"<table><tr><th>case</th><th>level</th>{header}</tr><tr><td colspan=2>totals</td>{totals}</tr>"
        + "".join(rows)
        + "</table>"
    )


def render_markdown_matrix(documents: list[dict[str, Any]]) -> str:
    """Cases as rows, one column per run (target and profile), totals first."""
    ids = sorted({c["id"] for d in documents for c in d["cases"]})
    lines = [
        "| case | " + " | ".join(f"{d['target']} ({d['profile']})" for d in documents) + " |",
        "|---" * (len(documents) + 1) + "|",
        "| **totals** | "
        + " | ".join(", ".join(f"{k} {v}" for k, v in d["counts"].items() if v) for d in documents)
        + " |",
    ]
    for case_id in ids:
        cells = []
        for document in documents:
            found = next((c for c in document["cases"] if c["id"] == case_id), None)
            cells.append(
                "-" if found is None else found["outcome"] + (" *" if found.get("deviation") else "")
            )
        lines.append(f"| `{case_id}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
