"""Fan-out by codec, side by side in one run: JSON before and after, Protobuf after.

Three variants, interleaved round by round (so that a noisy neighbour hurts
them alike), each ``hubbub bench fanout`` at saturation (one channel, N
subscribers, the publisher speaking JSON):

* ``json-before``: the server from ``--before-src`` (a checkout of the tree
  before the change, e.g. ``git archive main | tar -x -C /tmp/before``);
* ``json``: this tree's server, JSON subscribers;
* ``protobuf``: this tree's server, subscribers on the Protobuf protocol.

    python benchmarks/codecs.py --before-src /tmp/before --subscribers 1000 --seconds 5 --runs 3

Prints deliveries/s per variant (median, min-max), the ratio to
``json-before``, and the server's CPU time per delivery (the figure that
compares servers when the load generator or a neighbour limits the rate).
Server pinned to CPU 0, load generator to CPU 1 (two CPUs). Loopback only;
every run is bounded in time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from hubbub.tools.runner import (
    free_port,
    hubbub_config,
    run_async,
    run_bench,
    serve_command_from,
)
from hubbub.tools.scenarios import BenchOptions


def server_command(src: Path, config: str, port: int) -> str:
    """``hubbub serve`` from the source tree ``src`` (its ``src/`` first on the path)."""
    return serve_command_from(src, config, port)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before-src", type=Path, help="tree of the server before the change")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--payload", type=int, default=100)
    args = parser.parse_args()
    two = (os.cpu_count() or 1) >= 2
    here = Path(__file__).resolve().parent.parent
    variants: list[tuple[str, Path, bool]] = [("json", here, False), ("protobuf", here, True)]
    if args.before_src is not None:
        variants.insert(0, ("json-before", args.before_src.resolve(), False))
    rates: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    ns: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    with tempfile.TemporaryDirectory(prefix="hubbub-codecs-") as tmp:
        config = hubbub_config(tmp, "bench-api-key")
        for run in range(args.runs):
            for name, src, protobuf in variants:
                port = free_port()
                opts = BenchOptions(
                    scenario="fanout",
                    url=f"ws://127.0.0.1:{port}/connection/websocket",
                    server_cmd=server_command(src, config, port),
                    protobuf=protobuf,
                    subscribers=args.subscribers,
                    seconds=args.seconds,
                    payload=args.payload,
                    cpu=1 if two else None,
                    server_cpu=0 if two else None,
                    quiet=True,
                )
                result: dict[str, Any] = run_async(run_bench(opts))
                rates[name].append(result["deliveries_per_s"])
                cpu[name].append(max(result["loadgen_cpu"]))
                ns[name].append(result.get("server_ns_per_delivery") or 0.0)
                print(
                    f"run {run + 1} {name:12s} {result['deliveries_per_s']:>12,.0f} deliveries/s"
                    f"  server {ns[name][-1]:.0f} ns CPU/delivery"
                    f"  (lost {result['lost']}, loadgen CPU {max(result['loadgen_cpu']):.0%})"
                )
    base = statistics.median(rates[variants[0][0]])
    print(f"\nfan-out, 1 channel, {args.subscribers} subscribers, ~{args.payload} B payload:")
    for name, _, _ in variants:
        values = rates[name]
        median = statistics.median(values)
        print(
            f"  {name:12s} median {median:>12,.0f} deliveries/s "
            f"(min {min(values):,.0f}, max {max(values):,.0f}; x{median / base:.2f}; "
            f"server CPU {statistics.median(ns[name]):.0f} ns/delivery "
            f"({min(ns[name]):.0f}-{max(ns[name]):.0f}); loadgen CPU max {max(cpu[name]):.0%})"
        )


if __name__ == "__main__":
    main()
