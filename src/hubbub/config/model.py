"""The configuration as frozen value objects, with Centrifugo v6 key names.

Rule: these classes hold validated values only; reading files, environment
variables and flags, and every check that can fail, live in ``config.loader``.
Durations are floats in seconds; sizes are ints in bytes. Field names are the
Centrifugo keys, so ``channel.namespaces[0].history_ttl`` is
``Config.channel.namespaces[0].history_ttl``.

The classes are frozen ``msgspec.Struct``s, not dataclasses: a Struct class is
made in C (~15 us against ~450 us for a frozen, slotted dataclass, which execs
its generated methods), and ``hubbub serve`` creates every class here at start.
Copy one with changes with ``msgspec.structs.replace``.
"""

from __future__ import annotations

import msgspec

from hubbub.config.backend import (
    DEFAULT_PROXY_NAME,
    ChannelProxyConfig,
    ClientProxyConfig,
    NamedProxy,
    ProxyOptions,
    RpcNamespace,
    RpcOptions,
    WebhooksConfig,
)
from hubbub.config.model_routing import (
    BrokerConfig,
    ConsumerConfig,
    EngineConfig,
    MapBrokerConfig,
    MapRedisConfig,
    NatsBrokerConfig,
    NatsJetStreamConsumer,
    NatsJetStreamPublicationDataMode,
    PresenceManagerConfig,
    RedisConfig,
    RedisStreamConsumer,
    RedisStreamPublicationDataMode,
)

# Every class of the configuration, those of model_routing too: import them from here.
__all__ = [
    "AdminConfig",
    "BrokerConfig",
    "ChannelConfig",
    "ChannelOptions",
    "ClientConfig",
    "Config",
    "ConsumerConfig",
    "DemoConfig",
    "EmulationConfig",
    "EngineConfig",
    "HealthConfig",
    "Http3Config",
    "HttpApiConfig",
    "HttpServerConfig",
    "HttpStreamConfig",
    "LogConfig",
    "MapBrokerConfig",
    "MapOptions",
    "MapRedisConfig",
    "Namespace",
    "NatsBrokerConfig",
    "NatsJetStreamConsumer",
    "NatsJetStreamPublicationDataMode",
    "PersonalChannelConfig",
    "PresenceManagerConfig",
    "PrometheusConfig",
    "RedisConfig",
    "RedisStreamConsumer",
    "RedisStreamPublicationDataMode",
    "RpcConfig",
    "SharedPollConfig",
    "SharedPollOptions",
    "ShutdownConfig",
    "SseConfig",
    "SubscriptionTokenConfig",
    "TlsAutocertConfig",
    "TlsConfig",
    "TokenConfig",
    "UniHttpStreamConfig",
    "UniSseConfig",
    "UniWebSocketConfig",
    "WebSocketConfig",
]


class MapOptions(msgspec.Struct, frozen=True):
    """``map.*`` of a namespace whose ``subscription_type`` is a map type."""

    # "ephemeral" (no recovery: a reconnect reloads the state), "durable" (stream
    # catch-up, keys expire after key_ttl) or "persistent" (keys stay until removed).
    mode: str = ""
    key_ttl: float = 0.0  # an entry not updated for this long is removed (0: never)
    ordered: bool = False  # state pages by score (descending unless the reader asks asc)
    stream_size: int = 0  # change stream kept for catch-up (0: derived from the mode)
    stream_ttl: float = 0.0
    meta_ttl: float = 0.0  # how long the stream position outlives the last change
    remove_client_on_unsubscribe: bool = False  # the entry keyed by the client id goes with it
    client_key: str = ""  # "client_id" / "user_id": the server chooses a client's key
    allow_publish_for_client: bool = False
    allow_publish_for_subscriber: bool = False
    allow_publish_for_anonymous: bool = False
    allow_remove_for_client: bool = False
    allow_remove_for_subscriber: bool = False
    allow_remove_for_anonymous: bool = False
    publish_proxy_enabled: bool = False
    publish_proxy_name: str = ""
    remove_proxy_enabled: bool = False
    remove_proxy_name: str = ""
    # Limits
    default_page_size: int = 0  # 0: 100
    min_page_size: int = 0  # 0: 100
    max_page_size: int = 0  # 0: 1000
    live_transition_max_publication_limit: int = 0  # 0: max_page_size
    # Timeouts
    subscribe_catch_up_timeout: float = 0.0  # 0: 5 s from the first page to live


