"""What only the Redis engine does: several nodes, real expiry, lost data, shards, reconnects.

Every test runs real redis-server processes (tests/redis_fixtures.py); waits
are bounded by ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from hubbub.engines.base import EngineUnavailable, EpochMismatch, HistoryOptions, HistoryQuery
from hubbub.engines.redis import RedisEngine, jump_hash, shard_index
from hubbub.protocol.messages import StreamPosition
from tests.engine_fixtures import HISTORY, Events, info, pub
from tests.redis_fixtures import (  # noqa: F401 (fixtures)
    RedisProcess,
    own_redis,
    redis_server,
    running_redis,
)

pytestmark = pytest.mark.timeout(60)


async def started(addresses: list[str], events: Events, prefix: str) -> RedisEngine:
    engine = RedisEngine(addresses, prefix=prefix, connect_timeout=2.0)
    await engine.start(events)
    return engine


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def two_nodes(
    redis_server: RedisProcess,  # noqa: F811
    prefix: str,
) -> AsyncIterator[tuple[RedisEngine, Events, RedisEngine, Events]]:
    """Two engines (two nodes) on one Redis."""
    events_a, events_b = Events(), Events()
    a = await started([redis_server.address], events_a, prefix)
    b = await started([redis_server.address], events_b, prefix)
    yield a, events_a, b, events_b
    await a.close()
    await b.close()


async def wait_until(predicate: Callable[[], object], events: Events, within: float = 5.0) -> None:
    """Wait (at most ``within`` s) until ``predicate()`` holds."""
    async with asyncio.timeout(within):
        while not predicate():
            events.arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await events.arrived.wait()


async def test_offsets_gap_free_under_concurrent_publishes_from_two_nodes(
    two_nodes: tuple[RedisEngine, Events, RedisEngine, Events],
) -> None:
    a, events_a, b, events_b = two_nodes
    await a.subscribe("c")
    await b.subscribe("c")
    results = await asyncio.gather(
        *(engine.publish("c", pub(n), HISTORY) for n in range(200) for engine in (a, b))
    )
    offsets = sorted(r.position.offset for r in results)
    assert offsets == list(range(1, 401))
    assert len({r.position.epoch for r in results}) == 1
    # Both nodes receive all 400, in offset order.
    await wait_until(lambda: len(events_a.offsets("c")) == 400, events_a)
    await wait_until(lambda: len(events_b.offsets("c")) == 400, events_b)
    assert events_a.offsets("c") == list(range(1, 401))
    assert events_b.offsets("c") == list(range(1, 401))
    page_a = await a.history("c", HistoryQuery(limit=-1), HISTORY)
    page_b = await b.history("c", HistoryQuery(limit=-1), HISTORY)
    assert [p.offset for p in page_a.publications] == list(range(301, 401))
    assert page_a == page_b
    assert page_a.position.offset == 400


async def test_join_leave_reach_the_other_node(
    two_nodes: tuple[RedisEngine, Events, RedisEngine, Events],
) -> None:
    a, _, b, events_b = two_nodes
    await b.subscribe("c")
    await a.publish_join("c", info("u", "c1"))
    await a.publish_leave("c", info("u", "c1"))
    await wait_until(lambda: events_b.joins and events_b.leaves, events_b)
    assert events_b.joins == [("c", info("u", "c1"))]
    assert events_b.leaves == [("c", info("u", "c1"))]
    await a.add_presence("c", "c1", info("u", "c1"), 60)
    assert await b.presence("c") == {"c1": info("u", "c1")}


async def test_only_subscribed_channels_are_delivered(
    two_nodes: tuple[RedisEngine, Events, RedisEngine, Events],
) -> None:
    a, _, b, events_b = two_nodes
    await b.subscribe("c")
    await a.publish("other", pub(1), HISTORY)
    await b.unsubscribe("c")
    await a.publish("c", pub(2), HISTORY)
    await b.subscribe("x")
    await a.publish("x", pub(3), HISTORY)
    await wait_until(lambda: events_b.offsets("x") == [1], events_b)
    assert [c for c, _, _ in events_b.publications] == ["x"]


async def test_history_ttl_and_meta_ttl_expire_in_real_time(
    redis_server: RedisProcess,  # noqa: F811
    prefix: str,
) -> None:
    events = Events()
    engine = await started([redis_server.address], events, prefix)
    try:
        options = HistoryOptions(size=10, ttl=0.3, meta_ttl=1.0)
        first = (await engine.publish("a", pub(1), options)).position
        await engine.publish("a", pub(2), options)
        page = await engine.history("a", HistoryQuery(limit=-1), options)
        assert [p.offset for p in page.publications] == [1, 2]
        await asyncio.sleep(0.5)
        page = await engine.history("a", HistoryQuery(limit=-1), options)
        assert page.publications == [] and page.position == StreamPosition(2, first.epoch)
        assert (await engine.publish("a", pub(3), options)).position.offset == 3
        await asyncio.sleep(1.2)
        page = await engine.history("a", HistoryQuery(limit=0), options)
        assert page.position.offset == 0 and page.position.epoch != first.epoch
        with pytest.raises(EpochMismatch):
            await engine.history("a", HistoryQuery(StreamPosition(3, first.epoch), -1), options)
    finally:
        await engine.close()


async def test_flushall_changes_the_epoch(
    redis_server: RedisProcess,  # noqa: F811
    prefix: str,
) -> None:
    events = Events()
    engine = await started([redis_server.address], events, prefix)
    try:
        before = (await engine.publish("a", pub(1), HISTORY)).position
        client = aioredis.Redis.from_url(redis_server.url)
        # Only this test's keys: other tests share the server.
        keys = [k async for k in client.scan_iter(f"{prefix}.*")]
        await client.delete(*keys)
        await client.aclose()
        after = (await engine.publish("a", pub(2), HISTORY)).position
        assert after.offset == 1 and after.epoch != before.epoch
        with pytest.raises(EpochMismatch):
            await engine.history("a", HistoryQuery(before, -1), HISTORY)
    finally:
        await engine.close()


async def test_restart_reports_broker_lost_then_resubscribes(
    own_redis: RedisProcess,  # noqa: F811
    prefix: str,
) -> None:
    events, publisher_events = Events(), Events()
    engine = await started([own_redis.address], events, prefix)
    publisher = await started([own_redis.address], publisher_events, prefix)
    try:
        await engine.subscribe("a")
        before = (await publisher.publish("a", pub(1), HISTORY)).position
        own_redis.restart()  # SIGKILL: every key and subscription is gone
        await wait_until(lambda: events.lost == ["a"], events)
        # The pub/sub connection comes back on its own and "a" is subscribed again.
        async with asyncio.timeout(10):
            while True:
                try:
                    result = await publisher.publish("a", pub(2), HISTORY)
                except EngineUnavailable:  # redis-py errors stop at the engine
                    await asyncio.sleep(0.1)
                    continue
                break
        assert result.position.offset == 1 and result.position.epoch != before.epoch
        await engine.subscribe("a")  # what the hub does when its clients resubscribe
        await publisher.publish("a", pub(3), HISTORY)
        await wait_until(lambda: 2 in events.offsets("a"), events)
    finally:
        await engine.close()
        await publisher.close()


def test_jump_hash_is_deterministic_and_balanced() -> None:
    assert [jump_hash(k, 1) for k in range(10)] == [0] * 10
    assert jump_hash(123456789, 10) == jump_hash(123456789, 10)
    spread = [shard_index(f"channel-{i}", 3) for i in range(3000)]
    assert set(spread) == {0, 1, 2}
    assert min(spread.count(i) for i in range(3)) > 800
    # Adding a shard moves only about 1/4 of the channels.
    moved = sum(1 for i in range(3000) if shard_index(f"channel-{i}", 4) != spread[i])
    assert 500 < moved < 1000


async def test_sharding_over_two_redis_servers(prefix: str) -> None:
    with running_redis() as one, running_redis() as two:
        addresses = [one.address, two.address]
        events_a, events_b = Events(), Events()
        a = await started(addresses, events_a, prefix)
        b = await started(list(addresses), events_b, prefix)
        try:
            channels = [f"ch{i}" for i in range(20)]
            assert {a.shard_url(c) for c in channels} == {one.url, two.url}
            assert all(a.shard_url(c) == b.shard_url(c) for c in channels)
            for channel in channels:
                await b.subscribe(channel)
            for channel in channels:
                await a.publish(channel, pub(1), HISTORY)
                await a.publish(channel, pub(2), HISTORY)
            await wait_until(lambda: len(events_b.publications) == 40, events_b)
            for channel in channels:
                assert events_b.offsets(channel) == [1, 2]
                page = await b.history(channel, HistoryQuery(limit=-1), HISTORY)
                assert [p.offset for p in page.publications] == [1, 2]
            # Each channel's keys live on its own shard only.
            for server in (one, two):
                client = aioredis.Redis.from_url(server.url)
                metas = {k.decode() async for k in client.scan_iter(f"{prefix}.meta.*")}
                await client.aclose()
                expected = {f"{prefix}.meta.{c}" for c in channels if a.shard_url(c) == server.url}
                assert metas == expected
        finally:
            await a.close()
            await b.close()
