"""Consumers (Centrifugo v6 ``consumers[]``): API commands read from Redis streams and
JetStream by real hubbub processes, applied through the API, seen by real clients.

Each test adds messages in Centrifugo's format with a plain client (XADD, a
JetStream publish) and checks what clients and the channel's history got:
exactly once across two nodes, at least once across a node's restart, bad
messages acknowledged and logged once, the store's restart logged once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
import redis.asyncio as aioredis

from hubbub.config.loader import load_config
from hubbub.errors import ConfigError
from tests.cluster_fixtures import Node
from tests.nats_fixtures import NatsProcess, jetstream_nats  # noqa: F401 (fixture)
from tests.redis_fixtures import RedisProcess, own_redis, running_redis  # noqa: F401
from tests.wsclient import WSClient, connected_client

CHANNEL = "chat:orders"  # the chat namespace keeps history (tests/conftest.py)


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    """Poll state kept by other processes (Redis, NATS, a node) until ``check`` holds."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 (no event to wait on in another process)
            await asyncio.sleep(0.05)


def redis_consumer(address: str, **extra: Any) -> dict[str, Any]:
    section = {
        "address": address,
        "streams": ["commands"],
        "consumer_group": "hubbub",
        "visibility_timeout": "2s",
        **extra,
    }
    return {"consumers": [{"name": "rs", "enabled": True, "type": "redis_stream",
                           "redis_stream": section}]}  # fmt: skip


def nats_consumer(url: str) -> dict[str, Any]:
    section = {
        "url": url,
        "stream_name": "COMMANDS",
        "subjects": ["commands.>"],
        "durable_consumer_name": "hubbub",
        "method_header": "centrifugo-method",
    }
    return {"consumers": [{"name": "js", "enabled": True, "type": "nats_jetstream",
                           "nats_jetstream": section}]}  # fmt: skip


def publish(n: int) -> bytes:
    return json.dumps({"channel": CHANNEL, "data": {"n": n}}).encode()


async def history_numbers(node: Node) -> list[int]:
    result = await node.api("history", {"channel": CHANNEL, "limit": -1})
    return [p["data"]["n"] for p in result.get("publications", [])]


async def received_numbers(client: WSClient, count: int) -> list[int]:
    numbers = []
    for _ in range(count):
        push = await client.push(CHANNEL, "pub", within=20.0)
        numbers.append(push["data"]["n"])
    return numbers


def lines(nodes: list[Node], text: str) -> int:
    return sum(line.count(text) for node in nodes for line in node.log().splitlines())


async def group_consumers(r: aioredis.Redis) -> int:
    """Connections blocked reading the group: one per node reading (Redis lists a
    group's consumer only once it was given an entry)."""
    try:
        clients = await r.client_list()
    except aioredis.ConnectionError:  # the store restarted: the next call reconnects
        return 0
    return sum(1 for c in clients if c.get("cmd") == "xreadgroup")


# --- configuration ----------------------------------------------------------------------


def test_an_enabled_kafka_consumer_loads_with_one_warning() -> None:
    loaded = load_config(
        None,
        env={},
        base={
            "consumers": [
                {
                    "name": "k",
                    "enabled": True,
                    "type": "kafka",
                    "kafka": {"brokers": ["127.0.0.1:9092"]},
                }
            ]
        },
    )
    mine = [w for w in loaded.warnings if "consumers[0]" in w]
    assert mine == [
        "consumers[0]: the kafka consumer is not implemented in hubbub: its commands are "
        "not applied (send them to the HTTP API, or use a redis_stream or nats_jetstream "
        "consumer)"
    ]


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"address": "127.0.0.1:6379", "consumer_group": "g"}, "streams"),
        ({"address": "127.0.0.1:6379", "streams": ["s"]}, "consumer_group"),
        ({"streams": ["s"], "consumer_group": "g"}, "address"),
    ],
)
def test_a_redis_stream_consumer_missing_what_centrifugo_requires_is_refused(
    section: dict[str, Any], key: str
) -> None:
    base = {"consumers": [{"enabled": True, "type": "redis_stream", "redis_stream": section}]}
    with pytest.raises(ConfigError) as info:
        load_config(None, env={}, base=base)
    assert info.value.key == f"consumers[0].redis_stream.{key}"