class SharedPollOptions(msgspec.Struct, frozen=True):
    """``shared_poll.*`` of a namespace whose ``subscription_type`` is ``shared_poll``."""

    proxy_name: str = ""  # "" or "default": channel.proxy.shared_poll_refresh
    mode: str = ""  # "" / "versionless" (content hashes) or "versioned" (backend versions)
    refresh_interval: float = 10.0
    refresh_batch_size: int = 1000  # keys per backend request
    max_keys_per_connection: int = 5000
    channel_shutdown_delay: float = 1.0  # polling stops this long after the last key goes
    track_expired_extra_delay: float = 25.0  # grace for a client to renew an expired signature
    publish_enabled: bool = False  # shared_poll_publish reaches every node


class ChannelOptions(msgspec.Struct, frozen=True):
    """Options of a namespace (or of channels without a namespace)."""

    presence: bool = False
    join_leave: bool = False
    force_push_join_leave: bool = False
    history_size: int = 0
    history_ttl: float = 0.0
    history_meta_ttl: float = 0.0  # 0: use the global channel.history_meta_ttl
    force_positioning: bool = False
    allow_positioning: bool = False
    force_recovery: bool = False
    allow_recovery: bool = False
    force_recovery_mode: str = "stream"  # "stream" or "cache"
    # Cache mode: every subscribe gets the latest publication, asked for or not
    # (server-side subscriptions too); needs force_recovery and mode "cache".
    auto_cache_recovery: bool = False
    allow_subscribe_for_client: bool = False
    allow_subscribe_for_anonymous: bool = False
    allow_publish_for_subscriber: bool = False
    allow_publish_for_client: bool = False
    allow_publish_for_anonymous: bool = False
    allow_history_for_subscriber: bool = False
    allow_history_for_client: bool = False
    allow_history_for_anonymous: bool = False
    allow_presence_for_subscriber: bool = False
    allow_presence_for_client: bool = False
    allow_presence_for_anonymous: bool = False
    allow_user_limited_channels: bool = False
    channel_regex: str = ""
    # "": any publication; "json", "json_object": checked; "binary": empty data allowed
    publication_data_format: str = ""
    # "stream" (publications with history), "map", "map_clients", "map_users",
    # "shared_poll": what a subscription to a channel of the namespace is.
    subscription_type: str = "stream"
    map: MapOptions = msgspec.field(default_factory=MapOptions)
    shared_poll: SharedPollOptions = msgspec.field(default_factory=SharedPollOptions)
    # Map presence: subscribers of a channel C appear in the map channel prefix + C
    # (map_clients: one entry per connection; map_users: one per user).
    map_clients_presence_channel_prefix: str = ""
    map_users_presence_channel_prefix: str = ""
    client_publish_debounce_interval: float = 0.0  # told to map subscribers (publish_debounce)
    # Event proxies: ``*_proxy_enabled`` switches the proxy on for the namespace;
    # ``*_proxy_name`` picks an entry of ``proxies[]`` ("default": ``channel.proxy.*``).
    subscribe_proxy_enabled: bool = False
    subscribe_proxy_name: str = DEFAULT_PROXY_NAME
    publish_proxy_enabled: bool = False
    publish_proxy_name: str = DEFAULT_PROXY_NAME
    sub_refresh_proxy_enabled: bool = False
    sub_refresh_proxy_name: str = DEFAULT_PROXY_NAME
    # Delta compression: the types subscribers may ask for ("fossil"), and whether
    # every publication is published as a delta (else only API ``delta: true``).
    allowed_delta_types: tuple[str, ...] = ()
    delta_publish: bool = False

    @property
    def history_enabled(self) -> bool:
        return self.history_size > 0 and self.history_ttl > 0

    @property
    def is_map(self) -> bool:
        return self.subscription_type in ("map", "map_clients", "map_users")


class Namespace(msgspec.Struct, frozen=True):
    name: str
    options: ChannelOptions


class ChannelConfig(msgspec.Struct, frozen=True):
    """``channel.*``: naming rules, options without namespace, namespaces."""

    max_length: int = 255
    private_prefix: str = "$"
    namespace_boundary: str = ":"
    user_boundary: str = "#"
    user_separator: str = ","
    history_meta_ttl: float = 30 * 24 * 3600.0
    # The namespaces' default publication_data_format ("", json, json_object, binary).
    publication_data_format: str = ""
    without_namespace: ChannelOptions = msgspec.field(default_factory=ChannelOptions)
    namespaces: tuple[Namespace, ...] = ()
    proxy: ChannelProxyConfig = msgspec.field(default_factory=ChannelProxyConfig)


