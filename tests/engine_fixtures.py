"""What the engine conformance tests share: a recording EventHandler, a fake clock
and the ``engine`` fixture, which runs a test once per engine.

``engine`` is a started Engine, subscribed to channels "a" and "b", on ``clock``'s
time and delivering to ``events``: memory, and Redis (one key prefix per test) on a
real redis-server, a real 3-master Redis Cluster and a real Sentinel setup (master,
replica, sentinel; the engine finds the master through the sentinel).
Deliveries may be asynchronous: ``await delivered(engine, events)`` before
looking at ``events``. Tests that need the fake clock to move time on
the engine's side (history and idempotency expiry, done by Redis itself) are
marked ``memory_only``; tests/test_engine_redis.py covers them with real short
TTLs. tests/conftest.py registers this module as a plugin, so that the suite's
modules (test_engine_conformance, _presence, _control, _memory_sweep) share its
fixtures without importing them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import msgspec
import pytest

from hubbub.engines.base import Engine, HistoryOptions, HistoryQuery
from hubbub.engines.memory import MemoryEngine
from hubbub.engines.redis import RedisEngine
from hubbub.protocol.messages import ClientInfo, Publication, StreamPosition
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


def two_nodes_events() -> tuple[Events, Events]:
    """Recording handlers of two nodes, "node-a" and "node-b" (control messages name them)."""
    events_a, events_b = Events(), Events()
    events_a.node_id, events_b.node_id = "node-a", "node-b"
    return events_a, events_b


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
