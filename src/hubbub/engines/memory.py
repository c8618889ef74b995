"""The in-memory engine: one process, no network, the hub called back synchronously.

Rule: ``publish`` assigns the offset, stores, and delivers before it returns,
with no await in between, so a subscriber that reads history and then goes
live on the same turn can never miss or repeat a publication.

A channel stream keeps at most ``size`` publications; the whole stream's
publications expire ``ttl`` seconds after the last publish (as Centrifugo's
history_ttl), and its position (epoch, top offset) ``meta_ttl`` seconds after
it. A stream created anew gets a new epoch.

Housekeeping is proportional to what expires, not to what is kept: every
expiring record (a stream's publications, a stream's position, a presence
entry, an idempotency key) has at most one entry in one expiry heap. An
expiry that moves later (each publish, each presence refresh) leaves the heap
alone; when the old entry comes due, the record is found alive and the entry
is pushed again at the new time. So a sweep pops only entries that are due.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Reversible

import msgspec

from hubbub.engines.base import (
    EpochMismatch,
    EventHandler,
    HistoryOptions,
    HistoryPage,
    HistoryQuery,
    PresenceStats,
    PublishResult,
)
from hubbub.protocol.messages import ClientInfo, Publication, StreamPosition
from hubbub.tasks import stop_task

#: How long a publish idempotency key is remembered (Centrifugo: 5 minutes).
IDEMPOTENCY_WINDOW = 300.0
#: How often expired streams, presence and idempotency keys are swept.
SWEEP_INTERVAL = 5.0


def new_epoch() -> str:
    return secrets.token_urlsafe(6)


def read_page(
    channel: str, kept: Reversible[Publication], position: StreamPosition, query: HistoryQuery
) -> HistoryPage:
    """``query``'s page of a stream kept in memory (channels and map streams share it).

    ``kept`` runs oldest first; ``position`` is the stream's top. Raises
    EpochMismatch when ``query.since`` names another life of the stream.
    """
    since = query.since
    if since is not None and since.epoch and since.epoch != position.epoch:
        raise EpochMismatch(channel, position)
    if query.limit == 0:
        return HistoryPage([], position)
    if query.reverse:
        upper = since.offset if since is not None else position.offset + 1
        selected = [p for p in reversed(kept) if p.offset < upper]
    else:
        lower = since.offset if since is not None else 0
        selected = [p for p in kept if p.offset > lower]
    if query.limit > 0:
        selected = selected[: query.limit]
    return HistoryPage(selected, position)


class _Stream(msgspec.Struct):
    epoch: str
    top: int = 0
    publications: deque[Publication] = msgspec.field(default_factory=deque)
    expire_at: float = 0.0  # publications are dropped after this
    meta_expire_at: float = 0.0  # the whole stream (position) is dropped after this
    # The times of this stream's pending heap entries (0: none pending).
    due_publications: float = 0.0
    due_meta: float = 0.0


class _Member(msgspec.Struct):
    """One presence entry."""

    info: ClientInfo
    until: float
    due: float = 0.0  # its pending heap entry (0: none)


# Heap entry kinds.
_PUBLICATIONS, _META, _PRESENCE, _IDEMPOTENCY = range(4)
_HeapKey = str | tuple[str, str]


class MemoryEngine:
    """Engine for a single node; state lives in this process and dies with it."""

    #: Publishing completes synchronously: nothing to gain from overlapping publishes.
    pipelined = False

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._handler: EventHandler | None = None
        self._streams: dict[str, _Stream] = {}
        self._presence: dict[str, dict[str, _Member]] = {}
        self._idempotency: dict[tuple[str, str], tuple[PublishResult, float]] = {}
        # (due time, tie-breaker, kind, key): at most one pending entry per record.
        self._heap: list[tuple[float, int, int, _HeapKey]] = []
        self._counter = itertools.count()
        self._swept = 0  # heap entries the last sweep looked at
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="memory-engine-sweep")

    async def close(self) -> None:
        await stop_task(self._sweeper)
        self._sweeper = None

    @property
    def available(self) -> bool:
        return True  # nothing to reach: the engine is this process

    async def publish_control(self, data: bytes, node: str = "") -> None:
        """The only node is this one: deliver unless addressed to another node."""
        handler = self._handler
        if handler is not None and (not node or node == handler.node_id):
            handler.handle_control(data)

    async def subscribe(self, channel: str) -> None:
        return None

    async def unsubscribe(self, channel: str) -> None:
        return None

    # --- publications ----------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        publication: Publication,
        history: HistoryOptions,
        *,
        idempotency_key: str = "",
    ) -> PublishResult:
        now = self._clock()
        if idempotency_key:
            seen = self._idempotency.get((channel, idempotency_key))
            if seen is not None and seen[1] > now:
                return PublishResult(seen[0].position, duplicate=True)
        position = StreamPosition()
        if history.enabled:
            stream = self._live_stream(channel, now, history)
            stream.top += 1
            publication.offset = stream.top
            stream.publications.append(publication)
            if len(stream.publications) > history.size:
                stream.publications.popleft()
            stream.expire_at = now + history.ttl
            stream.meta_expire_at = now + max(history.meta_ttl, history.ttl)
            self._schedule_stream(channel, stream)
            position = StreamPosition(stream.top, stream.epoch)
        result = PublishResult(position)
        if idempotency_key:
            until = now + IDEMPOTENCY_WINDOW
            self._idempotency[(channel, idempotency_key)] = (result, until)
            self._push(until, _IDEMPOTENCY, (channel, idempotency_key))
        if self._handler is not None:
            self._handler.handle_publication(channel, publication, position)
        return result

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        if self._handler is not None:
            self._handler.handle_join(channel, info)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        if self._handler is not None:
            self._handler.handle_leave(channel, info)

    # --- history ---------------------------------------------------------------------

    async def history(
        self, channel: str, query: HistoryQuery, history: HistoryOptions
    ) -> HistoryPage:
        now = self._clock()
        if not history.enabled and channel not in self._streams:
            return HistoryPage([], StreamPosition())
        stream = self._live_stream(channel, now, history)
        position = StreamPosition(stream.top, stream.epoch)
        return read_page(channel, stream.publications, position, query)

    async def remove_history(self, channel: str) -> None:
        stream = self._streams.get(channel)
        if stream is not None:
            stream.publications.clear()

    def _live_stream(self, channel: str, now: float, history: HistoryOptions) -> _Stream:
        """The channel's stream with expiry applied, created (with a new epoch) if gone.

        Reading creates the stream too: a subscriber is told an epoch, and that
        epoch must still be the stream's when the first publication comes.
        """
        stream = self._streams.get(channel)
        if stream is not None and stream.meta_expire_at <= now:
            del self._streams[channel]
            stream = None
        if stream is None:
            lifetime = max(history.meta_ttl, history.ttl)
            stream = _Stream(epoch=new_epoch(), meta_expire_at=now + lifetime)
            self._streams[channel] = stream
            self._schedule_stream(channel, stream)
        elif stream.expire_at <= now and stream.publications:
            stream.publications.clear()
        return stream

    # --- presence --------------------------------------------------------------------

    async def add_presence(
        self, channel: str, client_id: str, info: ClientInfo, expire: float
    ) -> None:
        members = self._presence.setdefault(channel, {})
        until = self._clock() + expire
        member = members.get(client_id)
        if member is None:
            member = members[client_id] = _Member(info, until)
        else:
            member.info, member.until = info, until
        if not member.due or member.due > until:
            member.due = until
            self._push(until, _PRESENCE, (channel, client_id))

    async def remove_presence(self, channel: str, client_id: str) -> None:
        members = self._presence.get(channel)
        if members is not None:
            members.pop(client_id, None)
            if not members:
                del self._presence[channel]

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        now = self._clock()
        members = self._presence.get(channel, {})
        return {cid: m.info for cid, m in members.items() if m.until > now}

    async def presence_stats(self, channel: str) -> PresenceStats:
        members = await self.presence(channel)
        return PresenceStats(len(members), len({info.user for info in members.values()}))

    # --- housekeeping ----------------------------------------------------------------

    def _push(self, due: float, kind: int, key: _HeapKey) -> None:
        heapq.heappush(self._heap, (due, next(self._counter), kind, key))

    def _schedule_stream(self, channel: str, stream: _Stream) -> None:
        """Make sure a heap entry is pending at or before each of the stream's expiries."""
        if stream.publications and (
            not stream.due_publications or stream.due_publications > stream.expire_at
        ):
            stream.due_publications = stream.expire_at
            self._push(stream.expire_at, _PUBLICATIONS, channel)
        if not stream.due_meta or stream.due_meta > stream.meta_expire_at:
            stream.due_meta = stream.meta_expire_at
            self._push(stream.meta_expire_at, _META, channel)

    def sweep(self) -> None:
        """Drop expired streams, presence entries and idempotency keys.

        Only heap entries that are due are looked at; one whose record moved
        its expiry later is pushed again at the new time.
        """
        now = self._clock()
        heap = self._heap
        swept = 0
        while heap and heap[0][0] <= now:
            due, _, kind, key = heapq.heappop(heap)
            swept += 1
            if kind == _IDEMPOTENCY:
                assert isinstance(key, tuple)
                seen = self._idempotency.get(key)
                if seen is not None and seen[1] <= now:
                    del self._idempotency[key]
            elif kind == _PRESENCE:
                assert isinstance(key, tuple)
                self._expire_member(key[0], key[1], due, now)
            else:
                assert isinstance(key, str)
                self._expire_stream(key, kind, due, now)
        self._swept = swept

    def _expire_member(self, channel: str, client_id: str, due: float, now: float) -> None:
        members = self._presence.get(channel)
        member = members.get(client_id) if members is not None else None
        if members is None or member is None or member.due != due:
            return  # removed, or a newer entry is pending
        if member.until <= now:
            del members[client_id]
            if not members:
                del self._presence[channel]
        else:
            member.due = member.until
            self._push(member.until, _PRESENCE, (channel, client_id))

    def _expire_stream(self, channel: str, kind: int, due: float, now: float) -> None:
        stream = self._streams.get(channel)
        if stream is None:
            return
        if kind == _META:
            if stream.due_meta != due:
                return
            stream.due_meta = 0.0
            if stream.meta_expire_at <= now:
                del self._streams[channel]
                return
        else:
            if stream.due_publications != due:
                return
            stream.due_publications = 0.0
            if stream.expire_at <= now:
                stream.publications.clear()
        self._schedule_stream(channel, stream)

    def statistics(self) -> dict[str, int]:
        """Sizes of what is kept, and how many heap entries the last sweep looked at."""
        return {
            "streams": len(self._streams),
            "presence_channels": len(self._presence),
            "idempotency_keys": len(self._idempotency),
            "heap": len(self._heap),
            "last_sweep_visited": self._swept,
        }

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.sweep()
