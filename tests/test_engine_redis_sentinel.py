"""The Redis engine through Redis Sentinel (``engine.redis.sentinel_address``).

The setups are real (tests/redis_sentinel_fixtures.py): a master, its replica
and a sentinel, started by the tests; the engine knows only the sentinel and
the master's name. The engine conformance suite runs on such a setup too
(tests/test_engine_conformance.py and its siblings). What is checked here: the
engine writes to the master the sentinel names; a master killed during traffic is an outage
the engine rides out (publishers told, ``EngineUnavailable``; subscribers told,
``handle_broker_lost``), after which everything goes to the promoted replica,
in a new epoch; a master demoted while alive (``SENTINEL FAILOVER``) moves the
engine too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from hubbub.engines.base import EngineUnavailable, EpochMismatch, HistoryOptions, HistoryQuery
from hubbub.engines.redis import RedisEngine
from hubbub.protocol.messages import StreamPosition
from tests.engine_fixtures import Events, pub
from tests.engine_fixtures import numbers as numbers_of
from tests.redis_cluster_fixtures import redis_cli
from tests.redis_sentinel_fixtures import (  # noqa: F401 (fixtures)
    SentinelSetup,
    own_redis_sentinel,
    redis_sentinel,
)
from tests.test_engine_redis import wait_until

pytestmark = pytest.mark.timeout(120)

HISTORY = HistoryOptions(size=10_000, ttl=300.0, meta_ttl=3600.0)


@pytest.fixture
def prefix() -> str:
    return f"s{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def started(setup: SentinelSetup, events: Events, prefix: str) -> AsyncIterator[RedisEngine]:
    engine = RedisEngine(
        sentinels=[setup.spec],
        master_name=setup.master_name,
        prefix=prefix,
        connect_timeout=1.0,
        io_timeout=2.0,
    )
    await engine.start(events)
    try:
        yield engine
    finally:
        await engine.close()


async def publish_until_it_works(
    engine: RedisEngine, channel: str, n: int, within: float = 30.0
) -> StreamPosition:
    deadline = time.monotonic() + within
    while True:
        try:
            return (await engine.publish(channel, pub(n), HISTORY)).position
        except EngineUnavailable:
            assert time.monotonic() < deadline, "publishing did not resume"
            await asyncio.sleep(0.1)


async def reaches(
    publisher: RedisEngine, events: Events, channel: str, n: int, within: float = 20.0
) -> None:
    """Publish ``n`` (again and again: pub/sub is at most once while a subscription
    moves) until ``events`` receives it."""
    deadline = time.monotonic() + within
    while True:
        await publish_until_it_works(publisher, channel, n)
        with contextlib.suppress(TimeoutError):
            await wait_until(
                lambda: any(numbers_of([p]) == [n] for _, p, _ in events.publications),
                events,
                0.5,
            )
            return
        assert time.monotonic() < deadline, f"{n} never reached the subscriber"


async def test_the_engine_writes_to_the_master_the_sentinel_names(
    redis_sentinel: SentinelSetup,  # noqa: F811
    prefix: str,
) -> None:
    events = Events()
    async with started(redis_sentinel, events, prefix) as engine:
        await engine.subscribe("room")
        await engine.publish("room", pub(1), HISTORY)
        await wait_until(lambda: events.offsets("room") == [1], events)
        assert (
            engine.shard_url("room")
            == f"sentinel {redis_sentinel.master_name}@{redis_sentinel.spec}"
        )
        master = str(redis_sentinel.master.port)
        prefix = engine.prefix
        assert redis_cli("-p", master, "EXISTS", f"{prefix}.stream.room").strip() == "1"
        # The stream reached the replica through replication, not through hubbub.
        replica = str(redis_sentinel.replica.port)
        deadline = time.monotonic() + 10
        while redis_cli("-p", replica, "EXISTS", f"{prefix}.stream.room").strip() != "1":
            assert time.monotonic() < deadline, "the replica never got the stream"
            await asyncio.sleep(0.05)


async def test_a_killed_master_is_replaced_and_every_node_moves_on(
    own_redis_sentinel: SentinelSetup,  # noqa: F811
    prefix: str,
) -> None:
    setup = own_redis_sentinel
    sub_events, pub_events = Events(), Events()
    async with (
        started(setup, sub_events, prefix) as subscriber,
        started(setup, pub_events, prefix) as publisher,
    ):
        await subscriber.subscribe("failing")
        before = [await publisher.publish("failing", pub(n), HISTORY) for n in range(1, 21)]
        await wait_until(lambda: 20 in sub_events.offsets("failing"), sub_events)
        old_epoch = before[0].position.epoch
        # Replication is asynchronous: the replica gets everything before the kill here
        # (tests/test_failover.py covers a failover that lost publications).
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, setup.wait_replicated)
        stream = f"{prefix}.stream.failing"
        for server in (setup.master, setup.replica):  # where the writes went, and got to
            assert redis_cli("-p", str(server.port), "EXISTS", stream).strip() == "1", server.port
        setup.master.kill()
        # Until the sentinel promotes the replica, publishes fail (told, not lost quietly).
        with pytest.raises(EngineUnavailable):
            await publisher.publish("failing", pub(0), HISTORY)
        await asyncio.get_running_loop().run_in_executor(None, setup.wait_promoted, setup.replica)
        after = [await publish_until_it_works(publisher, "failing", n) for n in range(21, 31)]
        # The subscriber's pub/sub connection broke with the master: it was told.
        await wait_until(lambda: "failing" in sub_events.lost, sub_events, 15)
        # It is carried at the new master: what is published there reaches it.
        await reaches(publisher, sub_events, "failing", 1000)
        # A new master, a new epoch: positions of the old one are refused, not trusted.
        assert {p.epoch for p in after} == {after[0].epoch} != {old_epoch}
        with pytest.raises(EpochMismatch):
            await publisher.history(
                "failing", HistoryQuery(since=before[-1].position, limit=-1), HISTORY
            )
        # Everything acknowledged before the kill had reached the replica (it was in
        # sync): kept, in order, and continued without a gap.
        page = await publisher.history("failing", HistoryQuery(limit=-1), HISTORY)
        kept = numbers_of(page.publications)
        assert kept[:30] == list(range(1, 31))
        assert set(kept[30:]) == {1000}
        assert [p.offset for p in page.publications] == list(range(1, len(kept) + 1))


async def test_a_master_demoted_alive_moves_the_engine_too(
    own_redis_sentinel: SentinelSetup,  # noqa: F811
    prefix: str,
) -> None:
    setup = own_redis_sentinel
    events = Events()
    async with started(setup, events, prefix) as engine:
        await engine.subscribe("moving")
        first = (await engine.publish("moving", pub(1), HISTORY)).position
        setup.sentinel.cli("SENTINEL", "FAILOVER", setup.master_name)
        await asyncio.get_running_loop().run_in_executor(None, setup.wait_promoted, setup.replica)
        # The old master turns replica (writes there fail with READONLY, which breaks
        # the connection); the engine's connections follow the sentinel to the new
        # master, whose stream is a new epoch. (Until the sentinel reconfigures it,
        # the old master may still accept a write: one the new master never gets,
        # which is why positions of the old epoch are refused afterwards.)
        deadline = time.monotonic() + 30
        while (await publish_until_it_works(engine, "moving", 2)).epoch == first.epoch:
            assert time.monotonic() < deadline, "the engine never reached the new master"
            await asyncio.sleep(0.1)
        assert redis_cli("-p", str(setup.master.port), "ROLE").split()[0] == "slave"
        await reaches(engine, events, "moving", 1000)
        with pytest.raises(EpochMismatch):
            await engine.history("moving", HistoryQuery(since=first, limit=-1), HISTORY)
