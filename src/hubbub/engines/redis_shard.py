"""A shard of the Redis engine: where a channel's keys and events live.

Rule: the engine talks to a shard only through ``Shard``: four batched scripts
(publish, history, presence add / read / remove), ``post`` (an event without
state: join, leave, control), ``delete``, and pub/sub interest. A
``ServerShard`` is one Redis server (PUBLISH / SUBSCRIBE), named by its
address or found through Sentinel (redis_sentinel.py); a ``ClusterShard``
(redis_cluster.py) is a whole Redis Cluster (SPUBLISH / SSUBSCRIBE, routed by
slot). Every redis-py error that means "Redis cannot be reached" leaves a
shard as ``EngineUnavailable`` (Rule 5 of redis.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hubbub.engines.base import EngineUnavailable
from hubbub.engines.health import Reachability
from hubbub.engines.redis_batch import ScriptBatcher
from hubbub.engines.redis_pubsub import PubSubConnection, log
from hubbub.engines.redis_scripts import (
    HISTORY,
    PRESENCE_ADD,
    PRESENCE_GET,
    PRESENCE_REMOVE,
    PUBLISH,
)
from hubbub.engines.redis_tls import TLS_CONTEXT, pool_url, tls_failure

#: Command connections per server (per node); more concurrent commands queue.
MAX_CONNECTIONS = 32
#: What redis-py (and the socket below it) raises when Redis cannot be reached in time.
#: RuntimeError: on uvloop, redis-py writing to a connection the peer has reset (also
#: one reset right after accepting it, as an L4 proxy with no backend does) raises
#: "unable to perform operation on <TCPTransport closed=True>; the handler is closed".
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
    RuntimeError,
)

OnMessage = Callable[[bytes, bytes], None]
OnLost = Callable[[set[bytes]], None]


def normalize_address(address: str, tls: bool = False) -> str:
    """``host:port`` or a ``redis://`` / ``rediss://`` / ``unix://`` URL, as a URL;
    ``tls`` (a ``tls`` section is enabled): rediss:// for host:port and redis://."""
    address = address.strip()
    if "://" not in address:
        address = f"redis://{address}"
    if tls and address.startswith("redis://"):
        return "rediss://" + address.removeprefix("redis://")
    return address


class Shard(Protocol):
    url: str
    health: Reachability
    #: The publish script's command for events: PUBLISH, or SPUBLISH on a cluster.
    publish_command: str
    publish: ScriptBatcher
    history: ScriptBatcher
    presence_add: ScriptBatcher
    presence_get: ScriptBatcher
    presence_remove: ScriptBatcher

    def start(self, control: set[bytes]) -> None: ...

    async def close(self) -> None: ...

    async def subscribe(self, channel: bytes, wait: float) -> None: ...

    async def unsubscribe(self, channel: bytes) -> None: ...

    async def post(self, channel: bytes, data: bytes) -> None: ...

    async def delete(self, key: str) -> None: ...


def batchers(
    owner: Any,
    client: Any,
    health: Reachability,
    name: str,
    io_timeout: float,
    outage_errors: tuple[type[BaseException], ...] = OUTAGE_ERRORS,
    kind: type[ScriptBatcher] = ScriptBatcher,
) -> None:
    """The five batched scripts of a shard (``client``: Redis, or RedisCluster with
    its own ``kind`` of batcher)."""
    for attribute, script in (
        ("publish", PUBLISH),
        ("history", HISTORY),
        ("presence_add", PRESENCE_ADD),
        ("presence_get", PRESENCE_GET),
        ("presence_remove", PRESENCE_REMOVE),
    ):
        setattr(owner, attribute, kind(client, script, health, outage_errors, name, io_timeout))


class ServerShard:
    """One Redis server: a command pool and one pub/sub connection."""

    publish_command = "PUBLISH"
    publish: ScriptBatcher
    history: ScriptBatcher
    presence_add: ScriptBatcher
    presence_get: ScriptBatcher
    presence_remove: ScriptBatcher

    def __init__(
        self,
        url: str,
        options: dict[str, Any],
        on_message: OnMessage,
        on_lost: OnLost,
        *,
        pool: aioredis.BlockingConnectionPool | None = None,
    ) -> None:
        self.url = url
        # Commands wait for a free connection rather than open without bound. A
        # Sentinel shard brings its own pool (redis_sentinel.py): its connections
        # ask the sentinels where the master is.
        self.pool = pool or aioredis.BlockingConnectionPool.from_url(
            pool_url(url, options), max_connections=MAX_CONNECTIONS, **options
        )
        self.client: aioredis.Redis = aioredis.Redis(connection_pool=self.pool)
        self.health = Reachability(f"redis {url}", log)
        if TLS_CONTEXT in options:
            self.health.explain = tls_failure
        # Publishes, history reads and presence updates of one loop turn: one round trip.
        batchers(self, self.client, self.health, f"redis {url}", options["socket_timeout"])
        self.pubsub = PubSubConnection(
            f"redis {url}",
            self._new_connection,
            self.health,
            sharded=False,
            on_message=on_message,
            on_lost=on_lost,
        )

    def _new_connection(self) -> AbstractConnection:
        connection: AbstractConnection = self.pool.make_connection()  # type: ignore[no-untyped-call]
        return connection

    def start(self, control: set[bytes]) -> None:
        self.pubsub.channels |= control
        self.pubsub.start()

    async def close(self) -> None:
        await self.pubsub.close()
        await self.client.aclose()
        await self.pool.disconnect()

    async def subscribe(self, channel: bytes, wait: float) -> None:
        await self.pubsub.subscribe(channel, wait)

    async def unsubscribe(self, channel: bytes) -> None:
        await self.pubsub.unsubscribe(channel)

    async def post(self, channel: bytes, data: bytes) -> None:
        with self.outage():
            await self.client.publish(channel, data)

    async def delete(self, key: str) -> None:
        with self.outage():
            await self.client.delete(key)

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Map redis-py's connection errors in the block to EngineUnavailable."""
        try:
            yield
        except OUTAGE_ERRORS as exc:
            self.health.failed(exc)
            raise EngineUnavailable(f"redis {self.url}: {exc}") from exc
        self.health.succeeded()
