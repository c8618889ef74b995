"""TLS to Redis with the context hubbub builds from a ``tls`` section.

Rule: redis-py's asyncio ``SSLConnection`` builds its own context from file
paths and checks the host it connects to; hubbub's connection classes hand it
instead the one ``config.tls.client_context`` built (the CA, the client
certificate of mutual TLS, ``server_name``, ``insecure_skip_verify``), through
``RedisSSLContext.context``. Every user of Redis (the engine's shards, Sentinel
masters and the sentinels themselves, Cluster nodes, the webhook queue, the
redis_stream consumers) connects with these classes when its section enables TLS.
"""

from __future__ import annotations

import ssl
from typing import Any

from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelManagedConnection

from hubbub.config.backend import TLSConfig
from hubbub.config.tls import client_context
from hubbub.engines.redis_shard import normalize_address

#: The connection keyword carrying the context (a key of the options dicts).
TLS_CONTEXT = "tls_context"


class TlsConnection(SSLConnection):
    """An SSLConnection over ``tls_context`` (made by ``config.tls.client_context``)."""

    def __init__(self, *, tls_context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssl_context.context = tls_context  # used as is: redis-py builds none


class SentinelTlsConnection(SentinelManagedConnection, TlsConnection):
    """A connection to the master the sentinels name, over TLS."""


def context_for(tls: TLSConfig, key: str) -> ssl.SSLContext | None:
    """The context of the section ``tls`` at ``key``; None when it is disabled."""
    return client_context(tls, key) if tls.enabled else None


def tls_options(context: ssl.SSLContext | None) -> dict[str, Any]:
    """Connection keywords for ``context``: none without TLS settings."""
    if context is None:
        return {}
    return {"connection_class": TlsConnection, TLS_CONTEXT: context}


def address_url(address: str, context: ssl.SSLContext | None) -> str:
    """The URL of ``address`` (host:port or a URL); with a context, never rediss://:
    the connection class says TLS (redis-py would put its own SSLConnection back)."""
    url = normalize_address(address)
    if context is not None and url.startswith("rediss://"):
        return "redis://" + url.removeprefix("rediss://")
    return url
