"""Every engine, through the Engine interface: the conformance suite.

Every test class below uses only the ``engine`` (a started Engine, subscribed to
channels "a" and "b"), ``clock`` (advances the engine's notion of time) and
``events`` (what the engine delivered to its EventHandler) fixtures, and runs
once per engine: memory, and Redis (one key prefix per test) on a real
redis-server, a real 3-master Redis Cluster and a real Sentinel setup (master,
replica, sentinel; the engine finds the master through the sentinel).
Deliveries may be asynchronous: ``await delivered(engine, events)`` before
looking at ``events``. Tests that need the fake clock to move time on
the engine's side (history and idempotency expiry, done by Redis itself) are
marked ``memory_only``; tests/test_engine_redis.py covers them with real short
TTLs. Memory-only details (``sweep``) are at the end.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import msgspec
import pytest

from hubbub.engines.base import (
    Engine,
    EpochMismatch,
    HistoryOptions,
    HistoryQuery,
    PresenceStats,
)
from hubbub.engines.memory import IDEMPOTENCY_WINDOW, MemoryEngine
from hubbub.engines.redis import RedisEngine
from hubbub.protocol.messages import ClientInfo, Publication, StreamPosition
from hubbub.protocol.payload import Binary
from tests.redis_cluster_fixtures import RedisClusterProcesses, redis_cluster  # noqa: F401
from tests.redis_fixtures import RedisProcess, redis_server  # noqa: F401 (fixture)
from tests.redis_sentinel_fixtures import SentinelSetup, redis_sentinel  # noqa: F401

HISTORY = HistoryOptions(size=100, ttl=60.0, meta_ttl=3600.0)
NO_HISTORY = HistoryOptions()
#: A channel used only to tell when earlier deliveries have arrived.
SYNC = "__sync__"
memory_only = pytest.mark.memory_only


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Events:
    """A recording EventHandler."""

    publications: list[tuple[str, Publication, StreamPosition]] = field(default_factory=list)
    joins: list[tuple[str, ClientInfo]] = field(default_factory=list)
    leaves: list[tuple[str, ClientInfo]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    controls: list[bytes] = field(default_factory=list)
    node_id: str = "node-under-test"
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def handle_publication(
        self, channel: str, publication: Publication, position: StreamPosition
    ) -> None:
        self.publications.append((channel, publication, position))
        self.arrived.set()

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self.joins.append((channel, info))

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        self.leaves.append((channel, info))

    def handle_broker_lost(self, channels: Iterable[str]) -> None:
        self.lost.extend(channels)

    def handle_control(self, data: bytes) -> None:
        self.controls.append(data)
        self.arrived.set()

    def offsets(self, channel: str) -> list[int]:
        return [p.offset for c, p, _ in self.publications if c == channel]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture(params=["memory", "redis", "redis_cluster", "redis_sentinel"])
async def engine(
    request: pytest.FixtureRequest, clock: FakeClock, events: Events
) -> AsyncIterator[Engine]:
    """A started engine delivering to ``events``, on ``clock``'s time."""
    engine: Engine
    if request.param == "memory":
        engine = MemoryEngine(clock=clock)
    else:
        marker = request.node.get_closest_marker("memory_only")
        if marker is not None:
            pytest.skip("Redis expires keys on its own clock: see test_engine_redis.py")
        prefix = f"t{uuid.uuid4().hex[:8]}"
        if request.param == "redis_cluster":
            cluster: RedisClusterProcesses = request.getfixturevalue("redis_cluster")
            engine = RedisEngine(clusters=[cluster.seeds], prefix=prefix, clock=clock)
        elif request.param == "redis_sentinel":
            setup: SentinelSetup = request.getfixturevalue("redis_sentinel")
            engine = RedisEngine(
                sentinels=[setup.spec], master_name=setup.master_name, prefix=prefix, clock=clock
            )
        else:
            server: RedisProcess = request.getfixturevalue("redis_server")
            engine = RedisEngine([server.address], prefix=prefix, clock=clock)
    await engine.start(events)
    for channel in ("a", "b", SYNC):
        await engine.subscribe(channel)
    yield engine
    await engine.close()


