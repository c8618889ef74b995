"""The in-memory MapEngine: one process, state in dicts, the hub called back at once.

Rule 1 (as the memory engine's): a write assigns its offset, stores, and
delivers before it returns, with no await in between, so a reader that pages
the state, reads the stream and goes live can never miss or repeat a change.
Rule 2: state pages are stable under writes: every entry has a sequence
number given when its key first appears (an update keeps it), pages go in
sequence order and a cursor is the last sequence number returned, so a key
is never returned twice by one pagination and no key present throughout is
skipped. Ordered maps page by (score, key) instead.
Rule 3: an entry with a key TTL is removed by the sweep (each second) once
it expires, and the removal is a change like any other (offset, delivery),
so subscribers see keys expire.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import time
from collections import deque
from collections.abc import Callable

import msgspec

from hubbub.engines.base import EpochMismatch, EventHandler, HistoryPage, HistoryQuery
from hubbub.engines.maps import (
    IDEMPOTENCY_WINDOW,
    SUPPRESS_IDEMPOTENCY,
    SUPPRESS_KEY_EXISTS,
    SUPPRESS_KEY_NOT_FOUND,
    SUPPRESS_VERSION,
    MapResult,
    MapStore,
    MapWrite,
    StatePage,
)
from hubbub.engines.memory import new_epoch, read_page
from hubbub.protocol.messages import Publication, StreamPosition
from hubbub.tasks import stop_task

#: How often expired keys are removed (Centrifugo's map cleanup_interval: 1 s).
SWEEP_INTERVAL = 1.0


class _Entry(msgspec.Struct):
    seq: int  # place in unordered pagination; kept by updates
    publication: Publication  # the latest publication of the key (its offset included)
    expire_at: float = 0.0  # 0: never
    version: int = 0
    version_epoch: str = ""


class _Map(msgspec.Struct):
    epoch: str
    top: int = 0
    entries: dict[str, _Entry] = msgspec.field(default_factory=dict)
    order: list[tuple[int, str]] = msgspec.field(default_factory=list)  # (seq, key), seq ascending
    stale: int = 0  # items of ``order`` whose key went or got a new seq
    next_seq: int = 0
    stream: deque[Publication] = msgspec.field(default_factory=deque)
    stream_expire_at: float = 0.0
    meta_expire_at: float = 0.0
    by_score: list[tuple[int, str]] | None = None  # ordered maps: sorted view, rebuilt on change


class MemoryMapEngine:
    """MapEngine for a single node; state lives in this process and dies with it."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sweep_interval: float = SWEEP_INTERVAL,
    ) -> None:
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._handler: EventHandler | None = None
        self._maps: dict[str, _Map] = {}
        self._stores: dict[str, MapStore] = {}  # how each channel was last written
        self._expiry: list[tuple[float, str, str]] = []  # (expire_at, channel, key) heap
        self._idempotency: dict[tuple[str, str], tuple[MapResult, float]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="memory-maps-sweep")

    async def close(self) -> None:
        await stop_task(self._sweeper)
        self._sweeper = None

    async def subscribe(self, channel: str) -> None:
        return None

    async def unsubscribe(self, channel: str) -> None:
        return None

    # --- writes ----------------------------------------------------------------------

    async def publish(
        self, channel: str, publication: Publication, store: MapStore, write: MapWrite
    ) -> MapResult:
        return self.publish_nowait(channel, publication, store, write)

    def publish_nowait(
        self, channel: str, publication: Publication, store: MapStore, write: MapWrite
    ) -> MapResult:
        """``publish`` without an await (the sweep and the hub's own writes use it)."""
        now = self._clock()
        if write.idempotency_key:
            seen = self._idempotency.get((channel, write.idempotency_key))
            if seen is not None and seen[1] > now:
                return MapResult(seen[0].position, True, SUPPRESS_IDEMPOTENCY)
        chan = self._live(channel, now, store)
        key = publication.key
        existing = chan.entries.get(key)
        if existing is not None and existing.expire_at and existing.expire_at <= now:
            existing = None  # expired, not swept yet: as good as gone
        reason = _refused(publication, existing, write)
        if reason:
            if (
                reason == SUPPRESS_KEY_EXISTS
                and existing is not None
                and write.refresh_ttl_on_suppress
                and store.key_ttl
            ):
                self._expire_later(channel, key, existing, now + store.key_ttl)
            return MapResult(StreamPosition(chan.top, chan.epoch), True, reason)
        self._apply(channel, chan, publication, existing, store, write, now)
        result = MapResult(StreamPosition(chan.top, chan.epoch))
        if write.idempotency_key:
            self._idempotency[(channel, write.idempotency_key)] = (
                result,
                now + IDEMPOTENCY_WINDOW,
            )
        if self._handler is not None:
            self._handler.handle_publication(channel, publication, result.position)
        return result

    def _apply(
        self,
        channel: str,
        chan: _Map,
        publication: Publication,
        existing: _Entry | None,
        store: MapStore,
        write: MapWrite,
        now: float,
    ) -> None:
        chan.top += 1
        publication.offset = chan.top
        key = publication.key
        if publication.removed:
            self._drop(chan, key)
        elif existing is not None and chan.entries.get(key) is existing:
            existing.publication = publication
            existing.version, existing.version_epoch = write.version, write.version_epoch
            if store.key_ttl:
                self._expire_later(channel, key, existing, now + store.key_ttl)
            else:
                existing.expire_at = 0.0
        else:
            self._drop(chan, key)  # an expired entry not swept yet
            entry = _Entry(chan.next_seq, publication, 0.0, write.version, write.version_epoch)
            chan.next_seq += 1
            chan.entries[key] = entry
            chan.order.append((entry.seq, key))
            if store.key_ttl:
                self._expire_later(channel, key, entry, now + store.key_ttl)
        chan.by_score = None
        chan.stream.append(publication)
        while len(chan.stream) > store.stream_size:
            chan.stream.popleft()
        chan.stream_expire_at = now + store.stream_ttl
        chan.meta_expire_at = now + max(store.meta_ttl, store.stream_ttl, store.key_ttl)

    def _drop(self, chan: _Map, key: str) -> None:
        if chan.entries.pop(key, None) is None:
            return
        chan.stale += 1
        if chan.stale > 64 and chan.stale > len(chan.entries):
            # Compact: same sequence numbers (cursors stay valid), no stale items.
            chan.order = sorted((entry.seq, k) for k, entry in chan.entries.items())
            chan.stale = 0

    def _expire_later(self, channel: str, key: str, entry: _Entry, at: float) -> None:
        entry.expire_at = at
        heapq.heappush(self._expiry, (at, channel, key))

    # --- reads -----------------------------------------------------------------------

    async def read_state(
        self,
        channel: str,
        store: MapStore,
        *,
        cursor: str = "",
        limit: int = 0,
        key: str = "",
        asc: bool = False,
        revision: StreamPosition | None = None,
    ) -> StatePage:
        now = self._clock()
        chan = self._live(channel, now, store)
        position = StreamPosition(chan.top, chan.epoch)
        if revision is not None and revision.epoch and revision.epoch != chan.epoch:
            raise EpochMismatch(channel, position)
        if key:
            entry = chan.entries.get(key)
            alive = entry is not None and not (entry.expire_at and entry.expire_at <= now)
            return StatePage([entry.publication] if entry and alive else [], "", position)
        limit = limit if limit > 0 else len(chan.entries) or 1
        upto = revision.offset if revision is not None else None
        if store.ordered:
            return self._ordered_page(chan, cursor, limit, asc, upto, now, position)
        start = bisect.bisect_right(chan.order, (_cursor_seq(cursor), "\U0010ffff"))
        entries: list[Publication] = []
        scanned = 0
        order = chan.order
        index = start
        last_seq = -1
        while index < len(order) and scanned < limit:
            seq, k = order[index]
            index += 1
            entry = chan.entries.get(k)
            if entry is None or entry.seq != seq:
                continue  # stale: the key went (or came back later)
            scanned += 1
            last_seq = seq
            if entry.expire_at and entry.expire_at <= now:
                continue
            if upto is not None and entry.publication.offset > upto:
                continue  # Rule 2 of engines/maps.py: the stream brings it
            entries.append(entry.publication)
        more = any(
            (e := chan.entries.get(k)) is not None and e.seq == seq for seq, k in order[index:]
        )
        return StatePage(entries, str(last_seq) if more else "", position)

    def _ordered_page(
        self,
        chan: _Map,
        cursor: str,
        limit: int,
        asc: bool,
        upto: int | None,
        now: float,
        position: StreamPosition,
    ) -> StatePage:
        if chan.by_score is None:
            chan.by_score = sorted((e.publication.score, k) for k, e in chan.entries.items())
        view = chan.by_score
        after = _cursor_score(cursor)
        if asc:
            start = bisect.bisect_right(view, after) if after is not None else 0
            window = view[start : start + limit]
            more = start + limit < len(view)
        else:
            end = bisect.bisect_left(view, after) if after is not None else len(view)
            window = view[max(0, end - limit) : end][::-1]
            more = end - limit > 0
        entries = []
        for _, k in window:
            entry = chan.entries[k]
            if entry.expire_at and entry.expire_at <= now:
                continue
            if upto is not None and entry.publication.offset > upto:
                continue
            entries.append(entry.publication)
        next_cursor = f"{window[-1][0]}:{window[-1][1]}" if more and window else ""
        return StatePage(entries, next_cursor, position)

    async def read_stream(self, channel: str, store: MapStore, query: HistoryQuery) -> HistoryPage:
        now = self._clock()
        chan = self._live(channel, now, store)
        position = StreamPosition(chan.top, chan.epoch)
        return read_page(channel, chan.stream, position, query)

    async def stats(self, channel: str, store: MapStore) -> int:
        chan = self._maps.get(channel)
        if chan is None:
            return 0
        now = self._clock()
        return sum(1 for e in chan.entries.values() if not (e.expire_at and e.expire_at <= now))

    async def clear(self, channel: str) -> None:
        self._maps.pop(channel, None)
        self._stores.pop(channel, None)

    def _live(self, channel: str, now: float, store: MapStore) -> _Map:
        """The channel's map with expiry applied, created (new epoch) when gone."""
        self._stores[channel] = store
        chan = self._maps.get(channel)
        if chan is not None and chan.meta_expire_at <= now and not chan.entries:
            del self._maps[channel]
            chan = None
        if chan is None:
            lifetime = max(store.meta_ttl, store.stream_ttl, store.key_ttl)
            chan = self._maps[channel] = _Map(epoch=new_epoch(), meta_expire_at=now + lifetime)
        elif chan.stream and chan.stream_expire_at <= now:
            chan.stream.clear()
        return chan

    # --- housekeeping ----------------------------------------------------------------

    def sweep(self) -> int:
        """Remove expired keys (each removal delivered) and idle channels; the count."""
        now = self._clock()
        removed = 0
        heap = self._expiry
        while heap and heap[0][0] <= now:
            at, channel, key = heapq.heappop(heap)
            chan = self._maps.get(channel)
            entry = chan.entries.get(key) if chan is not None else None
            if chan is None or entry is None or entry.expire_at != at:
                continue  # renewed, removed or gone meanwhile
            store = self._stores.get(channel) or MapStore()
            gone = Publication(key=key, removed=True)
            self._apply(channel, chan, gone, entry, store, MapWrite(), now)
            removed += 1
            if self._handler is not None:
                position = StreamPosition(chan.top, chan.epoch)
                self._handler.handle_publication(channel, gone, position)
        for channel in [c for c, m in self._maps.items() if m.meta_expire_at <= now]:
            if not self._maps[channel].entries:
                del self._maps[channel]
                self._stores.pop(channel, None)
        for idem in [k for k, (_, until) in self._idempotency.items() if until <= now]:
            del self._idempotency[idem]
        return removed

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.sweep()


def _refused(publication: Publication, existing: _Entry | None, write: MapWrite) -> str:
    """Why this write does nothing (a SUPPRESS_* reason), or ""."""
    if publication.removed:
        return SUPPRESS_KEY_NOT_FOUND if existing is None else ""
    if write.key_mode == "if_new" and existing is not None:
        return SUPPRESS_KEY_EXISTS
    if write.key_mode == "if_exists" and existing is None:
        return SUPPRESS_KEY_NOT_FOUND
    if (
        write.version
        and existing is not None
        and existing.version_epoch == write.version_epoch
        and write.version <= existing.version
    ):
        return SUPPRESS_VERSION
    return ""


def _cursor_seq(cursor: str) -> int:
    """The sequence number an unordered cursor names (-1: from the start)."""
    try:
        return int(cursor) if cursor else -1
    except ValueError:
        return -1


def _cursor_score(cursor: str) -> tuple[int, str] | None:
    """The (score, key) an ordered cursor names; None: from the start."""
    score, sep, key = cursor.partition(":")
    if not sep:
        return None
    try:
        return int(score), key
    except ValueError:
        return None
