"""The Redis engine: several nodes share channels, history and presence through Redis.

Rule 1: every write that must be ordered runs in one Lua script on the channel's
shard (see redis_scripts.py); the script also PUBLISHes the event, so every
node sees a channel's publications in offset order.
Rule 2: a node SUBSCRIBEs a channel's Redis channel only while it has a local
subscriber, on one pub/sub connection per shard, and ``subscribe`` returns only
once Redis confirmed the subscription (so a history read after it cannot miss
a publication).
Rule 3: when a pub/sub connection breaks, events may be lost: the node is told
(``handle_broker_lost``) at once, and the connection is re-made with backoff.
Rule 4: a channel lives on one shard, chosen by jump hash of its CRC32, so
every node agrees without talking to each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError

from hubbub.engines.base import (
    EpochMismatch,
    EventHandler,
    HistoryOptions,
    HistoryPage,
    HistoryQuery,
    PresenceStats,
    PublishResult,
)
from hubbub.engines.redis_scripts import HISTORY, PRESENCE_ADD, PRESENCE_GET, PUBLISH
from hubbub.protocol.messages import ClientInfo, Publication, StreamPosition

log = logging.getLogger("hubbub.engines.redis")

#: How long a publish idempotency key is remembered (as the memory engine).
IDEMPOTENCY_WINDOW = 300
#: Silence on a pub/sub connection after which it is pinged, and declared dead.
PING_AFTER = 5.0
DEAD_AFTER = 12.0
#: Command connections per shard (per node); more concurrent commands queue.
MAX_CONNECTIONS = 32
#: Reconnect backoff bounds, seconds.
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0

_publication_decoder = msgspec.json.Decoder(Publication)
_info_decoder = msgspec.json.Decoder(ClientInfo)
_encode = msgspec.json.encode
_Arg = bytes | str | int | float


def normalize_address(address: str) -> str:
    """``host:port`` or a ``redis://`` / ``rediss://`` / ``unix://`` URL, as a URL."""
    address = address.strip()
    if "://" in address:
        return address
    return f"redis://{address}"


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash (Lamping & Veach): ``key`` -> 0..buckets-1."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def shard_index(channel: str, shards: int) -> int:
    """The shard of ``channel`` among ``shards``; the same on every node."""
    if shards == 1:
        return 0
    return jump_hash(zlib.crc32(channel.encode()), shards)


def _new_epoch() -> str:
    return secrets.token_urlsafe(6)


def _position(text: bytes) -> StreamPosition:
    offset, _, epoch = text.partition(b":")
    return StreamPosition(int(offset), epoch.decode())


