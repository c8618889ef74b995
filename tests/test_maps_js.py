"""centrifuge-js (npm ``centrifuge`` 5.8, under Node) drives map subscriptions against hubbub.

Each test runs ``tests/js/state.mjs``, a centrifuge-js client whose map
subscriptions keep the entries the SDK's ``sync`` and ``update`` events
describe, and compares them with the server's state read through the API:
a paginated snapshot, live updates and removals, client writes, TTL expiry,
map presence, and recovery after the server disconnects the client (and a
full reload when recovery is impossible). The SDK's own pagination, stream
catch-up and live transition run unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer, ServerFactory, merge
from tests.map_fixtures import MAP_CONFIG, api_result, server_state
from tests.sdk_helpers import EventProcess
from tests.test_sdk_js import js_dependencies  # noqa: F401  (autouse: npm ci when needed)

JS_DIR = Path(__file__).parent / "js"
STATE_SCRIPT = JS_DIR / "state.mjs"
WAIT = 10.0


@contextlib.asynccontextmanager
async def js_state_client(
    server: RunningServer,
    *,
    token: str | None = None,
    label: str = "js",
    reconnect_ms: int = 300,
    protobuf: bool = False,
) -> AsyncIterator[EventProcess]:
    scenario: dict[str, Any] = {
        "url": server.ws_url,
        "name": label,
        "minReconnectDelay": reconnect_ms,
        "maxReconnectDelay": reconnect_ms,
        "protobuf": protobuf,
    }
    if token:
        scenario["token"] = token
    process = await EventProcess.start(
        "node", str(STATE_SCRIPT), json.dumps(scenario), cwd=JS_DIR, label=label
    )
    try:
        await process.next("connected", within=WAIT)
        yield process
    finally:
        await process.close({"cmd": "exit"})


async def js_entries(js: EventProcess, channel: str) -> dict[str, Any]:
    result = await js.request("state", channel=channel)
    entries: dict[str, Any] = result["entries"]
    return entries


async def converged(js: EventProcess, server: RunningServer, channel: str) -> dict[str, Any]:
    """Wait until the JS client's entries of ``channel`` equal the server's; those."""
    expected = await server_state(server, channel)
    for _ in range(100):
        if await js_entries(js, channel) == expected:
            return expected
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"{js.label} never converged on {channel}:\n"
        f"  client: {await js_entries(js, channel)}\n  server: {expected}\n{js.describe()}"
    )


@pytest.fixture
async def server(start_server: ServerFactory) -> RunningServer:
    config = merge(MAP_CONFIG, {})
    config["channel"]["namespaces"][0]["map"]["stream_size"] = 2000
    return await start_server(config)


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_snapshot_pages_then_live_updates_and_removals(
    server: RunningServer, protobuf: bool
) -> None:
    for i in range(350):
        await server.hub.maps.publish("board:a", f"k{i:03}", {"n": i})
    async with js_state_client(server, protobuf=protobuf) as js:
        await js.request("map", channel="board:a", pageSize=100)
        subscribed = await js.next("subscribed", within=WAIT)
        assert subscribed["recovered"] is False
        sync = await js.next("sync", within=WAIT)
        assert sync["count"] == 350
        assert await converged(js, server, "board:a")
        await api_result(server, "map_publish", {"channel": "board:a", "key": "k001", "data": "x"})
        update = await js.next("update", within=WAIT)
        assert (update["key"], update["data"], update["removed"]) == ("k001", "x", False)
        await api_result(server, "map_remove", {"channel": "board:a", "key": "k002"})
        update = await js.next("update", within=WAIT)
        assert (update["key"], update["removed"]) == ("k002", True)
        assert len(await converged(js, server, "board:a")) == 349


async def test_snapshot_while_the_map_changes_converges(server: RunningServer) -> None:
    for i in range(500):
        await server.hub.maps.publish("board:b", f"k{i}", 0)
    rng = random.Random(7)
    stop = asyncio.Event()

    async def writer() -> int:
        writes = 0
        while not stop.is_set():
            key = f"k{rng.randrange(600)}"
            if rng.random() < 0.2:
                await server.hub.maps.remove("board:b", key)
            else:
                await server.hub.maps.publish("board:b", key, writes)
            writes += 1
            await asyncio.sleep(0)
            if writes % 20 == 0:
                await asyncio.sleep(0.002)
        return writes

    async with js_state_client(server) as js:
        task = asyncio.create_task(writer())
        await js.request("map", channel="board:b", pageSize=100)
        await js.next("sync", within=WAIT)
        await asyncio.sleep(0.2)
        stop.set()
        writes = await task
        assert writes > 100
        await converged(js, server, "board:b")


async def test_client_publish_and_remove_reach_the_other_client(server: RunningServer) -> None:
    async with (
        js_state_client(server, token=server.token("ann"), label="ann") as ann,
        js_state_client(server, token=server.token("ben"), label="ben", protobuf=True) as ben,
    ):
        for js in (ann, ben):
            await js.request("map", channel="board:c")
            await js.next("sync", within=WAIT)
        reply = await ann.request("publish", channel="board:c", key="shape1", data={"x": 1})
        assert "error" not in reply, reply
        update = await ben.next("update", where=lambda e: e["key"] == "shape1", within=WAIT)
        assert update["data"] == {"x": 1}
        await ben.request("remove", channel="board:c", key="shape1")
        update = await ann.next(
            "update", where=lambda e: e["key"] == "shape1" and e["removed"], within=WAIT
        )
        assert await js_entries(ann, "board:c") == {} == await js_entries(ben, "board:c")


async def test_ttl_expiry_is_a_removal_for_subscribers(server: RunningServer) -> None:
    async with js_state_client(server, token=server.token("cat")) as js:
        await js.request("map", channel="cursors:a")
        await js.next("sync", within=WAIT)
        await js.request("publish", channel="cursors:a", key="", data={"x": 3})
        added = await js.next("update", within=WAIT)
        removed = await js.next("update", within=WAIT)
        assert removed["key"] == added["key"] and removed["removed"] is True


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_recovery_after_a_server_disconnect(server: RunningServer, protobuf: bool) -> None:
    for i in range(20):
        await server.hub.maps.publish("board:d", f"k{i}", i)
    token = server.token("dan")
    async with js_state_client(server, token=token, reconnect_ms=1000, protobuf=protobuf) as js:
        await js.request("map", channel="board:d")
        await js.next("sync", within=WAIT)
        await api_result(
            server, "disconnect", {"user": "dan", "disconnect": {"code": 3011, "reason": "move"}}
        )
        await js.next("connecting", within=WAIT)
        # Changes while the client is away: it must get exactly these, not a reload.
        await server.hub.maps.publish("board:d", "k1", "changed")
        await server.hub.maps.remove("board:d", "k2")
        await server.hub.maps.publish("board:d", "new", "added")
        resubscribed = await js.next("subscribed", where=lambda e: e["wasRecovering"], within=WAIT)
        assert resubscribed["recovered"] is True
        changes = [await js.next("update", within=WAIT) for _ in range(3)]
        assert [(c["key"], c["removed"]) for c in changes] == [
            ("k1", False),
            ("k2", True),
            ("new", False),
        ]
        assert js.pending("sync") == []  # recovered: no reload
        await converged(js, server, "board:d")


async def test_unrecoverable_position_reloads_the_state(server: RunningServer) -> None:
    await server.hub.maps.publish("board:e", "a", 1)
    async with js_state_client(server, token=server.token("eve"), reconnect_ms=500) as js:
        await js.request("map", channel="board:e")
        await js.next("sync", within=WAIT)
        await api_result(server, "map_clear", {"channel": "board:e"})
        await server.hub.maps.publish("board:e", "b", 2)
        sync = await js.next("sync", within=WAIT)
        assert sync["count"] == 1
        assert await converged(js, server, "board:e") == {"b": 2}


async def test_map_presence_clients_and_users(server: RunningServer) -> None:
    async with js_state_client(server, token=server.token("watcher"), label="watcher") as watcher:
        await watcher.request("map", channel="clients:board:f", kind="clients")
        await watcher.next("sync", within=WAIT)
        await watcher.request("map", channel="users:board:f", kind="users")
        await watcher.next("sync", within=WAIT)
        async with js_state_client(server, token=server.token("zoe"), label="zoe") as zoe:
            await zoe.request("map", channel="board:f")
            await zoe.next("subscribed", within=WAIT)
            joined = await watcher.next(
                "update", where=lambda e: e["data"] and e["data"].get("user") == "zoe", within=WAIT
            )
            users = await watcher.next("update", where=lambda e: e["key"] == "zoe", within=WAIT)
            assert not users["removed"]
        left = await watcher.next(
            "update", where=lambda e: e["key"] == joined["key"] and e["removed"], within=WAIT
        )
        assert left["removed"] is True
        assert await js_entries(watcher, "clients:board:f") == {}


async def test_delta_per_key(start_server: ServerFactory) -> None:
    """Fossil delta on a map: each key's update travels as a patch of that key's last
    value; the SDK rebuilds the same data (also from a snapshot and a reconnect)."""
    config = merge(MAP_CONFIG, {})
    board = config["channel"]["namespaces"][0]
    board["allowed_delta_types"] = ["fossil"]
    board["delta_publish"] = True
    server = await start_server(config)
    text = "the quick brown fox jumps over the lazy dog " * 8
    for key in ("a", "b"):
        await server.hub.maps.publish("board:delta", key, {"text": text, "n": 0})
    async with js_state_client(server, token=server.token("fay"), reconnect_ms=300) as js:
        await js.request("map", channel="board:delta", delta="fossil")
        assert (await js.next("sync", within=WAIT))["count"] == 2
        for n in range(1, 6):
            for key in ("a", "b"):
                await server.hub.maps.publish("board:delta", key, {"text": text, "n": n})
        await converged(js, server, "board:delta")
        stats = (await js.request("delta_stats", channel="board:delta"))["stats"]
        # Each key's first update after the node began keeping bases goes whole.
        assert stats["numDeltaPayloads"] == 8, stats
        assert stats["bytesReceived"] < stats["bytesDecoded"] / 2, stats
        # A reconnect: recovery from the stream, then patches again against the same bases.
        await api_result(server, "disconnect", {"user": "fay", "disconnect": {"code": 3011}})
        await server.hub.maps.publish("board:delta", "a", {"text": text, "n": 99})
        await js.next("subscribed", where=lambda e: e["wasRecovering"], within=WAIT)
        await server.hub.maps.publish("board:delta", "b", {"text": text, "n": 100})
        assert (await converged(js, server, "board:delta"))["b"]["n"] == 100
    async with js_state_client(server, label="plain") as plain:
        await plain.request("map", channel="board:delta")  # no delta asked: whole values
        await plain.next("sync", within=WAIT)
        await server.hub.maps.publish("board:delta", "a", {"text": text, "n": 7})
        update = await plain.next("update", within=WAIT)
        assert update["data"] == {"text": text, "n": 7}