async def delivered(engine: Engine, events: Events) -> None:
    """Return (within 5 s) once everything published so far has reached ``events``."""
    before = sum(1 for c, _, _ in events.publications if c == SYNC)
    await engine.publish(SYNC, pub(0), NO_HISTORY)
    async with asyncio.timeout(5.0):
        while sum(1 for c, _, _ in events.publications if c == SYNC) == before:
            events.arrived.clear()
            await events.arrived.wait()


def pub(n: int) -> Publication:
    return Publication(data=msgspec.Raw(msgspec.json.encode({"n": n})))


def numbers(publications: list[Publication]) -> list[int]:
    return [msgspec.json.decode(p.data)["n"] for p in publications]


async def publish_many(
    engine: Engine, channel: str, count: int, history: HistoryOptions = HISTORY
) -> list[StreamPosition]:
    return [(await engine.publish(channel, pub(n), history)).position for n in range(1, count + 1)]


async def history(
    engine: Engine,
    channel: str,
    *,
    limit: int = -1,
    since: StreamPosition | None = None,
    reverse: bool = False,
    options: HistoryOptions = HISTORY,
) -> tuple[list[int], StreamPosition]:
    """(offsets returned, stream position) of a history call."""
    page = await engine.history(channel, HistoryQuery(since, limit, reverse), options)
    return [p.offset for p in page.publications], page.position


def info(user: str, client: str) -> ClientInfo:
    return ClientInfo(user=user, client=client)


# --- streams -------------------------------------------------------------------------


