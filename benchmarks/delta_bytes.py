"""Bytes on the wire for successive versions of one ~2 KB JSON document, with and
without delta compression (Fossil), as two real WebSocket subscribers receive them.

A hubbub server (memory engine, a namespace with ``allowed_delta_types:
["fossil"]`` and ``delta_publish``) runs in this process; one subscriber asks
for ``delta: "fossil"``, the other does not; N versions (small edits of the
document: a stock count, an inserted or removed item now and then, a new title
every 13th) are published through the application API. Counted: WebSocket
message payload bytes each subscriber received for the publications.

    python benchmarks/delta_bytes.py --versions 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from typing import Any

import websockets

from hubbub.config.loader import load_config
from hubbub.hub.hub import Hub
from hubbub.server.run import start

NAMESPACE = {
    "name": "docs",
    "history_size": 10,
    "history_ttl": "60s",
    "force_recovery": True,
    "allowed_delta_types": ["fossil"],
    "delta_publish": True,
    "allow_subscribe_for_client": True,
    "allow_subscribe_for_anonymous": True,
}


def versions(count: int, seed: int = 1) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    doc: dict[str, Any] = {
        "title": "inventory",
        "items": [
            {"id": i, "name": f"article {i}", "price": round(i * 1.5, 2), "stock": i % 7}
            for i in range(36)
        ],
    }
    out = []
    for n in range(count):
        rnd.choice(doc["items"])["stock"] = rnd.randrange(100)
        if n % 5 == 4:
            doc["items"].insert(rnd.randrange(len(doc["items"])), {"id": 100 + n, "name": "new"})
        if n % 9 == 8:
            doc["items"].pop(rnd.randrange(len(doc["items"])))
        if n % 13 == 12:
            doc["title"] = "".join(rnd.choice("abcdef") for _ in range(20))
        doc["version"] = n
        out.append(json.loads(json.dumps(doc)))
    return out


async def subscriber(
    url: str, delta: bool, expected: int, counted: list[int], ready: asyncio.Event
) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        subscribe: dict[str, Any] = {"channel": "docs:inventory"}
        if delta:
            subscribe["delta"] = "fossil"
        await ws.send('{"id":1,"connect":{}}\n' + json.dumps({"id": 2, "subscribe": subscribe}))
        received = 0
        while received < expected:
            message = await asyncio.wait_for(ws.recv(), 10)
            raw = message.encode() if isinstance(message, str) else message
            for line in raw.split(b"\n"):
                if line.startswith(b'{"id":2,"subscribe"'):
                    ready.set()
                if b'"pub":' in line:
                    counted.append(len(line))
                    received += 1


async def run(count: int) -> None:
    config = load_config(
        None,
        env={},
        base={
            "http_server": {"address": "127.0.0.1", "port": 0},
            "http_api": {"key": "bench"},
            "client": {"allow_anonymous_connect_without_token": True},
            "channel": {"namespaces": [NAMESPACE]},
        },
    ).config
    hub = Hub(config)
    serving = await start(hub, host="127.0.0.1", port=0)
    url = f"ws://127.0.0.1:{serving.port}/connection/websocket"
    docs = versions(count)
    plain: list[int] = []
    delta: list[int] = []
    try:
        ready = [asyncio.Event(), asyncio.Event()]
        tasks = [
            asyncio.create_task(subscriber(url, False, count, plain, ready[0])),
            asyncio.create_task(subscriber(url, True, count, delta, ready[1])),
        ]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 10)
        for doc in docs:
            await hub.publish("docs:inventory", doc, delta=True)
            await asyncio.sleep(0)  # one publication per frame: each is counted alone
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        await serving.stop()
    size = sum(len(json.dumps(d, separators=(",", ":"))) for d in docs) / count
    print(f"{count} versions of a {size:,.0f}-byte JSON document (mean), one push each:")
    print(f"  without delta: {sum(plain):>9,} bytes ({sum(plain) / count:,.0f} per push)")
    print(f"  with delta:    {sum(delta):>9,} bytes ({sum(delta) / count:,.0f} per push)")
    print(f"  ratio: {sum(plain) / sum(delta):.1f}x fewer bytes with delta")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--versions", type=int, default=200)
    asyncio.run(run(parser.parse_args().versions))


if __name__ == "__main__":
    main()