class _Shard:
    """One Redis server: a command pool, one pub/sub connection and its reader task."""

    def __init__(self, engine: RedisEngine, url: str, options: dict[str, Any]) -> None:
        self.engine = engine
        self.url = url
        # Commands wait for a free connection rather than open without bound.
        self.pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, **options
        )
        self.client: aioredis.Redis = aioredis.Redis(connection_pool=self.pool)
        self.publish_script = self.client.register_script(PUBLISH)
        self.history_script = self.client.register_script(HISTORY)
        self.presence_add = self.client.register_script(PRESENCE_ADD)
        self.presence_get = self.client.register_script(PRESENCE_GET)
        self.channels: set[bytes] = set()  # Redis channels this node wants
        self._acks: dict[bytes, list[asyncio.Future[None]]] = {}
        self._conn: AbstractConnection | None = None
        self._connected = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._run(), name=f"redis-pubsub {self.url}")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        await self.client.aclose()
        await self.pool.disconnect()

    # --- interest --------------------------------------------------------------------

    async def subscribe(self, name: bytes, wait: float) -> None:
        self.channels.add(name)
        try:
            async with asyncio.timeout(wait):
                await self._connected.wait()
                conn = self._conn
                assert conn is not None
                ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._acks.setdefault(name, []).append(ack)
                await conn.send_command("SUBSCRIBE", name)
                await ack
        except TimeoutError as exc:
            raise ConnectionError(f"redis {self.url}: no pub/sub connection") from exc

    async def unsubscribe(self, name: bytes) -> None:
        self.channels.discard(name)
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(RedisError, OSError):
                await conn.send_command("UNSUBSCRIBE", name)

    # --- the reader ------------------------------------------------------------------

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while True:
            conn = self.pool.make_connection()  # type: ignore[no-untyped-call]
            was_live = False
            try:
                await conn.connect()
                if self.channels:
                    await conn.send_command("SUBSCRIBE", *self.channels)
                self._conn = conn
                self._connected.set()
                was_live = True
                delay = BACKOFF_MIN
                log.info("redis %s: pub/sub connected", self.url)
                await self._read(conn)
            except (RedisError, OSError, RuntimeError) as exc:
                # RuntimeError: on uvloop, redis-py writing to a connection the peer reset
                # right after accepting it (an L4 proxy with no backend) raises "the handler
                # is closed". Uncaught, it ended this task: no pub/sub until a restart.
                if was_live:
                    log.warning("redis %s: pub/sub connection lost: %s", self.url, exc)
            finally:
                self._conn = None
                self._connected.clear()
                for waiters in self._acks.values():
                    for ack in waiters:
                        if not ack.done():
                            ack.set_exception(ConnectionError(f"redis {self.url}: connection lost"))
                self._acks.clear()
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
            if was_live and self.channels:
                self.engine.broker_lost(self.channels)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _read(self, conn: AbstractConnection) -> None:
        silent = 0.0
        dispatch = self.engine.dispatch
        while True:
            message = await conn.read_response(timeout=PING_AFTER, push_request=True)
            if message is None:
                silent += PING_AFTER
                if silent >= DEAD_AFTER:
                    raise ConnectionError("no answer to PING")
                await conn.send_command("PING")
                continue
            silent = 0.0
            kind = message[0]
            if kind == b"message":
                dispatch(message[1], message[2])
            elif kind == b"subscribe":
                waiters = self._acks.pop(message[1], None)
                for ack in waiters or ():
                    if not ack.done():
                        ack.set_result(None)