class TestStreams:
    async def test_offsets_are_gap_free_from_1(self, engine: Engine, events: Events) -> None:
        positions = await publish_many(engine, "a", 5)
        await delivered(engine, events)
        assert [p.offset for p in positions] == [1, 2, 3, 4, 5]
        assert events.offsets("a") == [1, 2, 3, 4, 5]
        assert [pos.offset for c, _, pos in events.publications if c == "a"] == [1, 2, 3, 4, 5]

    async def test_binary_data_is_kept_exactly(self, engine: Engine, events: Events) -> None:
        """A binary payload (a Protobuf client's bytes) comes back as the same bytes,
        delivered and from history; JSON data stays JSON (protocol/payload.py)."""
        data = Binary(b"\x00\xff\xfe\n{")
        await engine.publish("a", Publication(data=data), HISTORY)
        await engine.publish("a", pub(2), HISTORY)
        await delivered(engine, events)
        sent = [p for c, p, _ in events.publications if c == "a"]
        page = await engine.history("a", HistoryQuery(None, -1, False), HISTORY)
        for got in (sent, page.publications):
            assert [type(p.data) for p in got] == [Binary, msgspec.Raw]
            assert bytes(got[0].data) == data and not got[0].b64data
            assert msgspec.json.decode(got[1].data) == {"n": 2}

    async def test_epoch_is_stable(self, engine: Engine) -> None:
        positions = await publish_many(engine, "a", 5)
        epochs = {p.epoch for p in positions}
        assert len(epochs) == 1
        assert epochs != {""}
        _, position = await history(engine, "a", limit=0)
        assert position == StreamPosition(5, positions[0].epoch)

    async def test_channels_have_their_own_streams(self, engine: Engine) -> None:
        await publish_many(engine, "a", 3)
        positions = await publish_many(engine, "b", 2)
        assert [p.offset for p in positions] == [1, 2]
        assert (await history(engine, "a"))[0] == [1, 2, 3]
        assert (await history(engine, "b"))[0] == [1, 2]

    async def test_reading_fixes_the_epoch_for_the_first_publication(self, engine: Engine) -> None:
        """A subscriber told an epoch before any publication must see that epoch continue."""
        _, before = await history(engine, "a", limit=0)
        assert before.offset == 0 and before.epoch
        (first,) = await publish_many(engine, "a", 1)
        assert first == StreamPosition(1, before.epoch)

    async def test_history_size_caps_the_stream(self, engine: Engine) -> None:
        options = HistoryOptions(size=3, ttl=60.0, meta_ttl=3600.0)
        await publish_many(engine, "a", 5, options)
        offsets, position = await history(engine, "a", options=options)
        assert offsets == [3, 4, 5]
        assert position.offset == 5

    @memory_only
    async def test_history_ttl_drops_publications_but_keeps_the_position(
        self, engine: Engine, clock: FakeClock
    ) -> None:
        options = HistoryOptions(size=10, ttl=10.0, meta_ttl=100.0)
        positions = await publish_many(engine, "a", 3, options)
        clock.advance(9)
        assert (await history(engine, "a", options=options))[0] == [1, 2, 3]
        clock.advance(2)
        offsets, position = await history(engine, "a", options=options)
        assert offsets == []
        assert position == positions[-1]
        # The stream goes on where it was.
        (next_position,) = await publish_many(engine, "a", 1, options)
        assert next_position == StreamPosition(4, positions[0].epoch)

    @memory_only
    async def test_history_ttl_counts_from_the_last_publish(
        self, engine: Engine, clock: FakeClock
    ) -> None:
        options = HistoryOptions(size=10, ttl=10.0, meta_ttl=100.0)
        await publish_many(engine, "a", 1, options)
        clock.advance(8)
        await engine.publish("a", pub(2), options)
        clock.advance(8)
        assert (await history(engine, "a", options=options))[0] == [1, 2]

    @memory_only
    async def test_meta_ttl_expiry_starts_a_new_stream(
        self, engine: Engine, clock: FakeClock
    ) -> None:
        options = HistoryOptions(size=10, ttl=10.0, meta_ttl=20.0)
        positions = await publish_many(engine, "a", 3, options)
        clock.advance(21)
        offsets, position = await history(engine, "a", options=options)
        assert offsets == []
        assert position.offset == 0
        assert position.epoch and position.epoch != positions[0].epoch
        (restarted,) = await publish_many(engine, "a", 1, options)
        assert restarted == StreamPosition(1, position.epoch)

    async def test_meta_ttl_shorter_than_ttl_keeps_the_stream_for_ttl(
        self, engine: Engine, clock: FakeClock
    ) -> None:
        options = HistoryOptions(size=10, ttl=30.0, meta_ttl=5.0)
        positions = await publish_many(engine, "a", 2, options)
        clock.advance(10)
        offsets, position = await history(engine, "a", options=options)
        assert offsets == [1, 2]
        assert position == positions[-1]

    async def test_remove_history_keeps_the_position(self, engine: Engine) -> None:
        positions = await publish_many(engine, "a", 3)
        await engine.remove_history("a")
        offsets, position = await history(engine, "a")
        assert offsets == []
        assert position == positions[-1]
        (next_position,) = await publish_many(engine, "a", 1)
        assert next_position == StreamPosition(4, positions[0].epoch)
        await engine.remove_history("never-published")  # no error

    async def test_publish_without_history_has_offset_0_and_is_delivered(
        self, engine: Engine, events: Events
    ) -> None:
        result = await engine.publish("a", pub(1), NO_HISTORY)
        assert result.position == StreamPosition()
        assert not result.duplicate
        await delivered(engine, events)
        assert len(events.publications) == 2  # and the SYNC one
        channel, publication, position = events.publications[0]
        assert channel == "a" and numbers([publication]) == [1]
        assert publication.offset == 0 and position == StreamPosition()
        page = await engine.history("a", HistoryQuery(limit=-1), NO_HISTORY)
        assert page.publications == [] and page.position == StreamPosition()

    async def test_skip_history_on_a_history_channel_does_not_take_an_offset(
        self, engine: Engine, events: Events
    ) -> None:
        await publish_many(engine, "a", 2)
        await engine.publish("a", pub(99), NO_HISTORY)
        (third,) = await publish_many(engine, "a", 1)
        assert third.offset == 3
        await delivered(engine, events)
        assert events.offsets("a") == [1, 2, 0, 3]
        assert (await history(engine, "a"))[0] == [1, 2, 3]

    async def test_publications_are_delivered_with_their_content(
        self, engine: Engine, events: Events
    ) -> None:
        publication = Publication(
            data=msgspec.Raw(b'{"text":"hi"}'), info=info("u", "c"), tags={"k": "v"}
        )
        await engine.publish("a", publication, HISTORY)
        await delivered(engine, events)
        ((_, delivered_publication, _), _) = events.publications
        assert bytes(delivered_publication.data) == b'{"text":"hi"}'
        assert delivered_publication.info == info("u", "c")
        assert delivered_publication.tags == {"k": "v"}
        page = await engine.history("a", HistoryQuery(limit=-1), HISTORY)
        assert bytes(page.publications[0].data) == b'{"text":"hi"}'
        assert page.publications[0].tags == {"k": "v"}

    async def test_join_and_leave_are_delivered(self, engine: Engine, events: Events) -> None:
        await engine.publish_join("a", info("u", "c1"))
        await engine.publish_leave("a", info("u", "c1"))
        await delivered(engine, events)
        assert events.joins == [("a", info("u", "c1"))]
        assert events.leaves == [("a", info("u", "c1"))]


