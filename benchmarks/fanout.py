"""Fan-out throughput: one channel, N subscribers, publications at saturation.

A thin wrapper over ``hubbub bench fanout`` (src/hubbub/tools): starts
``hubbub serve`` pinned to CPU 0, the load generator pinned to CPU 1 (when the
machine has two), and prints deliveries per second counted at the subscribers.
Each run is bounded in time; loopback only.

    python benchmarks/fanout.py --subscribers 1000 --seconds 5 --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics

from hubbub.tools.runner import run_async, run_bench
from hubbub.tools.scenarios import BenchOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--payload", type=int, default=100, help="approximate data bytes")
    parser.add_argument("--batch", type=int, default=20, help="publish commands per frame")
    parser.add_argument("--window", type=int, default=200, help="publications in flight")
    args = parser.parse_args()
    two = (os.cpu_count() or 1) >= 2
    opts = BenchOptions(
        scenario="fanout",
        subscribers=args.subscribers,
        seconds=args.seconds,
        payload=args.payload,
        batch=args.batch,
        window=args.window,
        cpu=1 if two else None,
        server_cpu=0 if two else None,
        quiet=True,
    )
    results = []
    for run in range(args.runs):
        result = run_async(run_bench(opts))
        results.append(result)
        print(
            f"run {run + 1}: {result['deliveries_per_s']:,.0f} deliveries/s "
            f"({result['publications_per_s']:,.0f} publications/s, "
            f"loadgen CPU {max(result['loadgen_cpu']):.0%}, "
            f"server RSS {result.get('server_rss_end_kb', 0) / 1024:.0f} MB, "
            f"lost {result['lost']})"
        )
    rates = [r["deliveries_per_s"] for r in results]
    print(
        f"\nfan-out, 1 channel, {args.subscribers} subscribers, ~{args.payload} B payload: "
        f"median {statistics.median(rates):,.0f} deliveries/s "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}, {args.runs} runs)"
    )
    for result in results:
        for warning in result["warnings"]:
            print(f"WARNING: {warning}")


if __name__ == "__main__":
    main()
