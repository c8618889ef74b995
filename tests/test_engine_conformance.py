"""Every engine, through the Engine interface: streams, history queries, idempotency.

The conformance suite runs each test once per engine (memory, Redis, Redis
Cluster, Sentinel: the ``engine`` fixture of tests/engine_fixtures.py). This
module covers what a publication does to a channel's stream: gap-free offsets,
epochs, history size and TTL, history queries (since, limit, reverse) and
idempotent publishes. Presence is in test_engine_presence.py, control messages in
test_engine_control.py, the memory engine's sweep in test_engine_memory_sweep.py.
"""

from __future__ import annotations

import msgspec
import pytest

from hubbub.engines.base import Engine, EpochMismatch, HistoryOptions, HistoryQuery
from hubbub.engines.memory import IDEMPOTENCY_WINDOW
from hubbub.protocol.messages import Publication, StreamPosition
from hubbub.protocol.payload import Binary
from tests.engine_fixtures import (
    HISTORY,
    NO_HISTORY,
    Events,
    FakeClock,
    delivered,
    history,
    info,
    memory_only,
    numbers,
    pub,
    publish_many,
)

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