# --- history queries -----------------------------------------------------------------


class TestHistoryQueries:
    @pytest.fixture
    async def epoch(self, engine: Engine) -> str:
        """Channel "a" with publications 1..5."""
        positions = await publish_many(engine, "a", 5)
        return positions[0].epoch

    async def test_limit_0_returns_only_the_position(self, engine: Engine, epoch: str) -> None:
        assert await history(engine, "a", limit=0) == ([], StreamPosition(5, epoch))

    async def test_limit_minus_1_returns_everything_oldest_first(
        self, engine: Engine, epoch: str
    ) -> None:
        offsets, position = await history(engine, "a", limit=-1)
        assert offsets == [1, 2, 3, 4, 5]
        assert position == StreamPosition(5, epoch)
        page = await engine.history("a", HistoryQuery(limit=-1), HISTORY)
        assert numbers(page.publications) == [1, 2, 3, 4, 5]

    @pytest.mark.parametrize(
        ("limit", "expected"), [(1, [1]), (3, [1, 2, 3]), (10, [1, 2, 3, 4, 5])]
    )
    async def test_limit_n(
        self, engine: Engine, epoch: str, limit: int, expected: list[int]
    ) -> None:
        assert (await history(engine, "a", limit=limit))[0] == expected

    async def test_since_returns_what_follows(self, engine: Engine, epoch: str) -> None:
        since = StreamPosition(2, epoch)
        assert (await history(engine, "a", since=since))[0] == [3, 4, 5]
        assert (await history(engine, "a", since=since, limit=2))[0] == [3, 4]
        assert (await history(engine, "a", since=StreamPosition(5, epoch)))[0] == []
        assert (await history(engine, "a", since=StreamPosition(0, epoch)))[0] == [1, 2, 3, 4, 5]

    async def test_since_with_limit_0_is_only_the_position(
        self, engine: Engine, epoch: str
    ) -> None:
        assert await history(engine, "a", since=StreamPosition(2, epoch), limit=0) == (
            [],
            StreamPosition(5, epoch),
        )

    async def test_reverse_returns_newest_first(self, engine: Engine, epoch: str) -> None:
        assert (await history(engine, "a", reverse=True))[0] == [5, 4, 3, 2, 1]
        assert (await history(engine, "a", reverse=True, limit=2))[0] == [5, 4]

    async def test_reverse_since_returns_what_precedes(self, engine: Engine, epoch: str) -> None:
        since = StreamPosition(4, epoch)
        assert (await history(engine, "a", since=since, reverse=True))[0] == [3, 2, 1]
        assert (await history(engine, "a", since=since, reverse=True, limit=2))[0] == [3, 2]
        assert (await history(engine, "a", since=StreamPosition(1, epoch), reverse=True))[0] == []

    async def test_stale_epoch_is_epoch_mismatch(self, engine: Engine, epoch: str) -> None:
        for query in (
            HistoryQuery(since=StreamPosition(2, "stale"), limit=-1),
            HistoryQuery(since=StreamPosition(2, "stale"), limit=0),
            HistoryQuery(since=StreamPosition(2, "stale"), limit=-1, reverse=True),
        ):
            with pytest.raises(EpochMismatch) as caught:
                await engine.history("a", query, HISTORY)
            # the stream's current top comes with it: no second read to tell the client
            assert caught.value.position == StreamPosition(5, epoch)

    async def test_since_without_epoch_is_not_checked(self, engine: Engine, epoch: str) -> None:
        assert (await history(engine, "a", since=StreamPosition(3, "")))[0] == [4, 5]

    @memory_only
    async def test_epoch_mismatch_after_the_stream_is_lost(
        self, engine: Engine, clock: FakeClock, epoch: str
    ) -> None:
        clock.advance(HISTORY.meta_ttl + 1)
        with pytest.raises(EpochMismatch):
            await engine.history("a", HistoryQuery(StreamPosition(5, epoch), -1), HISTORY)

    async def test_history_of_an_unknown_channel_is_empty(self, engine: Engine) -> None:
        offsets, position = await history(engine, "nothing-here")
        assert offsets == [] and position.offset == 0


