"""Map channels on Redis across real hubbub processes (``map_broker.type = "redis"``).

Two ``hubbub serve`` nodes share a redis-server, nginx in front of them, a
centrifuge-js client holding a map subscription through nginx. Writes go in
through the other node's API; the node holding the client is killed with
SIGKILL while writes continue; the SDK reconnects through nginx to the other
node and recovers from the change stream in Redis: ``recovered`` with no
reload, and its entries end equal to the state in Redis.
"""

from __future__ import annotations

import asyncio
import json
import random
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster_fixtures import Nginx, Node
from tests.conftest import merge
from tests.map_fixtures import MAP_CONFIG
from tests.redis_fixtures import RedisProcess, own_redis  # noqa: F401 (fixture)
from tests.sdk_helpers import EventProcess
from tests.test_maps_js import JS_DIR, STATE_SCRIPT, WAIT, js_entries
from tests.test_sdk_js import js_dependencies  # noqa: F401

pytestmark = pytest.mark.timeout(120)


def redis_maps(redis: RedisProcess, prefix: str) -> dict[str, Any]:
    config = merge(MAP_CONFIG, {"map_broker": {"type": "redis"}})
    # Generous timeouts: the suite runs on a loaded 2-core machine.
    config["map_broker"]["redis"] = {
        "address": [redis.address],
        "prefix": prefix,
        "connect_timeout": "5s",
        "io_timeout": "10s",
    }
    config["channel"]["namespaces"][0]["map"]["stream_size"] = 5000
    return config


@pytest.fixture
async def pair(own_redis: RedisProcess) -> AsyncIterator[tuple[Node, Node, Nginx]]:  # noqa: F811
    prefix = f"m{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="hubbub-maps-") as tmp:
        directory = Path(tmp)
        nodes = [Node(directory, name, [own_redis.address], prefix) for name in ("a", "b")]
        for node in nodes:
            config = merge(json.loads(node.config_path.read_text()), redis_maps(own_redis, prefix))
            node.config_path.write_text(json.dumps(config))
        nginx = Nginx(directory, [node.port for node in nodes])
        try:
            for node in nodes:
                await node.start()
            await nginx.start()
            yield nodes[0], nodes[1], nginx
        finally:
            nginx.stop()
            for node in nodes:
                node.stop()
                print(f"--- node {node.name} log ---\n{node.log()}")  # shown if the test fails


async def js_client(url: str, label: str) -> EventProcess:
    scenario = {"url": url, "name": label, "minReconnectDelay": 200, "maxReconnectDelay": 400}
    process = await EventProcess.start(
        "node", str(STATE_SCRIPT), json.dumps(scenario), cwd=JS_DIR, label=label
    )
    await process.next("connected", within=WAIT)
    return process


async def holder(nodes: tuple[Node, Node], channel: str) -> tuple[Node, Node]:
    """(the node holding the channel's subscriber, the other one)."""
    for _ in range(50):
        for node, other in (nodes, nodes[::-1]):
            found = await node.api("channels", {"pattern": channel})
            if channel in found["channels"]:
                return node, other
        await asyncio.sleep(0.05)
    raise AssertionError(f"no node holds {channel}")


async def test_recovery_from_redis_after_a_node_kill(pair: tuple[Node, Node, Nginx]) -> None:
    a, b, nginx = pair
    channel = "board:k"
    for i in range(30):
        await b.api("map_publish", {"channel": channel, "key": f"k{i}", "data": {"n": i}})
    js = await js_client(nginx.ws_url, "js")
    try:
        await js.request("map", channel=channel)
        sync = await js.next("sync", within=WAIT)
        assert sync["count"] == 30
        victim, survivor = await holder((a, b), channel)
        rng = random.Random(3)

        async def write(count: int) -> None:
            for i in range(count):
                key = f"k{rng.randrange(40)}"
                if rng.random() < 0.2:
                    await survivor.api("map_remove", {"channel": channel, "key": key})
                else:
                    await survivor.api("map_publish", {"channel": channel, "key": key, "data": i})
                await asyncio.sleep(0.01)

        writer = asyncio.create_task(write(150))
        await asyncio.sleep(0.3)
        victim.kill()
        await writer
        resubscribed = await js.next("subscribed", where=lambda e: e["wasRecovering"], within=20)
        assert resubscribed["recovered"] is True
        assert js.pending("sync") == []  # caught up from the stream in Redis: no reload
        expected = await survivor.api("map_read_state", {"channel": channel, "limit": 1000})
        entries = {e["key"]: e["data"] for e in expected["entries"]}
        for _ in range(100):
            if await js_entries(js, channel) == entries:
                break
            await asyncio.sleep(0.05)
        assert await js_entries(js, channel) == entries
    finally:
        await js.close({"cmd": "exit"})


async def test_ttl_presence_and_writes_across_nodes(pair: tuple[Node, Node, Nginx]) -> None:
    """A key's TTL is swept in Redis and reaches subscribers on both nodes; map
    presence written by one node is seen on the other."""
    a, b, _ = pair
    on_a = await js_client(a.ws_url, "on-a")
    on_b = await js_client(b.ws_url, "on-b")
    try:
        for js in (on_a, on_b):
            await js.request("map", channel="clients:board:t", kind="clients")
            await js.next("sync", within=WAIT)
        await on_a.request("map", channel="cursors:t")
        await on_a.next("sync", within=WAIT)
        await on_b.request("map", channel="board:t")  # map presence in clients:board:t
        joined = await on_a.next("update", where=lambda e: e["channel"] == "clients:board:t")
        assert not joined["removed"]
        await b.api("map_publish", {"channel": "cursors:t", "key": "c1", "data": {"x": 1}})
        added = await on_a.next("update", where=lambda e: e["channel"] == "cursors:t")
        assert added["key"] == "c1"
        expired = await on_a.next(
            "update", where=lambda e: e["channel"] == "cursors:t", within=WAIT
        )
        assert (expired["key"], expired["removed"]) == ("c1", True)
        await on_b.request("unsubscribe", channel="board:t")
        left = await on_a.next(
            "update",
            where=lambda e: e["channel"] == "clients:board:t" and e["removed"],
            within=WAIT,
        )
        assert left["key"] == joined["key"]
        assert await js_entries(on_a, "clients:board:t") == {}
    finally:
        await on_a.close({"cmd": "exit"})
        await on_b.close({"cmd": "exit"})
