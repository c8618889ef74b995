"""The Redis engine: several nodes share channels, history and presence through Redis.

Rule 1: every write that must be ordered runs in one Lua script on the channel's
shard (see redis_scripts.py); the script also PUBLISHes the event, so every
node sees a channel's publications in offset order.
Rule 2: a node SUBSCRIBEs a channel's Redis channel only while it has a local
subscriber, on one pub/sub connection per server, and ``subscribe`` returns
only once Redis confirmed the subscription (so a history read after it cannot
miss a publication).
Rule 3: when a pub/sub connection breaks, events may be lost: the node is told
(``handle_broker_lost``) at once, and the connection is re-made with backoff.
Rule 4: a channel lives on one shard, chosen by jump hash of its CRC32, so
every node agrees without talking to each other. A shard is one Redis server
(``address``), one master found through Sentinel (``sentinel_address``; see
redis_sentinel.py) or one Redis Cluster (``cluster_address``: keys carry the
channel as a hash tag, events use sharded pub/sub; see redis_cluster.py).
Rule 5: redis-py's connection and timeout errors stop at the shard: each
becomes ``EngineUnavailable`` and is counted by the shard's ``Reachability``
(one log line when Redis is lost, one when it is back); nothing above sees
redis-py. Control messages travel on the first shard: ``P.control`` to every
node and ``P.node.<id>`` to one node, both subscribed on its pub/sub.
Rule 6: calls of one loop turn go to Redis together (redis_batch.py).
"""

from __future__ import annotations

import logging
import math
import secrets
import ssl
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

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
from hubbub.engines.redis_shard import OUTAGE_ERRORS, ServerShard, Shard, normalize_address
from hubbub.engines.redis_tls import tls_options
from hubbub.protocol.messages import ClientInfo, Publication, StreamPosition
from hubbub.protocol.payload import from_container, to_container

__all__ = ["OUTAGE_ERRORS", "RedisEngine", "jump_hash", "normalize_address", "shard_index"]

log = logging.getLogger("hubbub.engines.redis")

#: How long a publish idempotency key is remembered (as the memory engine).
IDEMPOTENCY_WINDOW = 300

_publication_decoder = msgspec.json.Decoder(Publication)
_info_decoder = msgspec.json.Decoder(ClientInfo)
_encode = msgspec.json.encode
_Arg = bytes | str | int | float


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