# --- presence ------------------------------------------------------------------------


class TestPresence:
    async def test_add_remove_and_stats(self, engine: Engine) -> None:
        await engine.add_presence("a", "c1", info("alice", "c1"), 60)
        await engine.add_presence("a", "c2", info("alice", "c2"), 60)
        await engine.add_presence("a", "c3", info("bob", "c3"), 60)
        await engine.add_presence("b", "c4", info("carol", "c4"), 60)
        assert await engine.presence("a") == {
            "c1": info("alice", "c1"),
            "c2": info("alice", "c2"),
            "c3": info("bob", "c3"),
        }
        assert await engine.presence_stats("a") == PresenceStats(num_clients=3, num_users=2)
        await engine.remove_presence("a", "c1")
        assert set(await engine.presence("a")) == {"c2", "c3"}
        assert await engine.presence_stats("a") == PresenceStats(2, 2)
        await engine.remove_presence("a", "c2")
        assert await engine.presence_stats("a") == PresenceStats(1, 1)
        await engine.remove_presence("a", "c3")
        await engine.remove_presence("a", "unknown")  # no error
        assert await engine.presence("a") == {}
        assert await engine.presence_stats("a") == PresenceStats(0, 0)
        assert await engine.presence_stats("b") == PresenceStats(1, 1)

    async def test_adding_again_replaces_the_entry(self, engine: Engine) -> None:
        await engine.add_presence("a", "c1", info("alice", "c1"), 60)
        await engine.add_presence("a", "c1", ClientInfo("alice", "c1", msgspec.Raw(b"1")), 60)
        assert await engine.presence_stats("a") == PresenceStats(1, 1)
        assert bytes((await engine.presence("a"))["c1"].conn_info) == b"1"

    async def test_entries_expire(self, engine: Engine, clock: FakeClock) -> None:
        await engine.add_presence("a", "c1", info("alice", "c1"), 10)
        await engine.add_presence("a", "c2", info("bob", "c2"), 30)
        clock.advance(11)
        assert set(await engine.presence("a")) == {"c2"}
        assert await engine.presence_stats("a") == PresenceStats(1, 1)
        clock.advance(20)
        assert await engine.presence("a") == {}

    async def test_adding_again_refreshes_the_expiry(
        self, engine: Engine, clock: FakeClock
    ) -> None:
        await engine.add_presence("a", "c1", info("alice", "c1"), 10)
        clock.advance(8)
        await engine.add_presence("a", "c1", info("alice", "c1"), 10)
        clock.advance(8)
        assert set(await engine.presence("a")) == {"c1"}

    async def test_unknown_channel_has_no_presence(self, engine: Engine) -> None:
        assert await engine.presence("nobody") == {}
        assert await engine.presence_stats("nobody") == PresenceStats(0, 0)


