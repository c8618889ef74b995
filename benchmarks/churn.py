"""Memory after churn: connect, subscribe, disconnect, many times; RSS must come back.

Starts ``hubbub serve`` (memory engine, an HMAC secret) and runs CYCLES
connect -> subscribe -> disconnect cycles, CONCURRENCY at a time, each with a
connection token valid for 24 hours (a closed session must not live as long
as its token). The server's RSS is read from /proc after a warm-up of WARMUP
cycles (the baseline: Python's allocator keeps the arenas it grew), and again
after the churn once the server settled; the difference must stay within a
few MB. Also printed: the sessions the server still holds (from ``info``).
Loopback only; bounded by the number of cycles and a timeout per cycle.

    python benchmarks/churn.py --cycles 50000 --concurrency 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import jwt

from hubbub.tools.runner import free_port, serve_argv

SECRET = "churn-benchmark-secret-of-enough-length"
API_KEY = "churn-api-key"
TIMEOUT = 10.0


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def cycle(http: aiohttp.ClientSession, url: str, token: str, channel: str) -> None:
    async with http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=TIMEOUT)) as ws:
        await ws.send_str(
            json.dumps({"id": 1, "connect": {"token": token}})
            + "\n"
            + json.dumps({"id": 2, "subscribe": {"channel": channel}})
        )
        seen = ""
        while '"id":2' not in seen:
            message = await asyncio.wait_for(ws.receive(), TIMEOUT)
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"closed during the cycle: {message}")
            seen += message.data
        if '"error"' in seen:
            raise RuntimeError(f"refused: {seen}")


async def churn(url: str, cycles: int, concurrency: int) -> float:
    started = time.monotonic()
    token = jwt.encode(
        {"sub": "churner", "exp": int(time.time()) + 24 * 3600}, SECRET, algorithm="HS256"
    )
    counter = iter(range(cycles))
    async with aiohttp.ClientSession() as http:

        async def worker() -> None:
            for n in counter:
                await cycle(http, url, token, f"chat:churn{n % 100}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started


async def num_clients(api: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{api}/info", json={}, headers={"X-API-Key": API_KEY}) as response,
    ):
        body = await response.json()
    return sum(int(node.get("num_clients", 0)) for node in body["result"]["nodes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cycles", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before RSS is read")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "churn.json"
        config.write_text(
            json.dumps(
                {
                    "http_server": {"address": "127.0.0.1", "port": port},
                    "http_api": {"key": API_KEY},
                    "log": {"level": "warn"},
                    "client": {"token": {"hmac_secret_key": SECRET}},
                    "channel": {
                        "namespaces": [
                            {
                                "name": "chat",
                                "presence": True,
                                "join_leave": True,
                                "history_size": 10,
                                "history_ttl": "60s",
                                "force_recovery": True,
                                "allow_subscribe_for_client": True,
                            }
                        ]
                    },
                }
            )
        )
        command = serve_argv(config)
        if (os.cpu_count() or 1) >= 2:
            command = ["taskset", "-c", "0", *command]
        server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        try:
            url = f"ws://127.0.0.1:{port}/connection/websocket"
            api = f"http://127.0.0.1:{port}/api"
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            start_kb = rss_kb(server.pid)
            warm = asyncio.run(churn(url, args.warmup, args.concurrency))
            time.sleep(args.settle)
            baseline_kb = rss_kb(server.pid)
            took = asyncio.run(churn(url, args.cycles, args.concurrency))
            time.sleep(args.settle)
            after_kb = rss_kb(server.pid)
            left = asyncio.run(num_clients(api))
        finally:
            server.terminate()
            _, errors = server.communicate(timeout=15)
    tracebacks = errors.count("Traceback")
    print(f"server RSS at start               {start_kb / 1024:8.1f} MB")
    print(f"after {args.warmup:,} warm-up cycles     {baseline_kb / 1024:8.1f} MB  ({warm:.1f} s)")
    print(
        f"after {args.cycles:,} more cycles     {after_kb / 1024:8.1f} MB  ({took:.1f} s, "
        f"{args.cycles / took:,.0f} cycles/s)"
    )
    print(f"growth over the churn             {(after_kb - baseline_kb) / 1024:+8.1f} MB")
    print(f"connections still held            {left:8d}")
    print(f"tracebacks in the server log      {tracebacks:8d}")
    if left or tracebacks:
        sys.exit(1)


if __name__ == "__main__":
    main()
