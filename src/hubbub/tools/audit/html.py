"""The HTML report: one self-contained page (inline CSS, no script, no CDN).

Rule: presentation only, from the JSON report's value; every string from the
server or the cases is escaped. A summary table by group (verdict counts, each
group a link), then every case as a collapsible block with its expectation,
observations and wire log; FAILED cases open by default.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

from hubbub.tools.audit.verdicts import FAILED, ORDER

COLOURS = {
    "OK": "#2e7d32",
    "INFORMATIONAL": "#546e7a",
    "NON-STRICT": "#b26a00",
    "UNIMPLEMENTED": "#6a1b9a",
    "FAILED": "#c62828",
}
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
 max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#555;margin-bottom:14px}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #ddd;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f5f5f5}
.v{color:#fff;border-radius:3px;padding:1px 6px;font-size:12px;font-weight:600;white-space:nowrap}
.zero{color:#bbb}
.verdict{font-size:20px;font-weight:700;margin:10px 0}
details{border:1px solid #e0e0e0;border-radius:4px;margin:4px 0;padding:4px 10px}
summary{cursor:pointer}
.id{font-family:ui-monospace,monospace;display:inline-block;min-width:70px}
pre{background:#fafafa;border:1px solid #eee;padding:6px;overflow-x:auto;font-size:12px;
 margin:6px 0}
.legend td{text-align:left}
"""


def badge(verdict: str) -> str:
    return f'<span class="v" style="background:{COLOURS[verdict]}">{escape(verdict)}</span>'


def render(report: dict[str, Any]) -> str:
    summary = report["summary"]
    totals = summary["verdicts"]
    parts = [
        "<!doctype html><html lang=en><meta charset=utf-8>",
        f"<title>hubbub audit: {escape(summary['target'])}</title><style>{STYLE}</style><body>",
        f"<h1>hubbub audit of {escape(summary['target'])}</h1>",
        f"<div class=meta>{escape(summary['mode'])} mode, cases {escape(summary['cases_pattern'])}"
        f" &middot; {summary['cases']} cases in {summary['seconds']:.1f} s &middot; "
        f"{escape(summary['finished'])} &middot; {escape(summary['tool'])}</div>",
        '<div class="verdict" style="color:'
        + (COLOURS["OK"] if summary["passed"] else COLOURS[FAILED])
        + '">'
        + ("No case FAILED" if summary["passed"] else f"{totals[FAILED]} cases FAILED")
        + "</div>",
        "<h2>Summary by group</h2><table><tr><th>group</th>"
        + "".join(f"<th>{badge(v)}</th>" for v in ORDER)
        + "</tr>",
    ]
    for group, counts in summary["groups"].items():
        title = f"{group} {summary['group_titles'].get(group, '')}"
        parts.append(f'<tr><td><a href="#g{escape(group)}">{escape(title)}</a></td>')
        parts += [_count(counts[v]) for v in ORDER]
        parts.append("</tr>")
    parts.append("<tr><th>total</th>" + "".join(f"<th>{totals[v]}</th>" for v in ORDER))
    parts.append("</tr></table><table class=legend>")
    parts += [f"<tr><td>{badge(v)}</td><td>{escape(text)}</td></tr>"
              for v, text in summary["legend"].items()]  # fmt: skip
    parts.append("</table>")
    group = None
    for case in report["cases"]:
        if case["group"] != group:
            group = case["group"]
            title = f"{group} {summary['group_titles'].get(group, '')}"
            parts.append(f'<h2 id="g{escape(group)}">{escape(title)}</h2>')
        parts.append(_case(case))
    parts.append("</body></html>\n")
    return "".join(parts)


def _count(value: int) -> str:
    return f"<td>{value}</td>" if value else '<td class="zero">0</td>'


def _case(case: dict[str, Any]) -> str:
    opened = " open" if case["verdict"] == FAILED else ""
    close = case["remote_close_code"]
    wire = "\n".join(f"{ms:9.1f} ms {direction} {text}" for ms, direction, text in case["wire"])
    observations = "".join(f"<li>{escape(o)}</li>" for o in case["observation"])
    return (
        f"<details{opened}><summary><span class=id>{escape(case['id'])}</span> "
        f"{badge(case['verdict'])} {escape(case['description'])}</summary>"
        f"<p><b>Expected:</b> {escape(case['expectation'])}<br>"
        f"<b>Behavior:</b> {badge(case['behavior'])} <b>Close:</b> {badge(case['close'])} "
        f"<b>Server close code:</b> {escape(str(close)) if close is not None else 'none'}"
        f"{' (' + escape(case['remote_close_reason']) + ')' if case['remote_close_reason'] else ''}"
        f" <b>Duration:</b> {case['duration_ms']:.1f} ms</p>"
        f"<ul>{observations}</ul><pre>{escape(wire)}</pre></details>"
    )


def write_html(report: dict[str, Any], path: str) -> None:
    Path(path).write_text(render(report), encoding="utf-8")