# --- control ------------------------------------------------------------------------


class TestControl:
    async def test_to_every_node_and_to_this_node_but_not_to_another(
        self, engine: Engine, events: Events
    ) -> None:
        assert engine.available
        await engine.publish_control(b"all")
        await engine.publish_control(b"someone else", node="another-node")
        await engine.publish_control(b"this one", node=events.node_id)
        async with asyncio.timeout(5):
            while len(events.controls) < 2:
                events.arrived.clear()
                await events.arrived.wait()
        await delivered(engine, events)
        assert events.controls == [b"all", b"this one"]


# --- idempotency ---------------------------------------------------------------------


class TestIdempotency:
    async def test_same_key_publishes_once(self, engine: Engine, events: Events) -> None:
        first = await engine.publish("a", pub(1), HISTORY, idempotency_key="k")
        second = await engine.publish("a", pub(2), HISTORY, idempotency_key="k")
        assert not first.duplicate
        assert second.duplicate
        assert second.position == first.position
        await delivered(engine, events)
        assert events.offsets("a") == [1]
        assert (await history(engine, "a"))[0] == [1]

    async def test_other_keys_and_channels_are_independent(
        self, engine: Engine, events: Events
    ) -> None:
        await engine.publish("a", pub(1), HISTORY, idempotency_key="k")
        other_key = await engine.publish("a", pub(2), HISTORY, idempotency_key="k2")
        other_channel = await engine.publish("b", pub(3), HISTORY, idempotency_key="k")
        no_key = await engine.publish("a", pub(4), HISTORY)
        assert not (other_key.duplicate or other_channel.duplicate or no_key.duplicate)
        await delivered(engine, events)
        assert events.offsets("a") == [1, 2, 3]
        assert events.offsets("b") == [1]

    async def test_without_history_too(self, engine: Engine, events: Events) -> None:
        await engine.publish("a", pub(1), NO_HISTORY, idempotency_key="k")
        again = await engine.publish("a", pub(1), NO_HISTORY, idempotency_key="k")
        assert again.duplicate
        await delivered(engine, events)
        assert len(events.publications) == 2  # and the SYNC one

    @memory_only
    async def test_key_is_forgotten_after_the_window(
        self, engine: Engine, clock: FakeClock, events: Events
    ) -> None:
        await engine.publish("a", pub(1), HISTORY, idempotency_key="k")
        clock.advance(IDEMPOTENCY_WINDOW - 1)
        assert (await engine.publish("a", pub(2), HISTORY, idempotency_key="k")).duplicate
        clock.advance(2)
        later = await engine.publish("a", pub(3), HISTORY, idempotency_key="k")
        assert not later.duplicate
        assert later.position.offset == 2
        assert events.offsets("a") == [1, 2]


# --- memory engine only --------------------------------------------------------------


