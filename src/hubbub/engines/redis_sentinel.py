"""Redis Sentinel: a shard whose master is found through the sentinels.

Rule 1: a Sentinel shard is a ``ServerShard`` (one master: the same scripts,
batches and pub/sub connection) whose connections are opened at the address
the sentinels give for ``engine.redis.sentinel_master_name`` at that moment
(redis-py's SentinelConnectionPool asks them for every new connection, and
drops idle connections to a master that is no longer the one they name).
Rule 2: a failover is an outage like any other: commands in flight fail with
``EngineUnavailable``, the pub/sub connection breaks and its subscribers are
told (2500), and the next connections go to the promoted replica. A master
demoted while alive answers writes with READONLY, which redis-py turns into a
broken connection. What the promoted replica lacks is a new epoch of each
stream (redis_scripts.py): clients positioned in the old one are told.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from hubbub.engines.redis_shard import MAX_CONNECTIONS, OnLost, OnMessage, ServerShard
from hubbub.engines.redis_tls import TLS_CONTEXT, SentinelTlsConnection, TlsConnection


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """A Sentinel pool that waits for a free connection (at most MAX_CONNECTIONS)
    instead of failing, like the pool of a ServerShard with an address."""


def parse_sentinels(spec: str) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` (one ``sentinel_address`` entry) as (host, port) pairs."""
    pairs = []
    for item in spec.split(","):
        host, _, port = item.strip().removeprefix("redis://").rpartition(":")
        pairs.append((host or "127.0.0.1", int(port or 26379)))
    return pairs


class SentinelShard(ServerShard):
    """A ServerShard whose master is the one the sentinels name."""

    def __init__(
        self,
        label: str,
        manager: Sentinel,
        pool: _BlockingSentinelPool,
        options: dict[str, Any],
        on_message: OnMessage,
        on_lost: OnLost,
    ) -> None:
        super().__init__(label, options, on_message, on_lost, pool=pool)
        self.manager = manager

    async def close(self) -> None:
        await super().close()
        await self.manager.aclose()


def sentinel_options(
    connect_timeout: float, io_timeout: float, user: str, password: str, client_name: str
) -> dict[str, Any]:
    """Connection settings for the sentinels themselves (``sentinel_user`` ...)."""
    return {
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": io_timeout,
        "username": user or None,
        "password": password or None,
        "client_name": client_name or None,
    }


def _manager(spec: str, sentinels: dict[str, Any]) -> Sentinel:
    """The Sentinel manager of the sentinels of ``spec``; over TLS when ``sentinels``
    carries a context (engine.redis.sentinel_tls): redis-py makes each sentinel's
    client from keywords its Redis class knows, so hubbub makes them itself."""
    options = dict(sentinels)
    context = options.pop(TLS_CONTEXT, None)
    options.pop("connection_class", None)
    if context is None:
        return Sentinel(parse_sentinels(spec), sentinel_kwargs=options)  # type: ignore[no-untyped-call]
    manager = Sentinel([], sentinel_kwargs=options)  # type: ignore[no-untyped-call]
    # from_pool: each client owns its pool (manager.aclose() disconnects it).
    manager.sentinels = [
        aioredis.Redis.from_pool(
            aioredis.ConnectionPool(
                host=host,
                port=port,
                connection_class=TlsConnection,
                tls_context=context,
                **options,
            )
        )
        for host, port in parse_sentinels(spec)
    ]
    return manager


def _master_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for connections to the master: over TLS with the Sentinel's class."""
    if options.get("connection_class") is TlsConnection:
        return options | {"connection_class": SentinelTlsConnection}
    return options


def master_client(
    spec: str, master_name: str, options: dict[str, Any], sentinels: dict[str, Any]
) -> tuple[aioredis.Redis, Sentinel]:
    """A plain client of the master the sentinels of ``spec`` name (for other users of
    Redis than the engine: the webhook queue), and the manager to close after it."""
    manager = _manager(spec, sentinels)
    client: aioredis.Redis = manager.master_for(master_name, **_master_options(options))
    return client, manager


def sentinel_shard(
    spec: str,
    master_name: str,
    options: dict[str, Any],
    sentinel_options: dict[str, Any],
    on_message: OnMessage,
    on_lost: OnLost,
) -> SentinelShard:
    """The shard of the master ``master_name`` watched by the sentinels of ``spec``."""
    manager = _manager(spec, sentinel_options)
    connection_options = {k: v for k, v in _master_options(options).items() if k != "timeout"}
    pool = _BlockingSentinelPool(  # type: ignore[no-untyped-call]
        master_name,
        manager,
        max_connections=MAX_CONNECTIONS,
        timeout=options["timeout"],
        **connection_options,
    )
    label = f"sentinel {master_name}@{spec}"  # logged as "redis sentinel ..."
    return SentinelShard(label, manager, pool, options, on_message, on_lost)
