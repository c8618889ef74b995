# ruff: noqa: E501
"""The API's ``broadcast`` to 100 channels on Redis: one after another (before) vs together (now).

    python benchmarks/broadcast.py --runs 5 --rounds 50     # the figures for docs
    python benchmarks/broadcast.py --runs 2 --rounds 10     # a quick check

A hub on the Redis engine (a redis-server started here, 127.0.0.1, free port,
no persistence, stopped by its PID) answers ``broadcast`` calls of
``--channels`` (100) channels with history (history_size 100, ttl 300 s), side
by side in one run: "before" is the previous implementation (each channel's
publish awaited before the next: one Redis round trip per channel), kept here
for the comparison; "now" is ``HttpApi.broadcast`` (every publish started in
one loop turn: one Redis pipeline for the call). The calls go through
``HttpApi.answer`` (the API without HTTP, as the aiohttp route and the ASGI app
call it), so the figure is the broadcast itself. Channels/s = channels x
rounds / seconds; medians of ``--runs`` with [min-max], alternating the two
in each run. The hub, the load and redis-server share the machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from hubbub.config.loader import load_config
from hubbub.errors import ClientError
from hubbub.hub.hub import Hub
from hubbub.server.api import BroadcastParams, HttpApi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout_redis import redis_server


async def one_after_another(api: HttpApi, body: msgspec.Raw) -> dict[str, Any]:
    """The previous ``HttpApi.broadcast``: each channel's publish awaited in turn."""
    params = msgspec.json.decode(body, type=BroadcastParams)
    responses = []
    for channel in params.channels:
        try:
            result = await api._publish_one(
                channel,
                params.data,
                params.skip_history,
                params.tags,
                params.idempotency_key,
                params.delta,
            )
            responses.append({"result": result})
        except ClientError as exc:
            responses.append({"error": {"code": exc.error.code, "message": exc.error.message}})
    return {"responses": responses}


async def measure(address: str, args: argparse.Namespace) -> dict[str, list[float]]:
    config = load_config(
        None,
        env={},
        base={
            "http_api": {"key": "bench"},
            "engine": {"type": "redis", "redis": {"address": address, "prefix": "bench"}},
            "channel": {
                "namespaces": [{"name": "news", "history_size": 100, "history_ttl": "300s"}]
            },
        },
    ).config
    hub = Hub(config)
    await hub.start()
    api = HttpApi(hub)
    body = msgspec.Raw(
        msgspec.json.encode(
            {
                "channels": [f"news:{i}" for i in range(args.channels)],
                "data": {"text": "x" * 80},
            }
        )
    )

    async def now(api: HttpApi, body: msgspec.Raw) -> dict[str, Any]:
        return await api.broadcast(body)

    ways = {"before (one after another)": one_after_another, "now (together)": now}
    figures: dict[str, list[float]] = {label: [] for label in ways}
    try:
        for way in ways.values():  # warm up: scripts loaded, connections open
            reply = await way(api, body)
            assert all("result" in r for r in reply["responses"]), reply
        for run in range(args.runs):
            for label, way in ways.items():
                started = time.perf_counter()
                for _ in range(args.rounds):
                    await way(api, body)
                seconds = time.perf_counter() - started
                rate = args.channels * args.rounds / seconds
                figures[label].append(rate)
                print(f"run {run + 1} {label}: {rate:,.0f} channels/s", file=sys.stderr, flush=True)
    finally:
        await hub.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="hubbub-broadcast-") as directory,
        redis_server(directory) as address,
    ):
        figures = asyncio.run(measure(address, args))
    print(
        f"broadcast to {args.channels} channels (history on), Redis engine, "
        f"{args.rounds} calls per run, {args.runs} runs; {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print("| way | channels/s (median) | range | vs before |")
    print("| --- | --- | --- | --- |")
    base = statistics.median(next(iter(figures.values())))
    for label, values in figures.items():
        median = statistics.median(values)
        print(
            f"| {label} | {median:,.0f} | {min(values):,.0f}-{max(values):,.0f} | {median / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
