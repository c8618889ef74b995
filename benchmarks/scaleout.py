# ruff: noqa: E501
"""Scaling out, side by side in one run: memory 1 node, Redis 2 workers, Redis Cluster 2 nodes, NATS 2 nodes.

    python benchmarks/scaleout.py --runs 3 --seconds 5      # the figures for docs
    python benchmarks/scaleout.py --runs 1 --seconds 2      # a quick check

Fan-out: 1 channel, ``--subscribers`` subscribers (1,000), ~100-byte messages,
saturation, through ``hubbub bench``. The "2 nodes" setups are ``hubbub serve
--workers 2`` (two processes on one port, the kernel splits the subscribers,
the publisher lands on one, every publication crosses the broker to reach
the other) with: one redis-server; a 3-master Redis Cluster
(``engine.redis.cluster_address``); nats-server as broker (``broker.type =
"nats"``, memory engine, no history). Plus the acknowledged publishes/s of ONE
client connection through the Redis engine (1 node, 1 subscriber). Every
server (redis-server, the cluster's nodes, nats-server, hubbub) is started in
a temp dir on free 127.0.0.1 ports and stopped by its PID. Medians of
``--runs`` with [min-max], lost counted against acknowledged publications.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
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
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fanout_redis import free_port, redis_server  # noqa: E402


def _bus_free_port() -> int:
    """A port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port < 55000:
            with socket.socket() as sock:
                try:
                    sock.bind((HOST, port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


def _wait(port: int, banner: bytes, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as sock:
                if banner == b"INFO":
                    if sock.recv(4) == b"INFO":
                        return
                else:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(banner):
                        return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing answers on {HOST}:{port}")
        time.sleep(0.05)


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def redis_cluster(directory: str) -> Iterator[str]:
    """3 masters, no replicas; the ``cluster_address`` entry (comma-separated seeds)."""
    processes: list[subprocess.Popen[bytes]] = []
    ports = [_bus_free_port() for _ in range(3)]
    try:
        for port in ports:
            node_dir = Path(directory) / f"cluster-{port}"
            node_dir.mkdir()
            processes.append(
                subprocess.Popen(
                    ["redis-server", "--bind", HOST, "--port", str(port), "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no",
                     "--dir", str(node_dir)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        for port in ports:
            _wait(port, b"+PONG")
        addresses = [f"{HOST}:{p}" for p in ports]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        for port in ports:
            while (
                b"cluster_state:ok"
                not in subprocess.run(
                    ["redis-cli", "-p", str(port), "CLUSTER", "INFO"],
                    capture_output=True,
                    timeout=10,
                ).stdout
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not become ok")
                time.sleep(0.1)
        yield ",".join(addresses)
    finally:
        _stop(processes)


@contextlib.contextmanager
def nats_server() -> Iterator[str]:
    binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
    if binary is None:
        raise RuntimeError("nats-server is not installed (apt-get install nats-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "-a", HOST, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait(port, b"INFO")
        yield f"nats://{HOST}:{port}"
    finally:
        _stop([process])


def setup_options(
    directory: str, name: str, extra: dict[str, Any], workers: int, common: dict[str, Any]
) -> BenchOptions:
    config = json.loads(Path(hubbub_config(directory, "bench-api-key")).read_text())
    port = free_port()
    config["http_server"]["port"] = port
    config.update(extra)
    path = Path(directory) / f"{name}.json"
    path.write_text(json.dumps(config))
    command = f"{sys.executable} -m hubbub.cli.main serve --config {path}"
    if workers > 1:
        command += f" --workers {workers}"
    return BenchOptions(
        url=f"ws://{HOST}:{port}/connection/websocket", server_cmd=command, **common
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--payload", type=int, default=100)
    args = parser.parse_args()
    fanout: dict[str, Any] = {
        "scenario": "fanout",
        "subscribers": args.subscribers,
        "seconds": args.seconds,
        "payload": args.payload,
        "quiet": True,
    }
    one_connection = {**fanout, "subscribers": 1}
    with (
        tempfile.TemporaryDirectory(prefix="hubbub-scaleout-") as directory,
        redis_server(directory) as redis_address,
        redis_cluster(directory) as cluster_seeds,
        nats_server() as nats_url,
    ):
        setups = {
            "memory, 1 node": BenchOptions(**fanout),
            "Redis, 2 workers": setup_options(
                directory, "redis", {"engine": {"type": "redis", "redis": {"address": redis_address}}}, 2, fanout
            ),
            "Redis Cluster, 2 nodes": setup_options(
                directory, "cluster", {"engine": {"type": "redis", "redis": {"cluster_address": [cluster_seeds]}}}, 2, fanout
            ),
            "NATS, 2 nodes": setup_options(
                directory, "nats", {"broker": {"enabled": True, "type": "nats", "nats": {"url": nats_url}}}, 2, fanout
            ),
            "publishes/s, 1 connection, Redis": setup_options(
                directory, "publish", {"engine": {"type": "redis", "redis": {"address": redis_address}}}, 1, one_connection
            ),
        }  # fmt: skip
        results: dict[str, list[dict[str, Any]]] = {label: [] for label in setups}
        for run in range(args.runs):
            for label, options in setups.items():
                result = run_async(run_bench(options))
                results[label].append(result)
                print(
                    f"run {run + 1} {label}: {result['deliveries_per_s']:,.0f} deliveries/s, "
                    f"{result['publications_per_s']:,.0f} publications/s, lost {result['lost']}",
                    file=sys.stderr,
                    flush=True,
                )
    print(render(results, args))


def render(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> str:
    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"

    lines = [
        f"Scaling out: 1 channel, {args.subscribers} subscribers, ~{args.payload} B, saturation; "
        f"{args.runs} runs of {args.seconds:g} s, median [min-max]",
        "",
        "| setup | deliveries/s | publications/s | vs memory 1 node | lost |",
        "| --- | --- | --- | --- | --- |",
    ]
    memory = statistics.median(r["deliveries_per_s"] for r in results["memory, 1 node"])
    for label, runs in results.items():
        if label.startswith("publishes/s"):
            continue
        deliveries = [r["deliveries_per_s"] for r in runs]
        ratio = statistics.median(deliveries) / memory if memory else float("nan")
        lines.append(
            f"| {label} | {cell(deliveries)} | {cell([r['publications_per_s'] for r in runs])} "
            f"| {ratio:.2f}x | {sum(r['lost'] for r in runs)} |"
        )
    single = results["publishes/s, 1 connection, Redis"]
    lines += [
        "",
        f"Acknowledged publishes/s from ONE connection through the Redis engine (1 node): "
        f"{cell([r['publications_per_s'] for r in single])}, lost {sum(r['lost'] for r in single)}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
