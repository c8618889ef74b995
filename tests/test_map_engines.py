"""The MapEngine conformance suite: the memory and the Redis map engines behave alike.

Each test runs against both (Redis: a real redis-server, a prefix per test).
A recorder stands in for the hub's EventHandler and keeps what the engine
delivers, so the tests check that every change is delivered once, in offset
order, also when a key's TTL runs out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable

import msgspec
import pytest

from hubbub.engines.base import EpochMismatch, HistoryQuery
from hubbub.engines.maps import MapEngine, MapStore, MapWrite
from hubbub.engines.memory_maps import MemoryMapEngine
from hubbub.engines.redis_maps import RedisMapEngine
from hubbub.protocol.messages import ClientInfo, Publication, StreamPosition
from tests.redis_fixtures import RedisProcess, redis_server  # noqa: F401

STORE = MapStore(stream_size=1000, stream_ttl=60)


class Recorder:
    """The node's EventHandler: every publication delivered, in order."""

    node_id = "test-node"

    def __init__(self) -> None:
        self.delivered: list[tuple[str, Publication, StreamPosition]] = []
        self.changed = asyncio.Event()

    def handle_publication(self, channel: str, pub: Publication, position: StreamPosition) -> None:
        self.delivered.append((channel, pub, position))
        self.changed.set()

    def handle_join(self, channel: str, info: ClientInfo) -> None: ...

    def handle_leave(self, channel: str, info: ClientInfo) -> None: ...

    def handle_broker_lost(self, channels: Iterable[str]) -> None: ...

    def handle_control(self, data: bytes) -> None: ...

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while len(self.delivered) < count:
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture(params=["memory", "redis"])
async def engine(
    request: pytest.FixtureRequest,
    redis_server: RedisProcess,  # noqa: F811
) -> AsyncIterator[tuple[MapEngine, Recorder]]:
    recorder = Recorder()
    made: MapEngine
    if request.param == "memory":
        made = MemoryMapEngine(sweep_interval=0.1)
    else:
        made = RedisMapEngine(
            (redis_server.address,), prefix=f"t{uuid.uuid4().hex[:8]}", cleanup_interval=0.2
        )
    await made.start(recorder)
    try:
        yield made, recorder
    finally:
        await made.close()


def pub(key: str, data: object = None, **fields: object) -> Publication:
    return Publication(data=msgspec.Raw(msgspec.json.encode(data)), key=key, **fields)  # type: ignore[arg-type]


async def subscribed(engine: MapEngine, channel: str) -> None:
    await engine.subscribe(channel)


async def test_writes_are_delivered_in_offset_order(engine: tuple[MapEngine, Recorder]) -> None:
    maps, recorder = engine
    await subscribed(maps, "m1")
    results = [await maps.publish("m1", pub(f"k{i}", i), STORE, MapWrite()) for i in range(5)]
    assert [r.position.offset for r in results] == [1, 2, 3, 4, 5]
    assert len({r.position.epoch for r in results}) == 1
    removal = await maps.publish("m1", Publication(key="k0", removed=True), STORE, MapWrite())
    assert removal.position.offset == 6 and not removal.suppressed
    await recorder.wait_for(6)
    assert [(p.key, p.removed, pos.offset) for _, p, pos in recorder.delivered] == [
        ("k0", False, 1),
        ("k1", False, 2),
        ("k2", False, 3),
        ("k3", False, 4),
        ("k4", False, 5),
        ("k0", True, 6),
    ]


async def test_suppressed_writes_change_nothing(engine: tuple[MapEngine, Recorder]) -> None:
    maps, recorder = engine
    await subscribed(maps, "m2")
    await maps.publish("m2", pub("a", 1), STORE, MapWrite(version=3))
    cases = [
        (pub("a", 2), MapWrite(key_mode="if_new"), "key_exists"),
        (pub("b", 2), MapWrite(key_mode="if_exists"), "key_not_found"),
        (pub("a", 2), MapWrite(version=3), "version"),
        (Publication(key="zz", removed=True), MapWrite(), "key_not_found"),
    ]
    for publication, write, reason in cases:
        result = await maps.publish("m2", publication, STORE, write)
        assert (result.suppressed, result.reason, result.position.offset) == (True, reason, 1)
    newer = await maps.publish("m2", pub("a", 4), STORE, MapWrite(version=4))
    assert newer.position.offset == 2
    first = await maps.publish("m2", pub("i", 1), STORE, MapWrite(idempotency_key="x"))
    again = await maps.publish("m2", pub("i", 9), STORE, MapWrite(idempotency_key="x"))
    assert again.suppressed and again.reason == "idempotency"
    assert again.position == first.position
    await recorder.wait_for(3)
    await asyncio.sleep(0.1)
    assert len(recorder.delivered) == 3


async def test_state_pages_cover_every_key_once(engine: tuple[MapEngine, Recorder]) -> None:
    maps, _ = engine
    for i in range(250):
        await maps.publish("m3", pub(f"k{i}", i), STORE, MapWrite())
    seen: dict[str, object] = {}
    cursor = ""
    first_position = None
    while True:
        page = await maps.read_state("m3", STORE, cursor=cursor, limit=100)
        first_position = first_position or page.position
        for entry in page.entries:
            seen[entry.key] = msgspec.json.decode(entry.data)
        cursor = page.cursor
        if not cursor:
            break
    assert seen == {f"k{i}": i for i in range(250)}
    assert first_position == StreamPosition(250, first_position.epoch)
    one = await maps.read_state("m3", STORE, key="k7")
    assert [e.key for e in one.entries] == ["k7"] and one.entries[0].offset == 8


