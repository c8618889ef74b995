"""permessage-deflate on and off, side by side: fan-out deliveries/s and bytes on the wire.

Each run is one ``hubbub bench fanout`` (src/hubbub/tools) that starts ``hubbub
serve`` itself (pinned to CPU 0, the load generator to CPU 1 when there are
two), with ``websocket.compression`` on for the compressed runs, whose clients
offer the extension. Off and on alternate run by run, so machine noise falls on
both alike. Payloads are varied words and ids (``--text-payload``): a repeated
letter would compress about 60 to 1 and flatter compression. Two loads:

* saturation: publications as fast as the server takes them (the hub batches a
  turn's publications of a channel into one frame, compressed once for every
  subscriber);
* fixed rate: one publication per frame, each compressed alone (the worst case
  for compression), at a rate both settings sustain.

Prints medians with min and max for deliveries/s, bytes received per delivery,
server CPU per delivery and the load generator's CPU share. Loopback only;
every run is bounded in time.

    python benchmarks/compression.py --subscribers 1000 --seconds 5 --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from typing import Any

from hubbub.tools.runner import run_async, run_bench
from hubbub.tools.scenarios import BenchOptions

Summary = dict[str, Any]


def spread(values: list[float], fmt: str) -> str:
    """``median (min-max)`` of ``values``."""
    if not values:
        return "n/a"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{fmt.format(mid)} ({fmt.format(low)}-{fmt.format(high)})"


METRICS: list[tuple[str, Callable[[Summary], float | None], str]] = [
    ("deliveries/s", lambda s: s["deliveries_per_s"], "{:,.0f}"),
    ("wire bytes/delivery", lambda s: s.get("wire_bytes_per_delivery"), "{:,.1f}"),
    ("server CPU ns/delivery", lambda s: s.get("server_ns_per_delivery"), "{:,.0f}"),
    ("server CPU", lambda s: 100 * s["server_cpu"] if "server_cpu" in s else None, "{:.0f} %"),
    ("load generator CPU", lambda s: 100 * max(s["loadgen_cpu"]), "{:.0f} %"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--payload", type=int, default=300, help="approximate data bytes")
    parser.add_argument("--rate", type=float, default=100.0, help="fixed load: publications/s")
    args = parser.parse_args()
    two = (os.cpu_count() or 1) >= 2
    base = BenchOptions(
        scenario="fanout",
        subscribers=args.subscribers,
        seconds=args.seconds,
        payload=args.payload,
        text_payload=True,
        cpu=1 if two else None,
        server_cpu=0 if two else None,
        quiet=True,
    )
    loads = {"saturation": 0.0, f"fixed {args.rate:g}/s": args.rate}
    results: dict[tuple[str, bool], list[Summary]] = {}
    for run in range(args.runs):
        for load, rate in loads.items():
            for compress in (False, True):
                opts = BenchOptions(**{**base.__dict__, "rate": rate, "compress": compress})
                summary = run_async(run_bench(opts))
                results.setdefault((load, compress), []).append(summary)
                setting = "on " if compress else "off"
                print(
                    f"run {run + 1}/{args.runs} {load:>12} compression {setting}: "
                    f"{summary['deliveries_per_s']:,.0f} deliveries/s, "
                    f"{summary['wire_bytes_per_delivery'] or 0:,.1f} B/delivery, "
                    f"lost {summary['lost']}, "
                    f"{summary['compressed_subscribers']} subscribers compressed"
                )
    print(
        f"\nfan-out, 1 channel, {args.subscribers} subscribers, ~{args.payload} B text payload, "
        f"{args.runs} runs each (median, min-max)\n"
    )
    header = "| load | metric | compression off | compression on |"
    print(header + "\n| --- | --- | --- | --- |")
    for load in loads:
        for label, get, fmt in METRICS:
            cells = []
            for compress in (False, True):
                values = [v for s in results[(load, compress)] if (v := get(s)) is not None]
                cells.append(spread([float(v) for v in values], fmt))
            print(f"| {load} | {label} | {cells[0]} | {cells[1]} |")
    for summaries in results.values():
        for summary in summaries:
            for warning in summary["warnings"]:
                print(f"WARNING: {warning}")


if __name__ == "__main__":
    main()
