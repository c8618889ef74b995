"""One plain Redis client from a ``RedisConfig``, for users of Redis other than the
engine (the webhook queue, the redis_stream consumers).

Rule: the first address (or, with ``sentinel_address``, the master its first entry's
sentinels name) with the config's timeouts, database and credentials; the caller
closes the client and then the sentinel manager (None without Sentinel).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from hubbub.config.model import RedisConfig
from hubbub.engines.factory import DEFAULT_REDIS_ADDRESS
from hubbub.engines.redis_shard import normalize_address
from hubbub.engines.redis_tls import context_for, pool_url, tls_options


def single_client(config: RedisConfig, key: str) -> tuple[aioredis.Redis, Any]:
    """The client and the Sentinel manager to close after it (or None); ``key``:
    where ``config`` is (e.g. ``engine.redis``), named by a TLS error."""
    options: dict[str, Any] = {
        "socket_connect_timeout": config.connect_timeout,
        "socket_timeout": config.io_timeout,
        "health_check_interval": 0,
    }
    if config.db:
        options["db"] = config.db
    if config.user:
        options["username"] = config.user
    if config.password:
        options["password"] = config.password
    if config.client_name:
        options["client_name"] = config.client_name
    context = context_for(config.tls, f"{key}.tls")
    options |= tls_options(context)
    if config.sentinel_address:
        from hubbub.engines.redis_sentinel import master_client, sentinel_options

        return master_client(
            config.sentinel_address[0],
            config.sentinel_master_name,
            options,
            sentinel_options(
                config.connect_timeout,
                config.io_timeout,
                config.sentinel_user,
                config.sentinel_password,
                config.sentinel_client_name,
            )
            | tls_options(context_for(config.sentinel_tls, f"{key}.sentinel_tls")),
        )
    address = (config.address or (DEFAULT_REDIS_ADDRESS,))[0]
    url = normalize_address(address, context is not None)
    return aioredis.Redis.from_url(pool_url(url, options), **options), None
