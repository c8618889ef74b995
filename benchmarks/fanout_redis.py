"""Fan-out across two nodes sharing one Redis, next to one node on the memory engine.

Uses the same load generator as benchmarks/fanout.py (``hubbub.tools``). The
two-node figure runs ``hubbub serve --workers 2`` with ``engine.type = redis``:
two processes on one port (SO_REUSEPORT), so the kernel splits the subscribers
over both nodes while the publisher lands on one; every publication crosses
Redis to reach the other node. The single-node figure is ``hubbub serve`` with
the memory engine, same load, same run. Median of ``--runs``; loopback only;
each run bounded by ``--seconds``; redis-server is started in a temp dir on a
free port and stopped by its PID.

    python benchmarks/fanout_redis.py --subscribers 1000 --seconds 5 --runs 3
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hubbub.tools.runner import hubbub_config, run_async, run_bench
from hubbub.tools.scenarios import BenchOptions

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server(directory: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            HOST,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            directory,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((HOST, port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"{HOST}:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--payload", type=int, default=100)
    args = parser.parse_args()
    common: dict[str, Any] = {
        "scenario": "fanout",
        "subscribers": args.subscribers,
        "seconds": args.seconds,
        "payload": args.payload,
        "quiet": True,
    }
    with (
        tempfile.TemporaryDirectory(prefix="hubbub-fanout-redis-") as directory,
        redis_server(directory) as address,
    ):
        path = Path(hubbub_config(directory, "bench-api-key"))
        config = json.loads(path.read_text())
        port = free_port()
        config["http_server"]["port"] = port
        config["engine"] = {"type": "redis", "redis": {"address": address}}
        cluster_config = Path(directory) / "cluster.json"
        cluster_config.write_text(json.dumps(config))
        cluster = BenchOptions(
            url=f"ws://{HOST}:{port}/connection/websocket",
            server_cmd=f"{sys.executable} -m hubbub.cli.main serve --config {cluster_config} "
            "--workers 2",
            **common,
        )
        single = BenchOptions(**common)
        figures: dict[str, list[float]] = {"memory, 1 node": [], "redis, 2 nodes": []}
        for run in range(args.runs):
            for label, opts in (("memory, 1 node", single), ("redis, 2 nodes", cluster)):
                result = run_async(run_bench(opts))
                figures[label].append(result["deliveries_per_s"])
                print(
                    f"run {run + 1} {label}: {result['deliveries_per_s']:,.0f} deliveries/s "
                    f"({result['publications_per_s']:,.0f} publications/s, "
                    f"lost {result['lost']} of acknowledged, "
                    f"{result['unacknowledged']} publishes unanswered at the end)",
                    flush=True,
                )
    print(f"\nfan-out, 1 channel, {args.subscribers} subscribers, ~{args.payload} B payload:")
    for label, rates in figures.items():
        print(
            f"  {label}: median {statistics.median(rates):,.0f} deliveries/s "
            f"(min {min(rates):,.0f}, max {max(rates):,.0f}, {args.runs} runs)"
        )


if __name__ == "__main__":
    main()
