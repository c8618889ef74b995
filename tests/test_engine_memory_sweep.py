"""The memory engine's sweep: it drops what expired (history, presence,
idempotency keys), does work in proportion to what expires, follows an extended
expiry, and closes idempotently. Memory-only details of the conformance suite.
"""

from __future__ import annotations

from hubbub.engines.base import HistoryOptions, HistoryQuery
from hubbub.engines.memory import IDEMPOTENCY_WINDOW, MemoryEngine
from tests.engine_fixtures import NO_HISTORY, Events, FakeClock, history, info, pub, publish_many

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