class TokenConfig(msgspec.Struct, frozen=True):
    """``client.token.*``: how connection JWTs are verified."""

    hmac_secret_key: str = ""
    # Key rotation: tokens signed with the previous HMAC key stay valid until then
    # (unix seconds; 0: as long as the key is set).
    hmac_previous_secret_key: str = ""
    hmac_previous_secret_key_valid_until: int = 0
    rsa_public_key: str = ""
    ecdsa_public_key: str = ""
    jwks_public_endpoint: str = ""
    audience: str = ""
    issuer: str = ""

    @property
    def configured(self) -> bool:
        return bool(
            self.hmac_secret_key
            or self.rsa_public_key
            or self.ecdsa_public_key
            or self.jwks_public_endpoint
        )


class SubscriptionTokenConfig(msgspec.Struct, frozen=True):
    """``client.subscription_token.*``: separate keys for subscription JWTs."""

    enabled: bool = False
    hmac_secret_key: str = ""
    # Key rotation: tokens signed with the previous HMAC key stay valid until then
    # (unix seconds; 0: as long as the key is set).
    hmac_previous_secret_key: str = ""
    hmac_previous_secret_key_valid_until: int = 0
    rsa_public_key: str = ""
    ecdsa_public_key: str = ""
    jwks_public_endpoint: str = ""
    audience: str = ""
    issuer: str = ""


class PersonalChannelConfig(msgspec.Struct, frozen=True):
    """``client.subscribe_to_user_personal_channel.*``: every connection of a user
    is subscribed (server-side) to ``<namespace>:#<user>``."""

    enabled: bool = False
    personal_channel_namespace: str = ""  # "": the channel is "#<user>" (no namespace)
    single_connection: bool = False  # a new connection of a user closes the others (3504)


class ClientConfig(msgspec.Struct, frozen=True):
    """``client.*``: connection rules and limits."""

    token: TokenConfig = msgspec.field(default_factory=TokenConfig)
    subscription_token: SubscriptionTokenConfig = msgspec.field(
        default_factory=SubscriptionTokenConfig
    )
    allowed_origins: tuple[str, ...] = ()
    allow_anonymous_connect_without_token: bool = False
    insecure: bool = False  # development only: every connection and action is allowed
    subscribe_to_user_personal_channel: PersonalChannelConfig = msgspec.field(
        default_factory=PersonalChannelConfig
    )
    # Event proxies: connect (only for connections without a token) and refresh
    # (the server refreshes expiring connections); or entries of ``proxies[]`` by name.
    proxy: ClientProxyConfig = msgspec.field(default_factory=ClientProxyConfig)
    connect_proxy_name: str = ""
    refresh_proxy_name: str = ""
    # Timeouts
    ping_interval: float = 25.0
    pong_timeout: float = 8.0
    stale_close_delay: float = 10.0
    expired_close_delay: float = 25.0
    # Limits
    channel_limit: int = 128
    command_rate_limit: float = 100.0  # commands per second per connection; 0: no limit
    command_rate_burst: int = 200  # commands allowed at once; as many refusals in a row -> 3013
    user_connection_limit: int = 0  # 0: unlimited
    queue_max_size: int = 1_048_576  # bytes pending for one connection before 3008
    history_max_publication_limit: int = 300
    recovery_max_publication_limit: int = 300


# --- TLS and WebSocket transport (issue 10) -------------------------------------------


class TlsConfig(msgspec.Struct, frozen=True):
    """``http_server.tls.*`` / ``http_server.internal_tls.*`` (Centrifugo v6 names).

    Each ``*_pem`` value is raw PEM, base64 of PEM, or a file path
    (``hubbub.config.tls`` resolves them). ``client_ca_pem`` makes the listener
    require client certificates signed by it (mutual TLS); ``server_ca_pem``,
    ``insecure_skip_verify`` and ``server_name`` only concern TLS clients.
    """

    enabled: bool = False
    cert_pem: str = ""
    key_pem: str = ""
    server_ca_pem: str = ""
    client_ca_pem: str = ""
    insecure_skip_verify: bool = False
    server_name: str = ""


class TlsAutocertConfig(msgspec.Struct, frozen=True):
    """``http_server.tls_autocert.*``: ACME certificates, which hubbub refuses to fake."""

    enabled: bool = False
    host_whitelist: tuple[str, ...] = ()
    cache_dir: str = ""
    email: str = ""
    server_name: str = ""
    http: bool = False
    http_addr: str = ":80"


class Http3Config(msgspec.Struct, frozen=True):
    """``http_server.http3.*``: HTTP/3, which hubbub does not serve (refused if enabled)."""

    enabled: bool = False


# --- end of the TLS and WebSocket transport block ----------------------------------------


