"""Configuration of calls to the application backend: event proxies and webhooks.

Rule: like ``config.model``, frozen value objects only, named as the keys are.
The proxy keys are Centrifugo v6's (``client.proxy.connect``, ``channel.proxy.*``,
``rpc.proxy``, ``proxies[]``, the per-namespace ``*_proxy_enabled`` /
``*_proxy_name`` switches); ``webhooks.*`` is hubbub's own. Checks that can
fail live in ``config.backend_checks``.
"""

from __future__ import annotations

import msgspec

#: A JSON object of strings (``static_headers``), kept as (name, value) pairs in order.
StrPairs = tuple[tuple[str, str], ...]

#: The name that refers to the unnamed proxy of an event (``channel.proxy.subscribe``,
#: ``rpc.proxy``) in a ``*_proxy_name`` option.
DEFAULT_PROXY_NAME = "default"


class TLSConfig(msgspec.Struct, frozen=True):
    """``tls``: TLS of the connection hubbub opens to the backend.

    PEM values are the PEM text, a path to a PEM file, or base64 of the PEM text.
    """

    enabled: bool = False
    cert_pem: str = ""  # client certificate (mutual TLS)
    key_pem: str = ""  # its key
    server_ca_pem: str = ""  # CA that signed the backend's certificate
    client_ca_pem: str = ""  # accepted for compatibility; a client never uses it
    insecure_skip_verify: bool = False
    server_name: str = ""  # checked against the certificate instead of the endpoint's host


class TransformError(msgspec.Struct, frozen=True):
    code: int = 0
    message: str = ""
    temporary: bool = False


class TransformDisconnect(msgspec.Struct, frozen=True):
    code: int = 0
    reason: str = ""


class StatusTransform(msgspec.Struct, frozen=True):
    """``http.status_to_code_transforms[]``: an HTTP status the backend answers with,
    turned into a client error or a disconnect instead of error 100."""

    status_code: int = 0
    to_error: TransformError = msgspec.field(default_factory=TransformError)
    to_disconnect: TransformDisconnect = msgspec.field(default_factory=TransformDisconnect)


class ProxyHttpOptions(msgspec.Struct, frozen=True):
    """``http``: options of HTTP proxies."""

    tls: TLSConfig = msgspec.field(default_factory=TLSConfig)
    static_headers: StrPairs = ()  # sent with every request; forwarded headers win
    status_to_code_transforms: tuple[StatusTransform, ...] = ()


class ProxyGrpcOptions(msgspec.Struct, frozen=True):
    """``grpc``: options of gRPC proxies (``grpc://host:port`` endpoints)."""

    tls: TLSConfig = msgspec.field(default_factory=TLSConfig)
    credentials_key: str = ""  # metadata key added to every call (per-RPC credentials)
    credentials_value: str = ""
    compression: bool = False  # gzip


class ProxyOptions(msgspec.Struct, frozen=True):
    """One proxy: where events go and how (the same object for every event type)."""

    endpoint: str = ""  # http://, https:// or grpc://host:port
    timeout: float = 1.0
    http_headers: tuple[str, ...] = ()  # upgrade-request headers forwarded (allow-list)
    grpc_metadata: tuple[str, ...] = ()  # for gRPC client transports (hubbub has none)
    binary_encoding: bool = False  # payloads as base64 (b64data ...), encoding "binary"
    include_connection_meta: bool = False  # the connection's meta in every request but connect
    http: ProxyHttpOptions = msgspec.field(default_factory=ProxyHttpOptions)
    grpc: ProxyGrpcOptions = msgspec.field(default_factory=ProxyGrpcOptions)


class ClientEventProxy(ProxyOptions, frozen=True):
    """``client.proxy.connect`` / ``client.proxy.refresh``: switched on by ``enabled``."""

    enabled: bool = False


class NamedProxy(ProxyOptions, frozen=True):
    """An entry of ``proxies[]``, referenced by ``name`` from namespaces."""

    name: str = ""


class ClientProxyConfig(msgspec.Struct, frozen=True):
    """``client.proxy``: connection-wide events."""

    connect: ClientEventProxy = msgspec.field(default_factory=ClientEventProxy)
    refresh: ClientEventProxy = msgspec.field(default_factory=ClientEventProxy)


class ChannelProxyConfig(msgspec.Struct, frozen=True):
    """``channel.proxy``: the proxies namespaces use under the name "default"."""

    subscribe: ProxyOptions = msgspec.field(default_factory=ProxyOptions)
    publish: ProxyOptions = msgspec.field(default_factory=ProxyOptions)
    sub_refresh: ProxyOptions = msgspec.field(default_factory=ProxyOptions)
    # Shared poll namespaces poll their backend here (shared_poll.proxy_name "default").
    shared_poll_refresh: ProxyOptions = msgspec.field(default_factory=ProxyOptions)


class RpcOptions(msgspec.Struct, frozen=True):
    """``rpc.without_namespace``: whether RPC methods without namespace are proxied."""

    proxy_enabled: bool = False
    proxy_name: str = DEFAULT_PROXY_NAME


class RpcNamespace(msgspec.Struct, frozen=True):
    """``rpc.namespaces[]``: methods ``name:method`` use these options."""

    name: str = ""
    proxy_enabled: bool = False
    proxy_name: str = DEFAULT_PROXY_NAME


#: Webhook event types, as they appear in ``webhooks.events`` and in payloads.
WEBHOOK_EVENTS = ("connect", "disconnect", "occupied", "vacated", "join", "leave", "publication")


class WebhooksConfig(msgspec.Struct, frozen=True):
    """``webhooks.*`` (hubbub only): signed, batched POSTs of events the proxy cannot tell."""

    enabled: bool = False
    endpoint: str = ""  # http:// or https://
    secret: str = ""  # HMAC-SHA256 key of the X-Hubbub-Signature header
    events: tuple[str, ...] = ("connect", "disconnect", "occupied", "vacated", "join", "leave")
    static_headers: StrPairs = ()
    tls: TLSConfig = msgspec.field(default_factory=TLSConfig)
    # Timeouts
    timeout: float = 5.0  # one POST
    retry_min_delay: float = 0.5  # backoff after the first failed POST, doubling ...
    retry_max_delay: float = 30.0  # ... up to this
    claim_after: float = 60.0  # a batch unacknowledged this long is taken over by another node
    # Limits
    batch_max_size: int = 100  # events per POST
    max_pending: int = 100_000  # events waiting in memory for Redis; more are dropped (logged)
    # Accepted events waiting for delivery (the Redis stream, or the memory queue) while
    # the receiver is down: beyond this many, the oldest are dropped (logged, counted) ...
    queue_max_length: int = 1_000_000
    queue_max_age: float = 0.0  # ... and those older than this (0: no age limit)
