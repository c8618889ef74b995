"""Present a bench summary: the table on stdout, the JSON file, the latency plot.

Rule: presentation only; every figure shown was computed by the runner. The PNG
plot needs matplotlib (``pip install 'hubbub[bench]'``); a ``.html`` plot is a
self-contained page with an inline SVG and needs nothing.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from hubbub.tools.histogram import Histogram


def _ms(us: int | float) -> str:
    return f"{us / 1000:.2f} ms"


def table(summary: dict[str, Any]) -> str:
    """The end-of-run summary as aligned rows."""
    rows: list[tuple[str, str]] = [
        ("scenario", summary["scenario"]),
        ("target", str(summary["target"])),
    ]
    s = summary
    if s["scenario"] == "fanout":
        rows += [
            ("deliveries/s", f"{s['deliveries_per_s']:,.0f}"),
            ("publications/s", f"{s['publications_per_s']:,.0f}"),
            *([("server CPU", f"{s['server_cpu']:.0%} of a core")] if "server_cpu" in s else []),
            *(
                [("server CPU per delivery", f"{s['server_ns_per_delivery']:,.0f} ns")]
                if "server_ns_per_delivery" in s
                else []
            ),
            ("delivered (window)", f"{s['delivered']:,}"),
            *(
                [
                    (
                        "bytes on the wire",
                        f"{s['wire_bytes']:,} ({s['wire_bytes_per_delivery']:.1f} per delivery; "
                        f"{s.get('compressed_subscribers', 0)} subscribers compressed)",
                    )
                ]
                if s.get("wire_bytes_per_delivery") is not None
                else []
            ),
            ("expected / after drain", f"{s['expected']:,} / {s['delivered_after_drain']:,}"),
            ("lost (of acknowledged)", f"{s['lost']:,}"),
            ("unanswered publishes at the end", f"{s.get('unacknowledged', 0):,}"),
            ("duplicated", f"{s['duplicated']:,}"),
            (
                "sequence-checked",
                f"{s['seq_checked_subscribers']} subscribers, {s['seq_lost']:,} missing",
            ),
            ("publish errors", f"{s['publish_errors']:,}"),
        ]
    elif s["scenario"] == "rpc":
        rows += [
            ("requests/s", f"{s['requests_per_s']:,.0f}"),
            ("requests", f"{s['requests']:,}"),
            ("errors", f"{s['errors']:,}"),
        ]
    elif s["scenario"] == "connect":
        rows += [
            ("clients", f"{s['clients']:,}"),
            ("connects+subscribes/s", f"{s['connects_per_s']:,.0f}"),
            ("connect time", f"{s['connect_s']:.2f} s"),
        ]
        if "server_us_per_connect" in s:
            rows.append(("server CPU per connect", f"{s['server_us_per_connect']:.0f} us"))
        if "storm" in s:
            storm = s["storm"]
            rows.append(
                (f"reconnect storm ({storm['mode']})", f"{storm['seconds']:.2f} s until all back")
            )
            if "restart_s" in storm:
                rows.append(
                    (
                        "  of which server restart",
                        f"{storm['restart_s']:.2f} s (stop {storm['stop_s']:.2f} s, "
                        f"start {storm['start_s']:.2f} s)",
                    )
                )
            if "stop_cpu_s" in storm:
                rows.append(("  server CPU to stop", f"{storm['stop_cpu_s'] * 1000:.0f} ms"))
            if "reconnect_us_per_client" in storm:
                rows.append(
                    ("  server CPU per reconnect", f"{storm['reconnect_us_per_client']:.0f} us")
                )
            rows.append(("  refused or failed attempts", f"{storm['failed_attempts']:,}"))
            rows.append(("  recovered", f"{storm['recovered']:,}"))
    elif s["scenario"] == "idle":
        rows += [
            ("connections", f"{s['clients']:,}"),
            ("connect time", f"{s['connect_s']:.2f} s"),
            ("closed by server", f"{s['closed_by_server']:,}"),
        ]
        if "rss_per_connection_bytes" in s:
            rows += [
                ("server RSS before", f"{s['server_rss_before_kb'] / 1024:.1f} MB"),
                ("server RSS after", f"{s['server_rss_after_kb'] / 1024:.1f} MB"),
                ("RSS per connection", f"{s['rss_per_connection_bytes'] / 1024:.2f} KB"),
            ]
    lat = s["latency_us"]
    if lat["count"]:
        label = "connect+subscribe latency" if s["scenario"] == "connect" else "latency"
        rows.append(
            (
                label,
                f"p50 {_ms(lat['p50_us'])}  p90 {_ms(lat['p90_us'])}  p99 {_ms(lat['p99_us'])}  "
                f"p99.9 {_ms(lat['p99_9_us'])}  max {_ms(lat['max_us'])}  (n={lat['count']:,})",
            )
        )
    if "server_rss_end_kb" in s:
        rows.append(("server RSS at end", f"{s['server_rss_end_kb'] / 1024:.1f} MB"))
    rows.append(("bench CPU", " ".join(f"{c:.0%}" for c in s["loadgen_cpu"])))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    if s["warnings"]:
        bar = "!" * 78
        lines += ["", bar, *(f"WARNING: {w}" for w in s["warnings"]), bar]
    return "\n".join(lines)


def load_title(summary: dict[str, Any]) -> str:
    """The scenario, target and load parameters, for plot titles."""
    o = summary["options"]
    rate = f"{o['rate']:g} pub/s" if o.get("rate") else "saturation"
    who = "requesters" if summary["scenario"] == "rpc" else "clients"
    return (f"hubbub bench {summary['scenario']} - {summary['target']}\n"
            f"{o['subscribers']} {who}, {o['channels']} channel(s), {o['publishers']} "
            f"publisher(s), {rate}, {o['payload']} B payload, {o['seconds']:g} s")  # fmt: skip


def write_json(summary: dict[str, Any], path: str) -> None:
    Path(path).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def write_plot(summary: dict[str, Any], path: str) -> None:
    """The latency distribution: percentile curve (PNG with matplotlib, or HTML/SVG)."""
    histogram = Histogram.from_dict(summary["latency_hist"])
    points = percentile_curve(histogram)
    title = load_title(summary)
    if path.endswith((".html", ".htm")):
        Path(path).write_text(_html(points, title, summary))
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise RuntimeError(
            "--plot FILE.png needs matplotlib: pip install 'hubbub[bench]' (or use FILE.html)"
        ) from exc
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([1 / (1 - q / 100) for q, _ in points], [v / 1000 for _, v in points])
    ax.set_xscale("log")
    ticks = [50, 90, 99, 99.9, 99.99]
    ax.set_xticks([1 / (1 - q / 100) for q in ticks], [f"p{q:g}" for q in ticks])
    ax.set_ylabel("latency (ms)")
    ax.set_xlabel("percentile (log scale of 1/(1-q))")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def percentile_curve(histogram: Histogram) -> list[tuple[float, int]]:
    """(percentile, value us) from p0 to p99.99 on a log scale of 1/(1-q)."""
    if histogram.total == 0:
        return []
    points = []
    steps = 80
    for i in range(steps + 1):
        q = 100 * (1 - math.pow(10, -4 * i / steps))
        points.append((q, histogram.percentile(q)))
    return points


def _html(points: list[tuple[float, int]], title: str, summary: dict[str, Any]) -> str:
    """An inline SVG: y axis in ms with ticks, x axis in percentiles, labelled."""
    width, height, left, right, top_pad, bottom = 700, 360, 70, 20, 20, 50
    top = max((v for _, v in points), default=1) or 1

    def x(q: float) -> float:
        span = width - left - right
        return left + span * math.log10(1 / max(1e-4, 1 - q / 100)) / 4

    def y(v: float) -> float:
        return height - bottom - (height - bottom - top_pad) * v / top

    path = " ".join(f"{x(q):.1f},{y(v):.1f}" for q, v in points)
    axes = (
        f'<line x1="{left}" y1="{y(0):.0f}" x2="{width - right}" y2="{y(0):.0f}" stroke="#333"/>'
        f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{y(0):.0f}" stroke="#333"/>'
    )
    ticks = "".join(
        f'<line x1="{x(q):.0f}" y1="{y(0):.0f}" x2="{x(q):.0f}" y2="{y(0) + 5:.0f}" '
        f'stroke="#333"/><text x="{x(q):.0f}" y="{y(0) + 18:.0f}" font-size="11" '
        f'text-anchor="middle">p{q:g}</text>'
        for q in (0, 50, 90, 99, 99.9, 99.99)
    )
    ticks += "".join(
        f'<line x1="{left - 5}" y1="{y(v):.0f}" x2="{width - right}" y2="{y(v):.0f}" '
        f'stroke="#ddd"/><text x="{left - 8}" y="{y(v) + 4:.0f}" font-size="11" '
        f'text-anchor="end">{v / 1000:.2f}</text>'
        for v in (top * k / 4 for k in range(5))
    )
    labels = (
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 10}" font-size="12" '
        'text-anchor="middle">percentile</text>'
        f'<text x="15" y="{(height - bottom) / 2:.0f}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 15 {(height - bottom) / 2:.0f})">latency (ms)</text>'
    )
    lat = summary["latency_us"]
    heading = "".join(f"<div>{html.escape(line)}</div>" for line in title.split("\n"))
    return (
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<h3>{heading}</h3>"
        f'<svg width="{width}" height="{height}" style="border:1px solid #ccc">{axes}{ticks}'
        f'{labels}<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{path}"/>'
        f"</svg><pre>{html.escape(json.dumps(lat, indent=2))}</pre>"
    )