def test_a_nats_jetstream_consumer_needs_a_stream_and_a_durable_name() -> None:
    base = {"consumers": [{"enabled": True, "type": "nats_jetstream",
                           "nats_jetstream": {"stream_name": "S"}}]}  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_config(None, env={}, base=base)
    assert info.value.key == "consumers[0].nats_jetstream.durable_consumer_name"


# --- Redis streams ---------------------------------------------------------------------


async def test_redis_stream_commands_reach_clients_exactly_once_across_two_nodes(
    tmp_path: Path,
    own_redis: RedisProcess,  # noqa: F811
) -> None:
    extra = redis_consumer(own_redis.address)
    nodes = [Node(tmp_path, f"n{i}", [own_redis.address], "rs2", config=extra) for i in (1, 2)]
    r = aioredis.Redis.from_url(own_redis.url)
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        await eventually(lambda: _at_least(group_consumers(r), 2))  # both nodes read
        async with connected_client(nodes[0].ws_url, channels=(CHANNEL,)) as client:
            for n in range(10):  # the method in its own value, the request in payload
                await r.xadd("commands", {"method": "publish", "payload": publish(n)})
            for n in range(10, 20):  # no method value: {"method", "payload"} in payload
                envelope = {"method": "publish", "payload": json.loads(publish(n))}
                await r.xadd("commands", {"payload": json.dumps(envelope)})
            # Bad ones: acknowledged and logged once each, never applied.
            await r.xadd("commands", {"method": "publish", "payload": b"not json"})
            await r.xadd("commands", {"method": "no_such_method", "payload": b"{}"})
            await r.xadd("commands", {"method": "publish"})
            got = await received_numbers(client, 20)
        assert sorted(got) == list(range(20))
        await eventually(lambda: _pending_is(r, "commands", 0))
        assert sorted(await history_numbers(nodes[1])) == list(range(20))  # once each
        await eventually(lambda: _true(lines(nodes, "skipped entry") == 3))
        await asyncio.sleep(3)  # past visibility_timeout: nothing comes back
        assert lines(nodes, "skipped entry") == 3
        assert sorted(await history_numbers(nodes[0])) == list(range(20))
    finally:
        for node in nodes:
            node.stop()
        await r.aclose()


async def test_redis_stream_entries_added_while_the_node_is_down_are_applied_after(
    tmp_path: Path,
    own_redis: RedisProcess,  # noqa: F811
) -> None:
    node = Node(
        tmp_path, "n1", [own_redis.address], "rsr", config=redis_consumer(own_redis.address)
    )
    r = aioredis.Redis.from_url(own_redis.url)
    try:
        await node.start()
        await eventually(lambda: _at_least(group_consumers(r), 1))
        await r.xadd("commands", {"method": "publish", "payload": publish(1)})
        await eventually(lambda: _history_is(node, [1]))
        node.stop()
        await r.xadd("commands", {"method": "publish", "payload": publish(2)})
        await node.start()
        await eventually(lambda: _history_is(node, [1, 2]))
        await eventually(lambda: _pending_is(r, "commands", 0))
    finally:
        node.stop()
        await r.aclose()


