"""The in-memory engine: one process, no network, the hub called back synchronously.

Rule: ``publish`` assigns the offset, stores, and delivers before it returns,
with no await in between, so a subscriber that reads history and then goes
live on the same turn can never miss or repeat a publication.

A channel stream keeps at most ``size`` publications; the whole stream's
publications expire ``ttl`` seconds after the last publish (as Centrifugo's
history_ttl), and its position (epoch, top offset) ``meta_ttl`` seconds after
it. A stream created anew gets a new epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

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

#: How long a publish idempotency key is remembered (Centrifugo: 5 minutes).
IDEMPOTENCY_WINDOW = 300.0
#: How often expired streams, presence and idempotency keys are swept.
SWEEP_INTERVAL = 5.0


def new_epoch() -> str:
    return secrets.token_urlsafe(6)


@dataclass(slots=True)
class _Stream:
    epoch: str
    top: int = 0
    publications: deque[Publication] = field(default_factory=deque)
    expire_at: float = 0.0  # publications are dropped after this
    meta_expire_at: float = 0.0  # the whole stream (position) is dropped after this


class MemoryEngine:
    """Engine for a single node; state lives in this process and dies with it."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._handler: EventHandler | None = None
        self._streams: dict[str, _Stream] = {}
        self._presence: dict[str, dict[str, tuple[ClientInfo, float]]] = {}
        self._idempotency: dict[tuple[str, str], tuple[PublishResult, float]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="memory-engine-sweep")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

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
            position = StreamPosition(stream.top, stream.epoch)
        result = PublishResult(position)
        if idempotency_key:
            self._idempotency[(channel, idempotency_key)] = (result, now + IDEMPOTENCY_WINDOW)
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
        since = query.since
        if since is not None and since.epoch and since.epoch != stream.epoch:
            raise EpochMismatch(channel, position)
        if query.limit == 0:
            return HistoryPage([], position)
        kept = stream.publications
        if query.reverse:
            upper = since.offset if since is not None else stream.top + 1
            selected = [p for p in reversed(kept) if p.offset < upper]
        else:
            lower = since.offset if since is not None else 0
            selected = [p for p in kept if p.offset > lower]
        if query.limit > 0:
            selected = selected[: query.limit]
        return HistoryPage(selected, position)

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
        elif stream.expire_at <= now and stream.publications:
            stream.publications.clear()
        return stream

    # --- presence --------------------------------------------------------------------

    async def add_presence(
        self, channel: str, client_id: str, info: ClientInfo, expire: float
    ) -> None:
        self._presence.setdefault(channel, {})[client_id] = (info, self._clock() + expire)

    async def remove_presence(self, channel: str, client_id: str) -> None:
        members = self._presence.get(channel)
        if members is not None:
            members.pop(client_id, None)
            if not members:
                del self._presence[channel]

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        now = self._clock()
        members = self._presence.get(channel, {})
        return {cid: info for cid, (info, until) in members.items() if until > now}

    async def presence_stats(self, channel: str) -> PresenceStats:
        members = await self.presence(channel)
        return PresenceStats(len(members), len({info.user for info in members.values()}))

    # --- housekeeping ----------------------------------------------------------------

    def sweep(self) -> None:
        """Drop expired streams, presence entries and idempotency keys."""
        now = self._clock()
        for channel in [c for c, s in self._streams.items() if s.meta_expire_at <= now]:
            del self._streams[channel]
        for stream in self._streams.values():
            if stream.expire_at <= now:
                stream.publications.clear()
        for channel, members in list(self._presence.items()):
            for cid in [cid for cid, (_, until) in members.items() if until <= now]:
                del members[cid]
            if not members:
                del self._presence[channel]
        for key in [k for k, (_, until) in self._idempotency.items() if until <= now]:
            del self._idempotency[key]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.sweep()
