"""The Redis engine on a real Redis Cluster (``engine.redis.cluster_address``).

The clusters are started by the tests (tests/redis_cluster_fixtures.py): 3
masters, and 3 replicas for the failover test. Two engines stand for two
nodes. What is checked: a channel's keys share one slot; events use sharded
pub/sub (only the slot's master carries the channel); a slot moved during
traffic (resharding) and a master killed during traffic (failover) tell the
subscribing node (``handle_broker_lost``), its channel comes back on the new
master, and no acknowledged publication is missing from the stream except
what the failover itself lost, which the stream's top then shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest

from hubbub.engines.base import EngineUnavailable, EpochMismatch, HistoryOptions, HistoryQuery
from hubbub.engines.redis import RedisEngine
from tests.engine_fixtures import Events, info, pub
from tests.engine_fixtures import numbers as numbers_of
from tests.redis_cluster_fixtures import (  # noqa: F401 (fixtures)
    ClusterNodeProcess,
    RedisClusterProcesses,
    own_redis_cluster,
    redis_cluster,
    running_cluster,
)
from tests.redis_fixtures import connections_to
from tests.test_engine_redis import wait_until

pytestmark = pytest.mark.timeout(120)

HISTORY = HistoryOptions(size=10_000, ttl=300.0, meta_ttl=3600.0)


async def started(cluster: RedisClusterProcesses, events: Events, prefix: str) -> RedisEngine:
    engine = RedisEngine(clusters=[cluster.seeds], prefix=prefix, connect_timeout=2.0)
    await engine.start(events)
    return engine


@pytest.fixture
def prefix() -> str:
    return f"k{uuid.uuid4().hex[:8]}"


async def test_a_channels_keys_share_a_slot_and_its_events_use_sharded_pubsub(
    redis_cluster: RedisClusterProcesses,  # noqa: F811
    prefix: str,
) -> None:
    events = Events()
    engine = await started(redis_cluster, events, prefix)
    try:
        channel = "room:42"
        await engine.subscribe(channel)
        await engine.publish(channel, pub(1), HISTORY, idempotency_key="key-1")
        await engine.add_presence(channel, "c1", info("u", "c1"), 60)
        await wait_until(lambda: events.offsets(channel) == [1], events)
        owner = redis_cluster.owner_of("{" + channel + "}")
        keys = owner.cli("--scan", "--pattern", f"{prefix}.*").split()
        assert sorted(keys) == sorted(
            f"{prefix}.{kind}.{{{channel}}}{suffix}"
            for kind, suffix in (
                ("stream", ""),
                ("meta", ""),
                ("idem", ".key-1"),
                ("presence", ""),
                ("presence_exp", ""),
            )
        )
        for node in redis_cluster.masters():
            if node is not owner:
                assert node.cli("--scan", "--pattern", f"{prefix}.*").split() == []
        # The shard channel is carried by the slot's master only.
        shard_channel = f"{prefix}.channel.{{{channel}}}"
        for node in redis_cluster.masters():
            listed = node.cli("PUBSUB", "SHARDCHANNELS", f"{prefix}.channel.*").split()
            assert listed == ([shard_channel] if node is owner else []), node.port
    finally:
        await engine.close()


def migrate_slot(
    cluster: RedisClusterProcesses,
    slot: int,
    source: ClusterNodeProcess,
    target: ClusterNodeProcess,
) -> None:
    """Move one slot (and its keys) from ``source`` to ``target``, as a resharding does."""
    source_id, target_id = cluster.node_id(source), cluster.node_id(target)
    target.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
    source.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
    while True:
        keys = source.cli("CLUSTER", "GETKEYSINSLOT", str(slot), "100").split()
        if not keys:
            break
        source.cli("MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000", "KEYS", *keys)
    for node in cluster.masters():
        node.cli("CLUSTER", "SETSLOT", str(slot), "NODE", target_id)


async def publish_for(
    engine: RedisEngine, channel: str, seconds: float, midway: object, at: float
) -> list[int]:
    """Publish 1, 2, ... for ``seconds``; call ``midway()`` after ``at`` s; the acknowledged."""
    acknowledged: list[int] = []
    started_at = time.monotonic()
    n = 0
    called = False
    while time.monotonic() - started_at < seconds:
        if not called and time.monotonic() - started_at >= at:
            called = True
            await asyncio.get_running_loop().run_in_executor(None, midway)  # type: ignore[arg-type]
        n += 1
        try:
            await engine.publish(channel, pub(n), HISTORY)
            acknowledged.append(n)
        except EngineUnavailable:
            pass  # the publisher is told; not acknowledged
        await asyncio.sleep(0.01)
    return acknowledged


async def test_resharding_during_traffic_tells_the_subscriber_and_loses_nothing(
    redis_cluster: RedisClusterProcesses,  # noqa: F811
    prefix: str,
) -> None:
    sub_events, pub_events = Events(), Events()
    subscriber = await started(redis_cluster, sub_events, prefix)
    publisher = await started(redis_cluster, pub_events, prefix)
    channel = "moving"
    try:
        await subscriber.subscribe(channel)
        tag = "{" + channel + "}"
        slot = int(redis_cluster.nodes[0].cli("CLUSTER", "KEYSLOT", tag).strip())
        source = redis_cluster.owner_of(tag)
        target = next(n for n in redis_cluster.masters() if n is not source)
        acknowledged = await publish_for(
            publisher,
            channel,
            4.0,
            lambda: migrate_slot(redis_cluster, slot, source, target),
            at=1.5,
        )
        assert redis_cluster.owner_of(tag) is target
        # The subscriber was told, and its channel lives on the new master now.
        await wait_until(lambda: channel in sub_events.lost, sub_events, 10)
        shard_channel = f"{prefix}.channel.{tag}"

        async def carried_by_target() -> bool:
            listed = target.cli("PUBSUB", "SHARDCHANNELS", shard_channel).split()
            return listed == [shard_channel]

        deadline = time.monotonic() + 10
        while not await carried_by_target():
            assert time.monotonic() < deadline, "the channel did not move to its new master"
            await asyncio.sleep(0.1)
        after = (await publisher.publish(channel, pub(10_000), HISTORY)).position
        await wait_until(lambda: after.offset in sub_events.offsets(channel), sub_events, 10)
        # Every acknowledged publication is in the stream, in order, gap-free, one epoch.
        page = await publisher.history(channel, HistoryQuery(limit=-1), HISTORY)
        numbers = numbers_of(page.publications)
        assert numbers == [*acknowledged, 10_000]
        assert [p.offset for p in page.publications] == list(range(1, len(numbers) + 1))
        assert len(acknowledged) > 100
    finally:
        await subscriber.close()
        await publisher.close()


async def test_master_failover_during_traffic_tells_the_subscriber_and_moves_on(
    own_redis_cluster: RedisClusterProcesses,  # noqa: F811
    prefix: str,
) -> None:
    cluster = own_redis_cluster
    sub_events, pub_events = Events(), Events()
    subscriber = await started(cluster, sub_events, prefix)
    publisher = await started(cluster, pub_events, prefix)
    channel = "failing"
    tag = "{" + channel + "}"
    try:
        await subscriber.subscribe(channel)
        victim = cluster.owner_of(tag)
        acknowledged = await publish_for(publisher, channel, 10.0, victim.kill, at=1.0)
        # A replica took the slot over; the subscriber was told and is carried there.
        await wait_until(lambda: channel in sub_events.lost, sub_events, 15)
        new_owner = cluster.owner_of(tag)
        assert new_owner is not victim
        after = (await publisher.publish(channel, pub(100_000), HISTORY)).position
        await wait_until(lambda: after.offset in sub_events.offsets(channel), sub_events, 15)
        page = await publisher.history(channel, HistoryQuery(limit=-1), HISTORY)
        numbers = numbers_of(page.publications)
        assert numbers[-1] == 100_000
        kept = numbers[:-1]
        # Replication is asynchronous: the last acknowledged publications before the
        # kill may be gone; what is kept is an ordered prefix-consistent subset, and
        # everything acknowledged after the failover is there.
        assert kept == sorted(kept)
        assert set(kept) <= set(acknowledged)
        missing = [n for n in acknowledged if n not in set(kept)]
        print(f"acknowledged {len(acknowledged)}, missing after failover: {missing}")
        after_failover = [n for n in acknowledged if n > max(missing, default=0)]
        assert set(after_failover) <= set(kept)
        assert len(after_failover) > 50, "publishing did not resume after the failover"
    finally:
        with contextlib.suppress(Exception):
            await subscriber.close()
        with contextlib.suppress(Exception):
            await publisher.close()


async def test_a_failover_that_lost_acknowledged_publications_starts_a_new_epoch(
    own_redis_cluster: RedisClusterProcesses,  # noqa: F811
    prefix: str,
) -> None:
    """The promoted replica lacks acknowledged publications: the stream must not hand
    their offsets out again in the same epoch (a client positioned among them would
    miss the replacements without being told)."""
    cluster = own_redis_cluster
    sub_events, pub_events = Events(), Events()
    subscriber = await started(cluster, sub_events, prefix)
    publisher = await started(cluster, pub_events, prefix)
    channel = "replaced"
    tag = "{" + channel + "}"
    victim = cluster.owner_of(tag)
    replica = cluster.replica_of(victim)
    try:
        await subscriber.subscribe(channel)
        for n in range(1, 11):
            await publisher.publish(channel, pub(n), HISTORY)
        # The replica stops: what the master acknowledges now never reaches it.
        cluster.cut_off_replica(victim)
        try:
            lost = [(await publisher.publish(channel, pub(n), HISTORY)).position for n in (11, 12)]
            await wait_until(lambda: 12 in sub_events.offsets(channel), sub_events)
            last_seen = lost[-1]  # where a client that saw everything stands
            assert last_seen.offset == 12
            victim.kill()
        finally:
            replica.resume()
        replica.cli("CLUSTER", "FAILOVER", "TAKEOVER")
        await asyncio.get_running_loop().run_in_executor(None, cluster.wait_ok)
        assert cluster.owner_of(tag) is replica
        # Publishing goes on at the new master, past the old top.
        positions = []
        deadline = time.monotonic() + 20
        while len(positions) < 3:
            try:
                positions.append((await publisher.publish(channel, pub(100), HISTORY)).position)
            except EngineUnavailable:
                assert time.monotonic() < deadline, "publishing did not resume"
                await asyncio.sleep(0.1)
        assert positions[-1].offset >= last_seen.offset  # offsets 11, 12 were handed out again
        # ... in a new epoch: the client positioned at 12 is told, not silently moved on.
        assert {p.epoch for p in positions} == {positions[0].epoch} != {last_seen.epoch}
        with pytest.raises(EpochMismatch):
            await publisher.history(channel, HistoryQuery(since=last_seen, limit=-1), HISTORY)
        # A live subscriber sees the epoch change (the hub treats it as a gap).
        await wait_until(
            lambda: any(pos.epoch == positions[0].epoch for _, _, pos in sub_events.publications),
            sub_events,
            15,
        )
        # What the new master kept is still readable in the new epoch.
        page = await publisher.history(channel, HistoryQuery(limit=-1), HISTORY)
        assert numbers_of(page.publications)[:10] == list(range(1, 11))
        assert page.position == positions[-1]
    finally:
        with contextlib.suppress(Exception):
            await subscriber.close()
        with contextlib.suppress(Exception):
            await publisher.close()


async def no_connection_left(ports: list[int]) -> None:
    """This process holds no socket to ``ports`` within 2 s (uvloop closes a socket
    a loop turn after ``close()``)."""
    deadline = time.monotonic() + 2
    while left := connections_to(ports):
        assert time.monotonic() < deadline, f"left open after close(): {left}"
        await asyncio.sleep(0.05)


async def test_close_after_a_failover_leaves_no_connection_to_the_cluster(
    own_redis_cluster: RedisClusterProcesses,  # noqa: F811
    prefix: str,
) -> None:
    """``close()`` leaves no socket to the cluster open, also after a failover made
    redis-py drop the failed master from its table while commands and subscribes
    were under way. (An application that embeds and restarts a Hub would leak them;
    a test loop closed with such a connection open hung in uvloop's ``close()``.)"""
    cluster = own_redis_cluster
    ports = [node.port for node in cluster.nodes]
    events = Events()
    engine = await started(cluster, events, prefix)
    # Channels on every master: pooled connections and a sharded pub/sub to each.
    channels = [f"spread{n}" for n in range(12)]
    try:
        for channel in channels:
            await engine.subscribe(channel)
            await engine.publish(channel, pub(1), HISTORY)
        victim = cluster.owner_of("{" + channels[0] + "}")
        victim.kill()
        # Traffic during the failover, until every channel is served again.
        deadline = time.monotonic() + 30
        done: set[str] = set()
        while len(done) < len(channels):
            assert time.monotonic() < deadline, f"not served again: {set(channels) - done}"
            results = await asyncio.gather(
                *(engine.publish(c, pub(2), HISTORY) for c in channels if c not in done),
                return_exceptions=True,
            )
            done |= {
                c
                for c, r in zip([c for c in channels if c not in done], results, strict=True)
                if not isinstance(r, BaseException)
            }
            await asyncio.sleep(0.05)
        assert connections_to(ports), "the engine holds no connection to the cluster"
    finally:
        await engine.close()
    await no_connection_left(ports)


async def test_close_when_the_whole_cluster_went_away_raises_nothing_and_leaves_no_connection(
    prefix: str,
) -> None:
    """Every node gone: the engine keeps trying to read the slot map from nowhere
    ("Redis Cluster cannot be connected", which once ended that task with an
    exception that ``close()`` then raised, before closing anything)."""
    with running_cluster(replicas=False) as cluster:
        ports = [node.port for node in cluster.nodes]
        events = Events()
        engine = await started(cluster, events, prefix)
        channels = [f"gone{n}" for n in range(6)]
        try:
            for channel in channels:
                await engine.subscribe(channel)
                await engine.publish(channel, pub(1), HISTORY)
            for node in cluster.nodes:
                node.kill()
            await wait_until(lambda: set(channels) <= set(events.lost), events, 15)
            await asyncio.sleep(0.5)  # the map is read again meanwhile, in vain
        finally:
            await engine.close()
        await no_connection_left(ports)