class HttpServerConfig(msgspec.Struct, frozen=True):
    """``http_server.*``."""

    address: str = "127.0.0.1"
    port: int = 8000
    # A second listener for the server API (and, later, admin and metrics), so
    # that the public port serves only WebSocket, the demo page and /health.
    internal_address: str = "127.0.0.1"
    internal_port: int = 0  # 0: no internal listener; the API is on the main port
    # Peers (IP addresses or CIDR networks) whose X-Forwarded-For / X-Real-IP
    # headers name the client's address in logs and hooks (hubbub's key); empty:
    # the socket's peer address is the client's, whatever the headers say.
    trusted_proxies: tuple[str, ...] = ()
    # Timeouts
    handshake_timeout: float = 10.0  # an HTTP request (or upgrade) must arrive within this
    # Limits
    max_header_count: int = 64
    max_header_size: int = 8190  # bytes of one header line
    # TLS (issue 10): the public port, and the internal one unless tls_external
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    tls_external: bool = False  # TLS on the public port only
    internal_tls: TlsConfig = msgspec.field(default_factory=TlsConfig)  # its own, when enabled
    tls_autocert: TlsAutocertConfig = msgspec.field(default_factory=TlsAutocertConfig)
    http3: Http3Config = msgspec.field(default_factory=Http3Config)


class HttpApiConfig(msgspec.Struct, frozen=True):
    """``http_api.*``: the server API under ``/api``."""

    key: str = ""
    insecure: bool = False  # no key required: only for development behind a firewall
    disabled: bool = False


class WebSocketConfig(msgspec.Struct, frozen=True):
    """``websocket.*`` (Centrifugo v6 names)."""

    disabled: bool = False  # no WebSocket endpoint at all
    handler_prefix: str = "/connection/websocket"
    # Limits
    message_size_limit: int = 65536  # bytes of one received message, on the wire
    # bytes of a compressed message once inflated; 0: 10 x message_size_limit
    decompressed_message_size_limit: int = 0
    # permessage-deflate (RFC 7692)
    compression: bool = False
    compression_min_size: int = 0  # shorter messages go out uncompressed
    compression_level: int = 1  # zlib: 1 fastest .. 9 best, 0 stored, -1 default, -2 Huffman only


class HttpStreamConfig(msgspec.Struct, frozen=True):
    """``http_stream.*``: bidirectional emulation, server-to-client as a streamed POST."""

    enabled: bool = False
    handler_prefix: str = "/connection/http_stream"
    max_request_body_size: int = 65536  # the connect request


class SseConfig(msgspec.Struct, frozen=True):
    """``sse.*``: bidirectional emulation, server-to-client as Server-Sent Events."""

    enabled: bool = False
    handler_prefix: str = "/connection/sse"
    max_request_body_size: int = 65536  # the connect request (``cf_connect`` or a POST body)


class EmulationConfig(msgspec.Struct, frozen=True):
    """``emulation.*``: where emulated clients send their commands."""

    handler_prefix: str = "/emulation"
    max_request_body_size: int = 65536


class UniWebSocketConfig(msgspec.Struct, frozen=True):
    """``uni_websocket.*``: a WebSocket the client only reads (bare pushes)."""

    enabled: bool = False
    handler_prefix: str = "/connection/uni_websocket"
    message_size_limit: int = 65536  # the connect request, the only message read


class UniSseConfig(msgspec.Struct, frozen=True):
    """``uni_sse.*``: Server-Sent Events for clients without an SDK (EventSource)."""

    enabled: bool = False
    handler_prefix: str = "/connection/uni_sse"
    max_request_body_size: int = 65536


class UniHttpStreamConfig(msgspec.Struct, frozen=True):
    """``uni_http_stream.*``: newline-delimited JSON pushes answering a POST."""

    enabled: bool = False
    handler_prefix: str = "/connection/uni_http_stream"
    max_request_body_size: int = 65536


class RpcConfig(msgspec.Struct, frozen=True):
    """``rpc.*``: RPC namespaces (``ns:method``) and the proxies that answer RPC."""

    namespace_boundary: str = ":"
    proxy: ProxyOptions = msgspec.field(default_factory=ProxyOptions)  # the "default" RPC proxy
    without_namespace: RpcOptions = msgspec.field(default_factory=RpcOptions)
    namespaces: tuple[RpcNamespace, ...] = ()


class LogConfig(msgspec.Struct, frozen=True):
    """``log.*``."""

    level: str = "info"  # none, trace, debug, info, warn, error, fatal (as Centrifugo)
    file: str = ""  # append log lines to this file instead of stderr
    format: str = "text"  # hubbub's key: "text" lines, or "json" (one object per line)