class RedisEngine:
    """Engine over one or more Redis servers (client-side sharding by channel)."""

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
        presence_ttl: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not addresses:
            raise ValueError("RedisEngine needs at least one address")
        options: dict[str, Any] = {
            "timeout": io_timeout,  # waiting for a free pool connection
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": io_timeout,
            "health_check_interval": 0,
        }
        if db:
            options["db"] = db
        if user:
            options["username"] = user
        if password:
            options["password"] = password
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._shards = [_Shard(self, normalize_address(a), options) for a in addresses]
        self._handler: EventHandler | None = None
        self._channel_prefix = f"{prefix}.channel.".encode()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        for shard in self._shards:
            shard.start()

    async def close(self) -> None:
        for shard in self._shards:
            await shard.close()

    async def subscribe(self, channel: str) -> None:
        await self._shard(channel).subscribe(self._redis_channel(channel), self._connect_timeout)

    async def unsubscribe(self, channel: str) -> None:
        await self._shard(channel).unsubscribe(self._redis_channel(channel))

    # --- keys ------------------------------------------------------------------------

    def _shard(self, channel: str) -> _Shard:
        return self._shards[shard_index(channel, len(self._shards))]

    def shard_url(self, channel: str) -> str:
        """The Redis server that holds ``channel``."""
        return self._shard(channel).url

    def _redis_channel(self, channel: str) -> bytes:
        return self._channel_prefix + channel.encode()

    def _key(self, kind: str, channel: str) -> str:
        return f"{self.prefix}.{kind}.{channel}"

    # --- events from the pub/sub reader ----------------------------------------------

    def dispatch(self, redis_channel: bytes, data: bytes) -> None:
        """Decode one pub/sub message and hand it to the handler."""
        handler = self._handler
        if handler is None or not redis_channel.startswith(self._channel_prefix):
            return
        channel = redis_channel[len(self._channel_prefix) :].decode()
        try:
            kind = data[:1]
            if kind == b"p":
                first = data.index(b":", 1)
                second = data.index(b":", first + 1)
                offset = int(data[1:first])
                publication = _publication_decoder.decode(data[second + 1 :])
                publication.offset = offset
                position = StreamPosition(offset, data[first + 1 : second].decode())
                handler.handle_publication(channel, publication, position)
            elif kind == b"j":
                handler.handle_join(channel, _info_decoder.decode(data[1:]))
            elif kind == b"l":
                handler.handle_leave(channel, _info_decoder.decode(data[1:]))
        except Exception:
            log.exception("redis engine: bad message on %s", channel)

    def broker_lost(self, redis_channels: set[bytes]) -> None:
        handler = self._handler
        if handler is None:
            return
        cut = len(self._channel_prefix)
        channels = [c[cut:].decode() for c in redis_channels]
        try:
            handler.handle_broker_lost(channels)
        except Exception:
            log.exception("redis engine: handle_broker_lost failed")

    # --- publications ----------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        publication: Publication,
        history: HistoryOptions,
        *,
        idempotency_key: str = "",
    ) -> PublishResult:
        shard = self._shard(channel)
        publication.offset = 0
        enabled = history.enabled
        keys = [
            self._key("stream", channel),
            self._key("meta", channel),
            self._key("idem", f"{channel}.{idempotency_key}")
            if idempotency_key
            else self._key("meta", channel),
        ]
        args: list[_Arg] = [
            _encode(publication),
            history.size,
            _ms(history.ttl),
            _ms(max(history.meta_ttl, history.ttl)),
            _new_epoch(),
            self._redis_channel(channel),
            IDEMPOTENCY_WINDOW if idempotency_key else 0,
            1 if enabled else 0,
        ]
        duplicate, position = await shard.publish_script(keys=keys, args=args)
        result = PublishResult(_position(position), duplicate=bool(duplicate))
        publication.offset = result.position.offset
        return result

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self._shard(channel).client.publish(
            self._redis_channel(channel), b"j" + _encode(info)
        )

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self._shard(channel).client.publish(
            self._redis_channel(channel), b"l" + _encode(info)
        )

    # --- history ---------------------------------------------------------------------

    async def history(
        self, channel: str, query: HistoryQuery, history: HistoryOptions
    ) -> HistoryPage:
        since = query.since
        mode, bound = "", ""
        if query.limit != 0:
            if query.reverse:
                if since is None:
                    mode, bound = "r", "+"
                elif since.offset > 1:
                    mode, bound = "r", str(since.offset - 1)
            else:
                mode, bound = "f", str((since.offset if since is not None else 0) + 1)
        args: list[_Arg] = [
            1 if history.enabled else 0,
            _new_epoch(),
            _ms(max(history.meta_ttl, history.ttl)) or 1,
            since.epoch if since is not None else "",
            mode,
            bound,
            query.limit if query.limit > 0 else -1,
        ]
        keys = [self._key("stream", channel), self._key("meta", channel)]
        top, epoch, mismatch, entries = await self._shard(channel).history_script(
            keys=keys, args=args
        )
        if mismatch:
            raise EpochMismatch(channel, StreamPosition(int(top), epoch.decode()))
        publications = []
        for entry_id, fields in entries:
            publication = _publication_decoder.decode(fields[1])
            publication.offset = int(entry_id.partition(b"-")[0])
            publications.append(publication)
        return HistoryPage(publications, StreamPosition(int(top), epoch.decode()))

    async def remove_history(self, channel: str) -> None:
        await self._shard(channel).client.delete(self._key("stream", channel))

    # --- presence --------------------------------------------------------------------

    def _presence_keys(self, channel: str) -> list[str]:
        return [self._key("presence", channel), self._key("presence_exp", channel)]

    async def add_presence(
        self, channel: str, client_id: str, info: ClientInfo, expire: float
    ) -> None:
        ttl = self.presence_ttl or expire
        args: list[_Arg] = [
            client_id,
            _encode(info),
            repr(self._clock() + ttl),
            max(math.ceil(ttl), 1),
        ]
        await self._shard(channel).presence_add(keys=self._presence_keys(channel), args=args)

    async def remove_presence(self, channel: str, client_id: str) -> None:
        hash_key, expiry_key = self._presence_keys(channel)
        async with self._shard(channel).client.pipeline(transaction=True) as pipe:
            pipe.hdel(hash_key, client_id)
            pipe.zrem(expiry_key, client_id)
            await pipe.execute()

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        flat = await self._shard(channel).presence_get(
            keys=self._presence_keys(channel), args=[repr(self._clock())]
        )
        return {flat[i].decode(): _info_decoder.decode(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def presence_stats(self, channel: str) -> PresenceStats:
        members = await self.presence(channel)
        return PresenceStats(len(members), len({info.user for info in members.values()}))


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000)
