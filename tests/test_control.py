"""The control plane: server API actions, ``info`` and ``channels`` across nodes.

Two hubs in this process, each served on its own port exactly as ``hubbub
serve`` serves one, share a real redis-server; raw WebSocket clients connect
to one node and the HTTP API is called on the other. Node processes and
``serve --workers 2`` are covered in test_workers.py and test_cluster.py.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from hubbub.config.loader import load_config
from hubbub.engines.factory import engine_from_config
from hubbub.hub import control as control_module
from hubbub.hub.hub import Hub
from hubbub.hub.nodes import NodeInfo, NodeRegistry
from hubbub.server.run import Serving, start
from tests.conftest import API_KEY, DEFAULT_CONFIG, RunningServer, merge
from tests.redis_fixtures import RedisProcess, redis_server  # noqa: F401 (fixture)
from tests.wsclient import connected_client

NodeFactory = Callable[[], Awaitable[RunningServer]]


@pytest.fixture
async def redis_nodes(redis_server: RedisProcess) -> AsyncIterator[NodeFactory]:  # noqa: F811
    """Factory of nodes on one Redis with a prefix of this test alone."""
    prefix = f"ctl{uuid.uuid4().hex[:8]}"
    servings: list[Serving] = []

    async def factory() -> RunningServer:
        data = merge(
            DEFAULT_CONFIG,
            {
                "engine": {
                    "type": "redis",
                    "redis": {"address": [redis_server.address], "prefix": prefix},
                }
            },
        )
        config = load_config(None, env={}, base=data).config
        hub = Hub(config, engine=engine_from_config(config))
        serving = await start(hub, host="127.0.0.1", port=0)
        servings.append(serving)
        return RunningServer(hub=hub, stop=serving.stop, port=serving.port)

    yield factory
    for serving in servings:
        await serving.stop()


async def api(node: RunningServer, method: str, params: dict[str, Any]) -> dict[str, Any]:
    async with asyncio.timeout(10), aiohttp.ClientSession() as http:
        response = await http.post(
            f"{node.api_url}/{method}", json=params, headers={"X-API-Key": API_KEY}
        )
        async with response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
    return body


async def result(node: RunningServer, method: str, params: dict[str, Any]) -> dict[str, Any]:
    body = await api(node, method, params)
    assert "error" not in body, body
    answer: dict[str, Any] = body.get("result", {})
    return answer


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def two_nodes(redis_nodes: NodeFactory) -> tuple[RunningServer, RunningServer]:
    a, b = await redis_nodes(), await redis_nodes()

    async def both_known() -> bool:
        uids_a = {n["uid"] for n in (await result(a, "info", {}))["nodes"]}
        uids_b = {n["uid"] for n in (await result(b, "info", {}))["nodes"]}
        return uids_a == uids_b == {a.hub.node_id, b.hub.node_id}

    await eventually(both_known)
    return a, b


async def test_info_lists_every_live_node_with_its_figures(redis_nodes: NodeFactory) -> None:
    a, b = await two_nodes(redis_nodes)
    async with (
        connected_client(b.ws_url, b.token("alice"), channels=("chat:i", "news")),
        connected_client(b.ws_url, b.token("bob"), channels=("chat:i",)),
    ):

        async def b_reports_two_clients() -> bool:
            nodes = {n["uid"]: n for n in (await result(a, "info", {}))["nodes"]}
            seen = nodes[b.hub.node_id]
            return (seen["num_clients"], seen["num_users"], seen["num_subs"]) == (2, 2, 3)

        # Node B's figures reach node A with its next announcement (every 3 s).
        await eventually(b_reports_two_clients)
        nodes = (await result(a, "info", {}))["nodes"]
        assert {n["uid"] for n in nodes} == {a.hub.node_id, b.hub.node_id}
        for node in nodes:
            assert set(node) >= {
                "uid",
                "name",
                "version",
                "uptime",
                "num_clients",
                "num_users",
                "num_subs",
                "num_channels",
            }
        local = next(n for n in nodes if n["uid"] == a.hub.node_id)
        assert local["num_clients"] == 0
    # A node that shuts down says so: it leaves the others' info at once.
    await b.stop()

    async def only_a() -> bool:
        return [n["uid"] for n in (await result(a, "info", {}))["nodes"]] == [a.hub.node_id]

    await eventually(only_a, within=2.0)


async def test_channels_merges_every_node(redis_nodes: NodeFactory) -> None:
    a, b = await two_nodes(redis_nodes)
    async with (
        connected_client(a.ws_url, channels=("chat:both", "chat:a-only")),
        connected_client(b.ws_url, channels=("chat:both", "news")),
        connected_client(b.ws_url, channels=("news",)),
    ):
        for node in (a, b):
            channels = (await result(node, "channels", {}))["channels"]
            counts = {name: c["num_clients"] for name, c in channels.items()}
            assert counts == {"chat:both": 2, "chat:a-only": 1, "news": 2}
        chat = (await result(b, "channels", {"pattern": "chat:*"}))["channels"]
        assert set(chat) == {"chat:both", "chat:a-only"}


async def test_disconnect_on_one_node_closes_the_users_clients_on_every_node(
    redis_nodes: NodeFactory,
) -> None:
    a, b = await two_nodes(redis_nodes)
    async with (
        connected_client(a.ws_url, a.token("alice")) as on_a,
        connected_client(b.ws_url, b.token("alice")) as on_b,
        connected_client(b.ws_url, b.token("alice")) as kept,
        connected_client(b.ws_url, b.token("bob")) as bob,
    ):
        params = {
            "user": "alice",
            "whitelist": [kept.client_id],
            "disconnect": {"code": 4001, "reason": "bye"},
        }
        await result(a, "disconnect", params)
        assert await on_a.wait_closed() == 4001
        assert await on_b.wait_closed() == 4001
        assert on_b.close_reason == "bye"
        await kept.no_close(0.3)
        await bob.no_close(0.1)
        # One client of a user, by id, on the other node.
        await result(a, "disconnect", {"user": "alice", "client": kept.client_id})
        assert await kept.wait_closed() == 3503


async def test_unsubscribe_and_subscribe_reach_the_other_node(redis_nodes: NodeFactory) -> None:
    a, b = await two_nodes(redis_nodes)
    async with connected_client(b.ws_url, b.token("alice"), channels=("chat:x",)) as client:
        await result(a, "unsubscribe", {"user": "alice", "channel": "chat:x"})
        push = await client.push("chat:x", "unsubscribe")
        assert push["code"] == 2000
        assert "chat:x" not in b.hub.sessions[client.client_id].subscriptions

        await result(a, "subscribe", {"user": "alice", "channel": "chat:y", "data": {"why": 1}})
        push = await client.push("chat:y", "subscribe")
        assert push.get("data") == {"why": 1}
        # Subscribed for real on node B: a publication through node A arrives.
        await result(a, "publish", {"channel": "chat:y", "data": {"n": 1}})
        pub = await client.push("chat:y", "pub")
        assert pub["data"] == {"n": 1}


async def test_refresh_reaches_the_other_node(redis_nodes: NodeFactory) -> None:
    a, b = await two_nodes(redis_nodes)
    async with (
        connected_client(b.ws_url, b.token("alice", ttl=60)) as refreshed,
        connected_client(b.ws_url, b.token("bob", ttl=60)) as expired,
    ):
        expire_at = int(time.time()) + 3600
        await result(a, "refresh", {"user": "alice", "expire_at": expire_at})
        push = await refreshed.push(None, "refresh")
        assert push["expires"] is True and push["ttl"] > 3000
        assert b.hub.sessions[refreshed.client_id].expire_at == expire_at
        await result(a, "refresh", {"user": "bob", "expired": True})
        assert await expired.wait_closed() == 3005


async def test_a_silent_node_makes_channels_fail_not_lie(
    redis_nodes: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await redis_nodes()
    monkeypatch.setattr(control_module, "SURVEY_TIMEOUT", 0.3)
    # A node that announced itself and then stopped answering (killed, stopped).
    a.hub.control.registry.update(NodeInfo(uid="gone", name="gone", version="0", num_clients=1))
    body = await api(a, "channels", {})
    assert body["error"]["code"] == 100, body
    a.hub.control.registry.remove("gone")
    assert "result" in await api(a, "channels", {})


async def test_memory_engine_is_one_node_as_before(server: RunningServer) -> None:
    async with connected_client(server.ws_url, server.token("alice"), channels=("chat:m",)) as c:
        nodes = (await result(server, "info", {}))["nodes"]
        assert [n["uid"] for n in nodes] == [server.hub.node_id]
        assert nodes[0]["num_clients"] == 1
        await result(server, "unsubscribe", {"user": "alice", "channel": "chat:m"})
        # Applied before the API answered, as before the control plane existed.
        assert "chat:m" not in server.hub.sessions[c.client_id].subscriptions
        await result(server, "disconnect", {"user": "alice"})
        assert await c.wait_closed() == 3503


def test_registry_forgets_a_node_that_stops_announcing() -> None:
    now = [100.0]
    registry = NodeRegistry(ttl=7.0, clock=lambda: now[0])
    assert registry.update(NodeInfo(uid="n1", name="n1", version="v"))
    assert not registry.update(NodeInfo(uid="n1", name="n1", version="v", num_clients=3))
    assert [n.num_clients for n in registry.live()] == [3]
    now[0] += 6.9
    assert registry.uids() == {"n1"}
    now[0] += 0.2
    assert registry.live() == []
    assert registry.update(NodeInfo(uid="n1", name="n1", version="v"))  # back: new again


async def test_traces_are_followed_on_other_nodes_under_a_lease(
    redis_nodes: NodeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubbub.hub import tracing

    monkeypatch.setattr(tracing, "ANNOUNCE_INTERVAL", 0.2)  # renewals
    monkeypatch.setattr(tracing, "NODE_TTL", 0.8)  # the lease
    a, b = await two_nodes(redis_nodes)
    assert b.hub.tracer.statistics() == {"watching": 0, "following": 0, "observing": False}

    async def b_follows(count: int) -> bool:
        return b.hub.tracer.statistics()["following"] == count

    watch = await a.hub.tracer.watch(user="erin")
    await eventually(lambda: b_follows(1))
    assert b.hub.tracer.statistics()["observing"] is True
    async with connected_client(b.ws_url, b.token("erin")) as erin:
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while not any(e["kind"] == "connect" for e in seen):
                seen.append(json.loads(await watch.queue.get() or b"{}"))
        [connect] = [e for e in seen if e["kind"] == "connect"]
        assert (connect["client"], connect["node"]) == (erin.client_id, b.hub.node_id)
    await asyncio.sleep(1.5)  # past the lease: renewed meanwhile
    assert await b_follows(1)
    await a.hub.tracer.unwatch(watch)  # withdrawn: B stops at once
    await eventually(lambda: b_follows(0), within=2.0)
    assert b.hub.tracer.statistics()["observing"] is False

    # A node that dies without a word: its traces lapse on the others.
    await a.hub.tracer.watch(user="frank")
    await eventually(lambda: b_follows(1))
    renewer = a.hub.tracer._renewer
    assert renewer is not None
    renewer.cancel()  # no more renewals, as if node A were killed
    await eventually(lambda: b_follows(0), within=3.0)
    assert b.hub.tracer.statistics()["observing"] is False