class SharedPollConfig(msgspec.Struct, frozen=True):
    """``shared_poll.*`` (top level): signatures of tracked keys, backend concurrency."""

    hmac_secret_key: str = ""
    hmac_previous_secret_key: str = ""
    hmac_previous_secret_key_valid_until: int = 0  # unix seconds; 0: no limit
    concurrency_limit: int = 64  # backend calls in flight, all channels together


class DemoConfig(msgspec.Struct, frozen=True):
    """``demo.*`` (hubbub's key): the demo chat page at ``/``."""

    enabled: bool = False


class AdminConfig(msgspec.Struct, frozen=True):
    """``admin.*``: the admin web UI and its API (``/admin/``)."""

    enabled: bool = False
    handler_prefix: str = ""  # prepended to /admin/... (and to / when the UI is there)
    password: str = ""  # what an operator types to log in
    secret: str = ""  # signs the admin tokens handed out after login
    insecure: bool = False  # no login (loopback only)
    external: bool = False  # on the public port even when an internal port is set


class PrometheusConfig(msgspec.Struct, frozen=True):
    """``prometheus.*``: metrics in the Prometheus text format."""

    enabled: bool = False
    handler_prefix: str = "/metrics"


class HealthConfig(msgspec.Struct, frozen=True):
    """``health.*``: ``GET /health`` answers 200 while the node serves."""

    enabled: bool = False
    handler_prefix: str = "/health"


class ShutdownConfig(msgspec.Struct, frozen=True):
    """``shutdown.*``: what a node does on SIGTERM. It stops accepting, sends every
    client its 3001 close frame (they reconnect, to another node if there is one),
    waits for their close frames at most ``close_timeout``, finishes its background
    work (presence, leaves, hooks, webhooks) and exits."""

    timeout: float = 30.0  # Centrifugo's key: the whole shutdown at most, then exit anyway
    # hubbub's key: how long the clients' answers to the 3001 close frame are waited
    # for; the frame is sent either way, and a restarted node listens only once this
    # one has exited, so every moment waited here is a moment its clients are refused.
    close_timeout: float = 0.0


class Config(msgspec.Struct, frozen=True):
    """The whole configuration; every part has a working default."""

    http_server: HttpServerConfig = msgspec.field(default_factory=HttpServerConfig)
    http_api: HttpApiConfig = msgspec.field(default_factory=HttpApiConfig)
    client: ClientConfig = msgspec.field(default_factory=ClientConfig)
    channel: ChannelConfig = msgspec.field(default_factory=ChannelConfig)
    websocket: WebSocketConfig = msgspec.field(default_factory=WebSocketConfig)
    http_stream: HttpStreamConfig = msgspec.field(default_factory=HttpStreamConfig)
    sse: SseConfig = msgspec.field(default_factory=SseConfig)
    emulation: EmulationConfig = msgspec.field(default_factory=EmulationConfig)
    uni_websocket: UniWebSocketConfig = msgspec.field(default_factory=UniWebSocketConfig)
    uni_sse: UniSseConfig = msgspec.field(default_factory=UniSseConfig)
    uni_http_stream: UniHttpStreamConfig = msgspec.field(default_factory=UniHttpStreamConfig)
    rpc: RpcConfig = msgspec.field(default_factory=RpcConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    engine: EngineConfig = msgspec.field(default_factory=EngineConfig)
    map_broker: MapBrokerConfig = msgspec.field(default_factory=MapBrokerConfig)
    shared_poll: SharedPollConfig = msgspec.field(default_factory=SharedPollConfig)
    broker: BrokerConfig = msgspec.field(default_factory=BrokerConfig)
    presence_manager: PresenceManagerConfig = msgspec.field(default_factory=PresenceManagerConfig)
    consumers: tuple[ConsumerConfig, ...] = ()
    proxies: tuple[NamedProxy, ...] = ()  # named proxies for namespaces and client events
    webhooks: WebhooksConfig = msgspec.field(default_factory=WebhooksConfig)
    # Operating the node: what it serves besides clients and the API.
    demo: DemoConfig = msgspec.field(default_factory=DemoConfig)
    admin: AdminConfig = msgspec.field(default_factory=AdminConfig)
    prometheus: PrometheusConfig = msgspec.field(default_factory=PrometheusConfig)
    health: HealthConfig = msgspec.field(default_factory=HealthConfig)
    shutdown: ShutdownConfig = msgspec.field(default_factory=ShutdownConfig)