class RedisEngine:
    """Engine over one or more Redis servers (client-side sharding by channel)."""

    #: Publishes of one loop turn travel together: a connection's publishes may overlap.
    pipelined = True

    def __init__(
        self,
        addresses: Sequence[str] = ("127.0.0.1:6379",),
        *,
        clusters: Sequence[str] = (),
        sentinels: Sequence[str] = (),
        master_name: str = "",
        sentinel_user: str = "",
        sentinel_password: str = "",
        sentinel_client_name: str = "",
        prefix: str = "hubbub",
        db: int = 0,
        user: str = "",
        password: str = "",
        client_name: str = "",
        connect_timeout: float = 1.0,
        io_timeout: float = 4.0,
        presence_ttl: float = 0.0,
        tls: ssl.SSLContext | None = None,
        sentinel_tls: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``tls``: the context of the Redis servers' connections (engine.redis.tls;
        None: plain, or redis-py's defaults for rediss:// addresses); ``sentinel_tls``:
        that of the sentinels' (engine.redis.sentinel_tls)."""
        if not addresses and not clusters and not sentinels:
            raise ValueError("RedisEngine needs at least one address")
        if sentinels and not clusters and not master_name:
            raise ValueError("RedisEngine with sentinels needs the master's name")
        options: dict[str, Any] = {
            "timeout": io_timeout,  # waiting for a free pool connection
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": io_timeout,
            "health_check_interval": 0,
            # RESP2: pub/sub messages are plain arrays (RESP3 pushes cost redis-py a
            # str() of every message for a debug line nobody reads).
            "protocol": 2,
        }
        if db:
            options["db"] = db
        if user:
            options["username"] = user
        if password:
            options["password"] = password
        if client_name:
            options["client_name"] = client_name
        options |= tls_options(tls)
        self.prefix = prefix
        self.presence_ttl = presence_ttl
        self._connect_timeout = connect_timeout
        self._clock = clock
        self.cluster = bool(clusters)
        self._shards: list[Shard]
        if clusters:  # cluster_address takes precedence over address (as in Centrifugo)
            from hubbub.engines.redis_cluster import ClusterShard

            self._shards = [
                ClusterShard(seeds, options, self.dispatch, self.broker_lost) for seeds in clusters
            ]
        elif sentinels:  # sentinel_address takes precedence over address (as in Centrifugo)
            from hubbub.engines.redis_sentinel import sentinel_options, sentinel_shard

            to_sentinels = sentinel_options(
                connect_timeout, io_timeout, sentinel_user, sentinel_password, sentinel_client_name
            ) | tls_options(sentinel_tls)
            self._shards = [
                sentinel_shard(
                    spec, master_name, options, to_sentinels, self.dispatch, self.broker_lost
                )
                for spec in sentinels
            ]
        else:
            self._shards = [
                ServerShard(
                    normalize_address(a, tls is not None), options, self.dispatch, self.broker_lost
                )
                for a in addresses
            ]
        self._handler: EventHandler | None = None
        self.pubsub_losses = 0  # pub/sub connections lost while carrying channels (metrics)
        self._channel_prefix = f"{prefix}.channel.".encode()
        self._control_all = f"{prefix}.control".encode()
        self._control_prefix = f"{prefix}.node.".encode()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        control = {self._control_all, self._control_node(handler.node_id)}
        for index, shard in enumerate(self._shards):
            shard.start(control if index == 0 else set())

    @property
    def available(self) -> bool:
        return all(shard.health.up for shard in self._shards)

    def _control_node(self, node: str) -> bytes:
        return self._control_prefix + node.encode()

    async def publish_control(self, data: bytes, node: str = "") -> None:
        target = self._control_node(node) if node else self._control_all
        await self._shards[0].post(target, data)

    async def close(self) -> None:
        for shard in self._shards:
            await shard.close()

    async def subscribe(self, channel: str) -> None:
        await self._shard(channel).subscribe(self._redis_channel(channel), self._connect_timeout)

    async def unsubscribe(self, channel: str) -> None:
        await self._shard(channel).unsubscribe(self._redis_channel(channel))

    # --- keys ------------------------------------------------------------------------

    def _shard(self, channel: str) -> Shard:
        return self._shards[shard_index(channel, len(self._shards))]

    def shard_url(self, channel: str) -> str:
        """The Redis server that holds ``channel``."""
        return self._shard(channel).url

    def _redis_channel(self, channel: str) -> bytes:
        return self._channel_prefix + self._tag(channel).encode()

    def _key(self, kind: str, channel: str, suffix: str = "") -> str:
        return f"{self.prefix}.{kind}.{self._tag(channel)}{suffix}"

    def _tag(self, channel: str) -> str:
        """On a cluster, ``{channel}``: a hash tag, so a channel's keys share one slot."""
        return f"{{{channel}}}" if self.cluster else channel

    def _untag(self, name: str) -> str:
        return name[1:-1] if self.cluster else name

    # --- events from the pub/sub reader ----------------------------------------------

    def dispatch(self, redis_channel: bytes, data: bytes) -> None:
        """Decode one pub/sub message and hand it to the handler."""
        handler = self._handler
        if handler is None:
            return
        if not redis_channel.startswith(self._channel_prefix):
            if redis_channel == self._control_all or redis_channel.startswith(self._control_prefix):
                try:
                    handler.handle_control(data)
                except Exception:
                    log.exception("redis engine: a control message failed")
            return
        channel = self._untag(redis_channel[len(self._channel_prefix) :].decode())
        try:
            kind = data[:1]
            if kind == b"p":
                first = data.index(b":", 1)
                second = data.index(b":", first + 1)
                offset = int(data[1:first])
                publication = from_container(_publication_decoder.decode(data[second + 1 :]))
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
        self.pubsub_losses += 1
        handler = self._handler
        if handler is None:
            return
        cut = len(self._channel_prefix)
        channels = [
            self._untag(c[cut:].decode())
            for c in redis_channels
            if c.startswith(self._channel_prefix)
        ]
        if not channels:
            return
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
            self._key("idem", channel, f".{idempotency_key}")
            if idempotency_key
            else self._key("meta", channel),
        ]
        args: list[_Arg] = [
            _encode(to_container(publication)),
            history.size,
            _ms(history.ttl),
            _ms(max(history.meta_ttl, history.ttl)),
            _new_epoch(),
            self._redis_channel(channel),
            IDEMPOTENCY_WINDOW if idempotency_key else 0,
            1 if enabled else 0,
            shard.publish_command,
        ]
        duplicate, position = await shard.publish.call(keys, args)
        result = PublishResult(_position(position), duplicate=bool(duplicate))
        publication.offset = result.position.offset
        return result

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self._shard(channel).post(self._redis_channel(channel), b"j" + _encode(info))

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self._shard(channel).post(self._redis_channel(channel), b"l" + _encode(info))

    # --- history ---------------------------------------------------------------------

    async def history(
        self, channel: str, query: HistoryQuery, history: HistoryOptions
    ) -> HistoryPage:
        args = stream_read_args(query, history.enabled, max(history.meta_ttl, history.ttl))
        keys = [self._key("stream", channel), self._key("meta", channel)]
        reply = await self._shard(channel).history.call(keys, args)
        return stream_page(channel, reply)

    async def remove_history(self, channel: str) -> None:
        await self._shard(channel).delete(self._key("stream", channel))

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
        await self._shard(channel).presence_add.call(self._presence_keys(channel), args)

    async def remove_presence(self, channel: str, client_id: str) -> None:
        await self._shard(channel).presence_remove.call(self._presence_keys(channel), [client_id])

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        flat = await self._shard(channel).presence_get.call(
            self._presence_keys(channel), [repr(self._clock())]
        )
        return {flat[i].decode(): _info_decoder.decode(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def presence_stats(self, channel: str) -> PresenceStats:
        members = await self.presence(channel)
        return PresenceStats(len(members), len({info.user for info in members.values()}))


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000)


def stream_read_args(query: HistoryQuery, enabled: bool, keep: float) -> list[_Arg]:
    """The HISTORY script's arguments for ``query`` (channels and map streams share it).

    ``enabled``: the stream may be created; ``keep``: seconds the position lives.
    """
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
    return [
        1 if enabled else 0,
        _new_epoch(),
        _ms(keep) or 1,
        since.epoch if since is not None else "",
        mode,
        bound,
        query.limit if query.limit > 0 else -1,
    ]


def stream_page(channel: str, reply: Sequence[Any]) -> HistoryPage:
    """The HISTORY script's reply as a page; EpochMismatch when ``since`` was stale."""
    top, epoch, mismatch, entries = reply
    position = StreamPosition(int(top), epoch.decode() if isinstance(epoch, bytes) else epoch)
    if mismatch:
        raise EpochMismatch(channel, position)
    publications = []
    for entry_id, fields in entries:
        publication = from_container(_publication_decoder.decode(fields[1]))
        publication.offset = int(entry_id.partition(b"-")[0])
        publications.append(publication)
    return HistoryPage(publications, position)