async def test_redis_stream_store_restart_is_one_log_line_and_reading_resumes(
    tmp_path: Path,
    own_redis: RedisProcess,  # noqa: F811
) -> None:
    with running_redis() as store:  # the consumer's Redis, apart from the engine's
        node = Node(
            tmp_path, "n1", [own_redis.address], "rss", config=redis_consumer(store.address)
        )
        r = aioredis.Redis.from_url(store.url)
        try:
            await node.start()
            await eventually(lambda: _at_least(group_consumers(r), 1))
            await r.xadd("commands", {"method": "publish", "payload": publish(1)})
            await eventually(lambda: _history_is(node, [1]))
            store.stop()
            await asyncio.sleep(2)  # several failed attempts while it is away
            await node.api("publish", json.loads(publish(0)))  # the node serves meanwhile
            store.start()  # back empty: the group is created again
            await eventually(lambda: _at_least(group_consumers(r), 1))
            await r.xadd("commands", {"method": "publish", "payload": publish(2)})
            await eventually(lambda: _history_is(node, [0, 1, 2]))
            assert lines([node], "Redis unavailable") == 1, node.log()
            assert "Traceback" not in node.log()
        finally:
            node.stop()
            await r.aclose()


async def test_redis_stream_entry_a_dead_node_took_is_taken_over_and_publication_data_mode(
    tmp_path: Path,
    own_redis: RedisProcess,  # noqa: F811
) -> None:
    mode = {"publication_data_mode": {"enabled": True}}
    config = redis_consumer(own_redis.address, **mode)
    node = Node(tmp_path, "n1", [own_redis.address], "rsd", config=config)
    r = aioredis.Redis.from_url(own_redis.url)
    try:
        await node.start()
        await eventually(lambda: _at_least(group_consumers(r), 1))
        node.stop()  # so that the "dead node" below surely takes the entries
        # A node that read two entries and died before acknowledging them.
        await r.xadd("commands", {"payload": b'{"n": 1}', "centrifugo-channels": CHANNEL})
        await r.xadd(
            "commands",
            {
                "payload": b'{"n": 2}',
                "centrifugo-channels": f"{CHANNEL},chat:other",  # two: a broadcast
                "centrifugo-tag-kind": "order",
            },
        )
        taken = await r.xreadgroup("hubbub", "dead-node", {"commands": ">"}, count=2)
        assert len(taken[0][1]) == 2
        await node.start()
        await r.xadd("commands", {"payload": b"{}"})  # no channels: skipped
        # Taken over once idle for visibility_timeout (2s), checked every 5s.
        await eventually(lambda: _history_is(node, [1, 2]), within=30.0)
        await eventually(lambda: _pending_is(r, "commands", 0))
        other = await node.api("history", {"channel": "chat:other", "limit": -1})
        assert [p["data"]["n"] for p in other["publications"]] == [2]
        assert other["publications"][0]["tags"] == {"kind": "order"}
        await eventually(lambda: _true(lines([node], "skipped entry") == 1))
    finally:
        node.stop()
        await r.aclose()


# --- NATS JetStream ---------------------------------------------------------------------


async def _stream(url: str) -> Any:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="COMMANDS", subjects=["commands.>"])
    return nc


async def test_jetstream_commands_reach_clients_exactly_once_across_two_nodes(
    tmp_path: Path,
    own_redis: RedisProcess,  # noqa: F811
    jetstream_nats: NatsProcess,  # noqa: F811
) -> None:
    nc = await _stream(jetstream_nats.url)
    js = nc.jetstream()
    extra = nats_consumer(jetstream_nats.url)
    nodes = [Node(tmp_path, f"n{i}", [own_redis.address], "js2", config=extra) for i in (1, 2)]
    try:
        await asyncio.gather(*(node.start() for node in nodes))

        async def both_fetch() -> bool:
            try:
                info = await js.consumer_info("COMMANDS", "hubbub")
            except nats.js.errors.NotFoundError:
                return False
            return (info.num_waiting or 0) >= 2

        await eventually(both_fetch)
        async with connected_client(nodes[0].ws_url, channels=(CHANNEL,)) as client:
            for n in range(10):  # the method in the header, the request in the body
                await js.publish("commands.a", publish(n), headers={"centrifugo-method": "publish"})
            for n in range(10, 20):  # no header: {"method", "payload"} in the body
                body = {"method": "publish", "payload": json.loads(publish(n))}
                await js.publish("commands.b", json.dumps(body).encode())
            await js.publish("commands.a", b"not json")
            await js.publish("commands.a", b"{}", headers={"centrifugo-method": "nope"})
            got = await received_numbers(client, 20)
        assert sorted(got) == list(range(20))

        async def all_acked() -> bool:
            info = await js.consumer_info("COMMANDS", "hubbub")
            return info.num_ack_pending == 0 and info.num_pending == 0

        await eventually(all_acked)
        assert sorted(await history_numbers(nodes[1])) == list(range(20))
        await eventually(lambda: _true(lines(nodes, "skipped message") == 2))
        assert "Traceback" not in nodes[0].log() + nodes[1].log()
    finally:
        for node in nodes:
            node.stop()
        await nc.close()


