"""Present audit results: the summary table on stdout and the JSON report.

Rule: presentation only; every verdict was decided by the cases. The JSON is
``{"cases": [...], "summary": {...}}`` with one object per case (id, group,
description, expectation, verdict, behavior, close, observation,
remote_close_code, duration_ms, wire) and the totals by verdict and group.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

from hubbub.tools.audit.case import AuditOptions
from hubbub.tools.audit.catalog import GROUPS
from hubbub.tools.audit.verdicts import FAILED, LEGEND, ORDER, CaseResult, summarise
from hubbub.version import __version__


def document(results: list[CaseResult], options: AuditOptions, seconds: float) -> dict[str, Any]:
    """The JSON report as a value."""
    summary = summarise(results)
    summary.update(
        target=options.url,
        mode=options.mode,
        cases_pattern=options.cases,
        seconds=round(seconds, 2),
        finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        tool=f"hubbub {__version__} audit",
        python=platform.python_version(),
        group_titles={g: GROUPS.get(g, g) for g in summary["groups"]},
        legend=LEGEND,
    )
    return {"cases": [r.to_json() for r in results], "summary": summary}


def write_json(report: dict[str, Any], path: str) -> None:
    Path(path).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")


def table(report: dict[str, Any]) -> str:
    """Counts by group and verdict, the FAILED cases, and the totals."""
    summary = report["summary"]
    short = {"OK": "OK", "INFORMATIONAL": "INFO", "NON-STRICT": "NON-STRICT",
             "UNIMPLEMENTED": "UNIMPL", "FAILED": "FAILED"}  # fmt: skip
    header = f"{'group':<48}" + "".join(f"{short[v]:>11}" for v in ORDER)
    lines = [f"hubbub audit of {summary['target']} ({summary['mode']} mode)", "", header]
    for group, counts in summary["groups"].items():
        title = f"{group:>3} {summary['group_titles'][group]}"[:47]
        lines.append(f"{title:<48}" + "".join(f"{counts[v]:>11}" for v in ORDER))
    totals = summary["verdicts"]
    lines.append(f"{'total':<48}" + "".join(f"{totals[v]:>11}" for v in ORDER))
    failed = [c for c in report["cases"] if c["verdict"] == FAILED]
    if failed:
        lines += ["", "FAILED cases:"]
        for case in failed:
            why = next((o for o in case["observation"] if o.startswith("FAILED")), "")
            lines.append(f"  {case['id']:<10} {case['description'][:60]}")
            if why:
                lines.append(f"  {'':<10} {why[:110]}")
    lines += [
        "",
        f"{summary['cases']} cases in {summary['seconds']:.1f} s: "
        + ("no case FAILED" if summary["passed"] else f"{totals[FAILED]} FAILED"),
    ]
    return "\n".join(lines)
