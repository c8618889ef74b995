"""The Redis MapEngine: map channels shared by every node, state and stream in Redis.

Rule 1: every write and every expiry runs in one Lua script on the channel's
shard (redis_maps_scripts.py), which assigns the offset, changes the state,
appends to the change stream and PUBLISHes the change; nodes subscribe to a
channel's changes through a RedisEngine of their own (its pub/sub reader,
reconnects and ``handle_broker_lost``), under the prefix ``<prefix>.map``, so
map changes reach the hub's channel table like any publication.
Rule 2: the change stream has the stream engine's layout (meta ``e``/``s``,
entries ``<offset>-1``), so it is read with the stream engine's HISTORY
script: catch-up and recovery after a node dies are exact (the offset, the
epoch and the entries are in Redis, not in the node).
Rule 3: state values carry the offset and epoch of their last change
(``<offset>:<epoch>:<json>``, Centrifugo's format): a page read with a
revision leaves out what changed after it in the same epoch.
Rule 4: each node sweeps due key TTLs every ``cleanup_interval``: the shard's
``P:cleanup:channels`` names the channels with keys due, and the sweep
script removes them as changes (several nodes sweeping is harmless: the
script is atomic, a key is removed once).
Rule 5: Redis failures are EngineUnavailable (one log line when the sweep
starts failing and one when it recovers).
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from redis.exceptions import RedisError

from hubbub.engines.base import (
    EngineUnavailable,
    EpochMismatch,
    EventHandler,
    HistoryPage,
    HistoryQuery,
)
from hubbub.engines.maps import IDEMPOTENCY_WINDOW, MapResult, MapStore, MapWrite, StatePage
from hubbub.engines.memory import new_epoch
from hubbub.engines.redis import RedisEngine, stream_page, stream_read_args
from hubbub.engines.redis_maps_scripts import (
    MAP_EXPIRE,
    MAP_PUBLISH,
    MAP_READ,
    MAP_READ_ORDERED,
)
from hubbub.engines.redis_scripts import HISTORY
from hubbub.engines.redis_shard import OUTAGE_ERRORS, ServerShard, Shard
from hubbub.protocol.messages import Publication, StreamPosition
from hubbub.tasks import stop_task

log = logging.getLogger("hubbub.engines.redis_maps")

#: How often due key TTLs are swept (Centrifugo's cleanup_interval), and how many
#: keys per channel per sweep (cleanup_batch_size).
CLEANUP_INTERVAL = 1.0
CLEANUP_BATCH = 100
CHANNELS_PER_SWEEP = 1000  # channels with due keys, per shard per sweep
# The shards' outages (uvloop's RuntimeError of a reset transport included), and
# any other Redis error: a map write never ends in a traceback.
_OUTAGE: tuple[type[BaseException], ...] = (*OUTAGE_ERRORS, RedisError, ConnectionError)
_publication = msgspec.json.Decoder(Publication)
_encode = msgspec.json.encode


class RedisMapEngine:
    """MapEngine over one or more Redis servers (a channel lives on one of them)."""

    def __init__(
        self,
        addresses: Sequence[str] = ("127.0.0.1:6379",),
        *,
        prefix: str = "hubbub",
        db: int = 0,
        user: str = "",
        password: str = "",
        connect_timeout: float = 1.0,
        io_timeout: float = 4.0,
        clock: Callable[[], float] = time.time,
        cleanup_interval: float = CLEANUP_INTERVAL,
        cleanup_batch_size: int = CLEANUP_BATCH,
        idempotent_result_ttl: float = IDEMPOTENCY_WINDOW,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.prefix = prefix
        self._clock = clock
        self._cleanup_interval = cleanup_interval  # 0: no sweeping on this node
        self._cleanup_batch = max(cleanup_batch_size, 1)
        self._idempotent_ttl = max(math.ceil(idempotent_result_ttl), 1)
        # Pub/sub, shards and connections: a RedisEngine of the map broker's own.
        self._broker = RedisEngine(
            addresses,
            prefix=f"{prefix}.map",
            db=db,
            user=user,
            password=password,
            connect_timeout=connect_timeout,
            io_timeout=io_timeout,
            tls=tls,
        )
        self._scripts: dict[int, dict[str, Any]] = {}  # per shard client: name -> script
        self._sweeper: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self, handler: EventHandler) -> None:
        await self._broker.start(handler)
        if self._sweeper is None and self._cleanup_interval > 0:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="redis-maps-sweep")

    async def close(self) -> None:
        await stop_task(self._sweeper)
        self._sweeper = None
        await self._broker.close()

    async def subscribe(self, channel: str) -> None:
        await self._broker.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self._broker.unsubscribe(channel)

    # --- shards and keys -----------------------------------------------------------------

    def _clients(self) -> list[Any]:
        """The command client of every shard."""
        return [_server(shard).client for shard in self._broker._shards]

    def _client(self, channel: str) -> Any:
        return _server(self._broker._shard(channel)).client

    def _script(self, client: Any, name: str) -> Any:
        scripts = self._scripts.setdefault(id(client), {})
        script = scripts.get(name)
        if script is None:
            source = {
                "publish": MAP_PUBLISH,
                "expire": MAP_EXPIRE,
                "read": MAP_READ,
                "read_ordered": MAP_READ_ORDERED,
                "history": HISTORY,
            }[name]
            script = scripts[name] = client.register_script(source)
        return script

    def _key(self, kind: str, channel: str) -> str:
        return f"{self.prefix}:{kind}:{channel}"

    def _keys(self, channel: str) -> list[str]:
        """state, order, expire, state meta, meta, stream."""
        return [
            self._key("state", channel),
            self._key("state:order", channel),
            self._key("state:expire", channel),
            self._key("state:meta", channel),
            self._key("meta", channel),
            self._key("stream", channel),
        ]

    def _registry(self) -> str:
        return f"{self.prefix}:cleanup:channels"

    async def _run(self, channel: str, name: str, keys: list[str], args: list[Any]) -> Any:
        client = self._client(channel)
        try:
            return await self._script(client, name)(keys=keys, args=args)
        except _OUTAGE as exc:
            raise EngineUnavailable(f"redis map {channel}: {exc}") from exc

    # --- writes ----------------------------------------------------------------------

    async def publish(
        self, channel: str, publication: Publication, store: MapStore, write: MapWrite
    ) -> MapResult:
        publication.offset = 0
        state, order, expire, state_meta, meta, stream = self._keys(channel)
        idempotency = (
            f"{self.prefix}.result.{channel}.{write.idempotency_key}"
            if write.idempotency_key
            else meta
        )
        keys = [state, order, expire, state_meta, meta, stream, idempotency, self._registry()]
        args: list[Any] = [
            publication.key,
            _encode(publication),
            "1" if publication.removed else "0",
            write.key_mode,
            write.version,
            write.version_epoch,
            _ms(store.key_ttl),
            store.stream_size,
            _ms(store.stream_ttl),
            _meta_ttl(store),
            new_epoch(),
            self._broker._redis_channel(channel),
            self._idempotent_ttl if write.idempotency_key else 0,
            int(self._clock() * 1000),
            "1" if store.ordered else "0",
            publication.score,
            "1" if write.refresh_ttl_on_suppress else "0",
            channel,
        ]
        reason, top, epoch = await self._run(channel, "publish", keys, args)
        position = StreamPosition(int(top), _text(epoch))
        if reason:
            return MapResult(position, True, _text(reason))
        publication.offset = position.offset
        return MapResult(position)

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
        state, order, expire, _, meta, _ = self._keys(channel)
        now = int(self._clock() * 1000)
        limit = limit if limit > 0 else 1000
        check = revision.epoch if revision is not None else ""
        if store.ordered and not key:
            score, _, after = cursor.partition(":")
            args: list[Any] = [
                score if cursor else "",
                after,
                limit,
                now,
                "1" if asc else "0",
                new_epoch(),
                _meta_ttl(store),
                check,
            ]
            top, epoch, mismatch, more, flat, last_score, last_key = await self._run(
                channel, "read_ordered", [state, order, expire, meta], args
            )
            values = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 3)]
            next_cursor = f"{_text(last_score)}:{_text(last_key)}" if more else ""
        else:
            args = [cursor or "0", limit, now, new_epoch(), _meta_ttl(store), check, key]
            top, epoch, mismatch, scan, flat = await self._run(
                channel, "read", [state, expire, meta], args
            )
            values = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
            next_cursor = "" if key or _text(scan) == "0" else _text(scan)
        position = StreamPosition(int(top), _text(epoch))
        if mismatch:
            raise EpochMismatch(channel, position)
        entries = []
        for _, value in values:
            publication, entry_epoch = _entry(value)
            if (
                revision is not None
                and entry_epoch == revision.epoch
                and publication.offset > revision.offset
            ):
                continue  # changed after the revision: the stream brings it
            entries.append(publication)
        return StatePage(entries, next_cursor, position)

    async def read_stream(self, channel: str, store: MapStore, query: HistoryQuery) -> HistoryPage:
        keep = max(store.meta_ttl, store.stream_ttl, store.key_ttl)
        args = stream_read_args(query, True, keep)
        keys = [self._key("stream", channel), self._key("meta", channel)]
        reply = await self._run(channel, "history", keys, args)
        return stream_page(channel, reply)

    async def stats(self, channel: str, store: MapStore) -> int:
        client = self._client(channel)
        now = int(self._clock() * 1000)
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.hlen(self._key("state", channel))
                pipe.zcount(self._key("state:expire", channel), "-inf", now)
                total, due = await pipe.execute()
        except _OUTAGE as exc:
            raise EngineUnavailable(f"redis map {channel}: {exc}") from exc
        return max(int(total) - int(due), 0)

    async def clear(self, channel: str) -> None:
        client = self._client(channel)
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(*self._keys(channel))
                pipe.zrem(self._registry(), channel)
                await pipe.execute()
        except _OUTAGE as exc:
            raise EngineUnavailable(f"redis map {channel}: {exc}") from exc

    # --- key TTLs (Rule 4) -------------------------------------------------------------

    async def sweep(self) -> int:
        """Remove every due key of every shard's registered channels; how many."""
        removed = 0
        for client in self._clients():
            now = int(self._clock() * 1000)
            try:
                due = await client.zrangebyscore(
                    self._registry(), "-inf", now, 0, CHANNELS_PER_SWEEP
                )
            except _OUTAGE as exc:
                raise EngineUnavailable(f"redis map sweep: {exc}") from exc
            for raw in due:
                channel = _text(raw)
                keys = [*self._keys(channel), self._registry()]
                args = [now, self._cleanup_batch, self._broker._redis_channel(channel), channel]
                count, _ = await self._run(channel, "expire", keys, args)
                removed += int(count)
        return removed

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._cleanup_interval)
            try:
                await self.sweep()
            except EngineUnavailable as exc:
                if not self._failing:
                    self._failing = True
                    log.warning("map key expiry paused: %s", exc)
                continue
            if self._failing:
                self._failing = False
                log.info("map key expiry resumed")


def _entry(value: bytes) -> tuple[Publication, str]:
    """A state value ``<offset>:<epoch>:<json>`` (Rule 3)."""
    first = value.index(b":")
    second = value.index(b":", first + 1)
    publication = _publication.decode(value[second + 1 :])
    publication.offset = int(value[:first])
    return publication, value[first + 1 : second].decode()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000)


def _meta_ttl(store: MapStore) -> int:
    """How long the position lives: with the keys when they expire, else for ever (0)."""
    if not store.key_ttl:
        return 0
    return _ms(max(store.meta_ttl, store.stream_ttl, store.key_ttl))


def _server(shard: Shard) -> ServerShard:
    """The map broker runs on servers (its RedisEngine gets no cluster seeds)."""
    assert isinstance(shard, ServerShard)
    return shard