async def test_jetstream_survives_a_node_restart_and_a_nats_restart(
    tmp_path: Path,
    own_redis: RedisProcess,  # noqa: F811
    jetstream_nats: NatsProcess,  # noqa: F811
) -> None:
    nc = await _stream(jetstream_nats.url)
    await nc.close()
    node = Node(
        tmp_path, "n1", [own_redis.address], "jsr", config=nats_consumer(jetstream_nats.url)
    )

    async def send(n: int) -> None:
        client = await nats.connect(jetstream_nats.url)
        try:
            await client.jetstream().publish(
                "commands.x", publish(n), headers={"centrifugo-method": "publish"}
            )
        finally:
            await client.close()

    async def bound() -> bool:
        client = await nats.connect(jetstream_nats.url)
        try:
            info = await client.jetstream().consumer_info("COMMANDS", "hubbub")
            return (info.num_waiting or 0) >= 1
        except nats.js.errors.NotFoundError:
            return False
        finally:
            await client.close()

    try:
        await node.start()
        await eventually(bound)
        await send(1)
        await eventually(lambda: _history_is(node, [1]))
        node.stop()
        await send(2)  # while the node is down: kept by the durable consumer
        await node.start()
        await eventually(lambda: _history_is(node, [1, 2]))
        jetstream_nats.restart()  # the same store: the stream and the consumer remain
        await eventually(bound)
        await send(3)
        await eventually(lambda: _history_is(node, [1, 2, 3]))
        assert lines([node], "NATS JetStream unavailable") == 1, node.log()
        assert "Traceback" not in node.log()
    finally:
        node.stop()


async def test_jetstream_away_at_start_is_one_log_line_and_the_node_serves(
    tmp_path: Path,
    own_redis: RedisProcess,  # noqa: F811
    jetstream_nats: NatsProcess,  # noqa: F811
) -> None:
    jetstream_nats.stop()
    node = Node(
        tmp_path, "n1", [own_redis.address], "jsa", config=nats_consumer(jetstream_nats.url)
    )
    try:
        await node.start()  # NATS away: the node starts and serves all the same
        await asyncio.sleep(2)  # several attempts
        await node.api("publish", json.loads(publish(0)))
        jetstream_nats.start()
        nc = await _stream(jetstream_nats.url)
        try:
            js = nc.jetstream()

            async def bound() -> bool:
                try:
                    info = await js.consumer_info("COMMANDS", "hubbub")
                except nats.js.errors.NotFoundError:
                    return False
                return (info.num_waiting or 0) >= 1

            await eventually(bound)
            await js.publish("commands.x", publish(1), headers={"centrifugo-method": "publish"})
            await eventually(lambda: _history_is(node, [0, 1]))
        finally:
            await nc.close()
        assert lines([node], "NATS JetStream unavailable") == 1, node.log()
        assert "Traceback" not in node.log()
    finally:
        node.stop()


# --- helpers -----------------------------------------------------------------------------


async def _true(value: bool) -> bool:
    return value


async def _at_least(count: Awaitable[int], least: int) -> bool:
    return await count >= least


async def _pending_is(r: aioredis.Redis, stream: str, count: int) -> bool:
    info = await r.xpending(stream, "hubbub")
    return int(info["pending"]) == count


async def _history_is(node: Node, numbers: list[int]) -> bool:
    return sorted(await history_numbers(node)) == numbers