async def test_sweep_drops_what_expired(clock: FakeClock, events: Events) -> None:
    engine = MemoryEngine(clock=clock)
    await engine.start(events)
    try:
        options = HistoryOptions(size=10, ttl=10.0, meta_ttl=20.0)
        positions = await publish_many(engine, "a", 2, options)
        await engine.add_presence("a", "c1", info("u", "c1"), 5)
        await engine.publish("b", pub(1), NO_HISTORY, idempotency_key="k")
        clock.advance(11)
        engine.sweep()
        assert await engine.presence("a") == {}
        assert (await history(engine, "a", options=options)) == ([], positions[-1])
        clock.advance(IDEMPOTENCY_WINDOW)
        engine.sweep()
        _, position = await history(engine, "a", options=options)
        assert position.offset == 0 and position.epoch != positions[0].epoch
        assert not (await engine.publish("b", pub(1), NO_HISTORY, idempotency_key="k")).duplicate
    finally:
        await engine.close()


async def test_close_is_idempotent(clock: FakeClock, events: Events) -> None:
    engine = MemoryEngine(clock=clock)
    await engine.start(events)
    await engine.close()
    await engine.close()


async def test_sweep_work_is_proportional_to_what_expires(clock: FakeClock, events: Events) -> None:
    """Streams kept 30 days cost nothing per sweep; only due heap entries are looked at."""
    engine = MemoryEngine(clock=clock)
    await engine.start(events)
    try:
        month = 30 * 24 * 3600.0
        kept = HistoryOptions(size=10, ttl=month, meta_ttl=month)
        short = HistoryOptions(size=10, ttl=10.0, meta_ttl=20.0)
        for i in range(5000):
            await engine.publish(f"kept{i}", pub(i), kept)
            await engine.add_presence(f"kept{i}", "c", info("u", "c"), month)
        for i in range(10):
            await engine.publish(f"short{i}", pub(i), short)
        # Publishing again and again on one stream does not grow the heap.
        heap_before = engine.statistics()["heap"]
        for i in range(1000):
            await engine.publish("kept0", pub(i), kept)
            await engine.add_presence("kept0", "c", info("u", "c"), month)
        assert engine.statistics()["heap"] == heap_before
        clock.advance(11)
        engine.sweep()
        assert engine.statistics()["last_sweep_visited"] == 10  # the short publications
        assert engine.statistics()["streams"] == 5010
        clock.advance(10)
        engine.sweep()
        assert engine.statistics()["last_sweep_visited"] == 10  # the short positions
        assert engine.statistics()["streams"] == 5000
        engine.sweep()
        assert engine.statistics()["last_sweep_visited"] == 0
        # Everything else expires when its time comes, including what was extended.
        clock.advance(month)
        engine.sweep()
        stats = engine.statistics()
        assert (stats["streams"], stats["presence_channels"], stats["heap"]) == (0, 0, 0)
    finally:
        await engine.close()


async def test_sweep_reschedules_an_extended_expiry(clock: FakeClock, events: Events) -> None:
    engine = MemoryEngine(clock=clock)
    await engine.start(events)
    try:
        options = HistoryOptions(size=10, ttl=10.0, meta_ttl=20.0)
        await engine.publish("a", pub(1), options)
        await engine.add_presence("a", "c1", info("u", "c1"), 10)
        clock.advance(8)
        await engine.publish("a", pub(2), options)  # publications now expire at 18
        await engine.add_presence("a", "c1", info("u", "c1"), 10)  # presence at 18
        clock.advance(3)  # t=11: the first heap entries are due, the records are not
        engine.sweep()
        assert [
            p.offset
            for p in (await engine.history("a", HistoryQuery(limit=-1), options)).publications
        ] == [1, 2]
        assert set(await engine.presence("a")) == {"c1"}
        clock.advance(8)  # t=19
        engine.sweep()
        assert (await engine.history("a", HistoryQuery(limit=-1), options)).publications == []
        assert engine.statistics()["presence_channels"] == 0
        clock.advance(10)  # t=29: the position (meta ttl 20 from t=8) is gone too
        engine.sweep()
        assert engine.statistics()["streams"] == 0
        assert engine.statistics()["heap"] == 0
    finally:
        await engine.close()
