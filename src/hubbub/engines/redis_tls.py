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


def pool_url(url: str, options: dict[str, Any]) -> str:
    """``url`` for redis-py's ``from_url`` with ``options``: with a context of hubbub's
    own, never rediss:// (redis-py would put its own SSLConnection class back)."""
    if TLS_CONTEXT in options and url.startswith("rediss://"):
        return "redis://" + url.removeprefix("rediss://")
    return url


def tls_failure(text: str) -> str:
    """The cause of a failed TLS connection to Redis before redis-py's own words."""
    if "CERTIFICATE_VERIFY_FAILED" in text:
        if "mismatch" in text or "not valid for" in text:
            return (
                "TLS: the server's certificate is not valid for the host connected to "
                f"(tls.server_name names the host to check it against): {text}"
            )
        return f"TLS: the server's certificate is not trusted (tls.server_ca_pem): {text}"
    if (
        "CERTIFICATE_REQUIRED" in text  # TLS 1.3: the server's alert, when it arrives first
        or "reset by peer" in text
        or "Connection closed by server" in text
        or "EOF" in text
    ):
        return (
            "TLS: the server closed the connection (a server that requires a client "
            "certificate does so when none, or one it does not trust, is presented: "
            f"tls.cert_pem): {text}"
        )
    return text
