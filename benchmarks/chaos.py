"""Chaos run: three hubbub nodes on one Redis, real SDK clients, faults for N minutes.

Starts redis-server, three ``hubbub serve`` nodes (Redis engine) each behind
TCP link proxies (node -> Redis, clients -> node), and nginx in front;
connects centrifuge-python and centrifuge-js clients (direct and through
nginx; client-side and server-side subscriptions, all recovering); publishes
numbered publications through the HTTP API of random live nodes; and
meanwhile, from a seeded plan, kills (-9), terminates, stops (SIGSTOP) and
restarts nodes, restarts Redis (losing its data) or stops it, and cuts, stalls
and partitions links (``--streams 2``: two plans at once, so faults overlap).
At the end it prints, per client and in total, what was lost, duplicated or
reordered, what the clients were told they could not recover, the faults
injected, and a scan of the node logs; it exits 1 if anything was lost,
duplicated or reordered without the client being told, or a node logged a
traceback.

    python benchmarks/chaos.py --minutes 3 --seed 1

Needs the test extras (centrifuge-python), redis-server, nginx and Node with
tests/js installed (scripts/test.sh installs them). The machinery lives in
tests/chaos_*.py; the suite runs a short version (tests/test_chaos.py).
Loopback only; bounded by --minutes and the settle timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package

from tests.chaos_cluster import FAULT_KINDS
from tests.chaos_report import render
from tests.chaos_run import ChaosOptions, run_chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="how long faults are injected")
    parser.add_argument("--seed", type=int, default=1, help="the fault plan's seed")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--direct-clients", type=int, default=3, help="per node")
    parser.add_argument("--nginx-clients", type=int, default=6)
    parser.add_argument("--js-clients", type=int, default=2, help="centrifuge-js clients")
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument(
        "--streams", type=int, default=1, help="concurrent fault streams (overlapping faults)"
    )
    parser.add_argument("--rate", type=float, default=20.0, help="publications/s per channel")
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"comma-separated kinds (default: all of {', '.join(FAULT_KINDS)})",
    )
    parser.add_argument("--gap", type=float, nargs=2, default=(2.0, 6.0), metavar=("MIN", "MAX"))
    parser.add_argument("--logs", type=Path, help="keep node logs in this directory")
    parser.add_argument(
        "--dump", type=Path, help="write the faults, acknowledgements and client events (JSON)"
    )
    args = parser.parse_args()
    kinds = tuple(kind for kind in args.faults.split(",") if kind)
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown:
        parser.error(f"unknown fault kinds: {', '.join(sorted(unknown))}")
    options = ChaosOptions(
        seed=args.seed,
        seconds=args.minutes * 60,
        nodes=args.nodes,
        channels=args.channels,
        direct_clients=args.direct_clients,
        nginx_clients=0 if args.no_nginx else args.nginx_clients,
        js_clients=args.js_clients,
        nginx=not args.no_nginx,
        streams=args.streams,
        rate=args.rate,
        gap=(args.gap[0], args.gap[1]),
        kinds=kinds,
    )
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
        args.logs.chmod(0o755)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run
    report = runner(run_chaos(options, args.logs.resolve() if args.logs else None))
    print(render(report))
    if args.dump is not None:
        args.dump.write_text(json.dumps(report.dump()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
