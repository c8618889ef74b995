"""Connects per second through the connect proxy, next to JWT connects, in one run.

One ``hubbub serve`` (pinned to CPU 0) with a connect proxy to a small aiohttp
backend (its own process); the ``hubbub bench connect`` load generator (CPU 1)
connects N clients (connect + subscribe each, ``--concurrency`` handshakes at
once), alternately with a JWT (the proxy is not asked) and without (every
connect is a POST to the backend over hubbub's kept-alive pool). Each mode
runs ``--rounds`` times, interleaved; printed: median connects/s with the
range, connect latency p50/p99, and the CPU share of the server, the load
generator and the backend (which shares CPU 1 with the load generator on a
2-core machine: read its share next to the figure). Loopback only; every run
is bounded in count and time.

    python benchmarks/proxy_connect.py --clients 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hubbub.auth.tokens import make_token
from hubbub.tools.runner import run_async, run_bench, serve_argv
from hubbub.tools.scenarios import BenchOptions

SECRET = "bench-secret-of-a-reasonable-length-0123"
HOST = "127.0.0.1"


# --- the backend (run as: proxy_connect.py --serve-backend) ------------------------------


def serve_backend() -> None:
    from aiohttp import web

    count = 0

    async def connect(request: web.Request) -> web.Response:
        nonlocal count
        count += 1
        body = await request.json()
        answer = {"result": {"user": f"u{count}", "info": {"n": count}}}
        assert body["client"]
        return web.json_response(answer)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/connect", connect)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, HOST, 0).start()
        print(json.dumps({"port": runner.addresses[0][1]}), flush=True)
        await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())


# --- processes ------------------------------------------------------------------------


def pinned(cpu: int | None) -> Any:
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port: int, within: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=200, help="handshakes at once")
    parser.add_argument("--serve-backend", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_backend:
        serve_backend()
        return
    two = (os.cpu_count() or 1) >= 2
    server_cpu, load_cpu = (0, 1) if two else (None, None)
    backend = subprocess.Popen(
        [sys.executable, __file__, "--serve-backend"],
        stdout=subprocess.PIPE,
        preexec_fn=pinned(load_cpu),
    )
    assert backend.stdout is not None
    backend_port = json.loads(backend.stdout.readline())["port"]
    port = free_port()
    config = {
        "http_server": {"address": HOST, "port": port},
        "log": {"level": "error"},
        "client": {
            "token": {"hmac_secret_key": SECRET},
            "proxy": {
                "connect": {
                    "enabled": True,
                    "endpoint": f"http://{HOST}:{backend_port}/connect",
                    "timeout": "5s",
                }
            },
        },
        "channel": {
            "without_namespace": {
                "allow_subscribe_for_client": True,
                "allow_subscribe_for_anonymous": True,
            }
        },
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "config.json")
        path.write_text(json.dumps(config))
        server = subprocess.Popen(
            serve_argv(path),
            preexec_fn=pinned(server_cpu),
        )
        try:
            wait_port(port)
            figures = measure(args, port, server.pid, backend.pid, load_cpu)
        finally:
            for process in (server, backend):
                process.terminate()
                process.wait(10)
    report(args, figures)


def measure(
    args: argparse.Namespace, port: int, server_pid: int, backend_pid: int, cpu: int | None
) -> dict[str, list[dict[str, float]]]:
    token = make_token(SECRET, "bench-user", ttl=3600)
    figures: dict[str, list[dict[str, float]]] = {"jwt": [], "proxy": []}
    for round_ in range(args.rounds):
        modes = ["jwt", "proxy"] if round_ % 2 == 0 else ["proxy", "jwt"]
        for mode in modes:
            opts = BenchOptions(
                scenario="connect",
                url=f"ws://{HOST}:{port}/connection/websocket",
                server_pid=server_pid,
                subscribers=args.clients,
                concurrency=args.concurrency,
                storm="none",
                token=token if mode == "jwt" else "",
                cpu=cpu,
                quiet=True,
            )
            server0, backend0, t0 = cpu_seconds(server_pid), cpu_seconds(backend_pid), time.time()
            result = run_async(run_bench(opts))
            elapsed = max(time.time() - t0, 1e-9)
            latency = result["latency_us"]
            figure = {
                "connects_per_s": result["connects_per_s"],
                "p50_ms": latency.get("p50_us", 0) / 1000,
                "p99_ms": latency.get("p99_us", 0) / 1000,
                "loadgen_cpu": max(result["loadgen_cpu"]),
                "server_cpu": (cpu_seconds(server_pid) - server0) / elapsed,
                "backend_cpu": (cpu_seconds(backend_pid) - backend0) / elapsed,
                "failed": result["failed_attempts"],
            }
            figures[mode].append(figure)
            print(
                f"round {round_ + 1} {mode:5}: {figure['connects_per_s']:,.0f} connects/s, "
                f"p50 {figure['p50_ms']:.1f} ms, p99 {figure['p99_ms']:.1f} ms, "
                f"server CPU {figure['server_cpu']:.0%}, loadgen {figure['loadgen_cpu']:.0%}, "
                f"backend {figure['backend_cpu']:.0%}, failed attempts {figure['failed']}",
                flush=True,
            )
            time.sleep(1.0)  # the closes of the previous run settle
    return figures


def report(args: argparse.Namespace, figures: dict[str, list[dict[str, float]]]) -> None:
    print(
        f"\n{args.clients} clients (connect + subscribe), {args.concurrency} at once, "
        f"{args.rounds} rounds, os.cpu_count()={os.cpu_count()}"
    )
    medians = {}
    for mode, runs in figures.items():
        rates = [r["connects_per_s"] for r in runs]
        medians[mode] = statistics.median(rates)
        print(
            f"  {mode:5}: median {medians[mode]:,.0f} connects/s "
            f"(min {min(rates):,.0f}, max {max(rates):,.0f}); "
            f"p99 median {statistics.median(r['p99_ms'] for r in runs):.1f} ms; "
            f"server CPU median {statistics.median(r['server_cpu'] for r in runs):.0%}"
        )
    print(f"  proxy / jwt: {medians['proxy'] / medians['jwt']:.2f}")


if __name__ == "__main__":
    main()