async def test_revision_leaves_out_later_changes(engine: tuple[MapEngine, Recorder]) -> None:
    maps, _ = engine
    for i in range(10):
        await maps.publish("m4", pub(f"k{i}", i), STORE, MapWrite())
    position = (await maps.read_state("m4", STORE, limit=1)).position
    await maps.publish("m4", pub("k3", "new"), STORE, MapWrite())
    page = await maps.read_state("m4", STORE, limit=100, revision=position)
    assert sorted(e.key for e in page.entries) == sorted(f"k{i}" for i in range(10) if i != 3)
    with pytest.raises(EpochMismatch) as caught:
        await maps.read_state("m4", STORE, revision=StreamPosition(1, "other"))
    assert caught.value.position.offset == 11


async def test_stream_reads_and_stale_epochs(engine: tuple[MapEngine, Recorder]) -> None:
    maps, _ = engine
    for i in range(5):
        await maps.publish("m5", pub("k", i), STORE, MapWrite())
    top = await maps.read_stream("m5", STORE, HistoryQuery(limit=0))
    assert top.position.offset == 5 and top.publications == []
    since = StreamPosition(2, top.position.epoch)
    page = await maps.read_stream("m5", STORE, HistoryQuery(since=since, limit=10))
    assert [(p.offset, msgspec.json.decode(p.data)) for p in page.publications] == [
        (3, 2),
        (4, 3),
        (5, 4),
    ]
    with pytest.raises(EpochMismatch):
        await maps.read_stream("m5", STORE, HistoryQuery(since=StreamPosition(2, "gone"), limit=5))


async def test_writes_state_and_stream_tell_one_epoch(engine: tuple[MapEngine, Recorder]) -> None:
    """A subscriber positions itself by the state page and goes live by the stream:
    both must name the epoch the writes took, read in any order, or it is told 112.
    (The stream is read by the stream engine's HISTORY script, which starts a new
    epoch when the meta key was not written on this master: redis_scripts.py.)"""
    maps, _ = engine
    ordered = MapStore(stream_size=1000, stream_ttl=60, ordered=True)
    written = await maps.publish("m9", pub("a", 1), STORE, MapWrite())
    epochs = {written.position.epoch}
    for _ in range(2):
        epochs.add((await maps.read_state("m9", STORE)).position.epoch)
        epochs.add((await maps.read_stream("m9", STORE, HistoryQuery(limit=0))).position.epoch)
    epochs.add((await maps.publish("m9", pub("b", 2), STORE, MapWrite())).position.epoch)
    assert len(epochs) == 1, epochs
    # A channel first read, then written (the readers create its meta key).
    epochs = {(await maps.read_state("m10", ordered)).position.epoch}
    epochs.add((await maps.read_stream("m10", ordered, HistoryQuery(limit=0))).position.epoch)
    epochs.add(
        (await maps.publish("m10", pub("a", 1, score=3), ordered, MapWrite())).position.epoch
    )
    epochs.add((await maps.read_state("m10", ordered)).position.epoch)
    assert len(epochs) == 1, epochs


async def test_key_ttl_removes_keys_as_changes(engine: tuple[MapEngine, Recorder]) -> None:
    maps, recorder = engine
    await subscribed(maps, "m6")
    short = MapStore(key_ttl=0.5, stream_size=100, stream_ttl=60)
    await maps.publish("m6", pub("gone", 1), short, MapWrite())
    await maps.publish("m6", pub("kept", 1), short, MapWrite())
    await asyncio.sleep(0.3)
    # Renewed (if_new finds it and renews its TTL without a change).
    renewed = await maps.publish(
        "m6", pub("kept", 2), short, MapWrite(key_mode="if_new", refresh_ttl_on_suppress=True)
    )
    assert renewed.suppressed
    await recorder.wait_for(3, within=5.0)
    _, removal, position = recorder.delivered[2]
    assert (removal.key, removal.removed, position.offset) == ("gone", True, 3)
    assert await maps.stats("m6", short) == 1
    await recorder.wait_for(4, within=5.0)
    assert recorder.delivered[3][1].key == "kept"
    assert await maps.stats("m6", short) == 0
    stream = await maps.read_stream("m6", short, HistoryQuery(limit=-1))
    assert [(p.key, p.removed) for p in stream.publications] == [
        ("gone", False),
        ("kept", False),
        ("gone", True),
        ("kept", True),
    ]


async def test_clear_starts_a_new_epoch(engine: tuple[MapEngine, Recorder]) -> None:
    maps, _ = engine
    first = await maps.publish("m7", pub("a", 1), STORE, MapWrite())
    await maps.clear("m7")
    assert await maps.stats("m7", STORE) == 0
    again = await maps.publish("m7", pub("a", 1), STORE, MapWrite())
    assert again.position.offset == 1 and again.position.epoch != first.position.epoch


async def test_ordered_pages_by_score(engine: tuple[MapEngine, Recorder]) -> None:
    maps, _ = engine
    ordered = MapStore(stream_size=100, stream_ttl=60, ordered=True)
    for key, score in (("a", 5), ("b", 9), ("c", 5), ("d", 1), ("e", 7)):
        await maps.publish("m8", pub(key, score, score=score), ordered, MapWrite())

    async def pages(asc: bool) -> list[str]:
        keys: list[str] = []
        cursor = ""
        while True:
            page = await maps.read_state("m8", ordered, cursor=cursor, limit=2, asc=asc)
            keys += [e.key for e in page.entries]
            cursor = page.cursor
            if not cursor:
                return keys

    assert await pages(asc=False) == ["b", "e", "c", "a", "d"]
    assert await pages(asc=True) == ["d", "a", "c", "e", "b"]
