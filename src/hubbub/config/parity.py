"""Centrifugo 6.8 parity: the options hubbub accepts without implementing them.

Rule: every key of Centrifugo 6.8's configuration loads. A key hubbub implements
is a field of the model; one it does not is named in ``IGNORED`` (a name stands
for its whole subtree) and is accepted with one warning - unless its value asks
for something whose absence would send data somewhere else or weaken security:
``refuse_unimplemented`` refuses such a value, naming the key and what to do
instead. The names come from Centrifugo's configuration types
(``internal/configtypes``); key names are facts, the reasons are ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hubbub.config.backend import ChannelProxyConfig, ProxyGrpcOptions, ProxyOptions
from hubbub.config.model import (
    AdminConfig,
    BrokerConfig,
    ChannelOptions,
    ClientConfig,
    Config,
    ConsumerConfig,
    EngineConfig,
    HttpApiConfig,
    HttpServerConfig,
    MapBrokerConfig,
    MapRedisConfig,
    NatsBrokerConfig,
    PresenceManagerConfig,
    PrometheusConfig,
    RedisConfig,
    RpcConfig,
    SubscriptionTokenConfig,
    TokenConfig,
    UniHttpStreamConfig,
    UniSseConfig,
    UniWebSocketConfig,
    WebSocketConfig,
)
from hubbub.errors import ConfigError


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TOKEN_IGNORED = _names(
    "audience_regex issuer_regex user_id_claim insecure_skip_jwks_endpoint_safety_check"
)

#: Centrifugo options hubbub accepts but does not implement (one warning each), by
#: the model class whose section holds them (base classes' names apply too).
IGNORED: dict[type, frozenset[str]] = {
    Config: _names(
        """swagger debug opentelemetry graphite usage_stats
        grpc_api unified_proxy uni_grpc webtransport node
        controller dev init pid_file enable_unreleased_features tls"""
    ),
    HttpServerConfig: _names("h2c_external"),
    HttpApiConfig: _names("handler_prefix external error_mode"),
    ClientConfig: _names(
        """connection_limit
        connection_rate_limit concurrency disallow_anonymous_connection_tokens
        allowed_delta_types expired_sub_close_delay presence_update_interval
        channel_position_check_delay channel_position_max_time_lag
        connect_include_server_time insecure_skip_token_signature_verify
        user_id_http_header
        connect_code_to_unidirectional_disconnect"""
    ),
    TokenConfig: _TOKEN_IGNORED,
    SubscriptionTokenConfig: _TOKEN_IGNORED,
    ChannelProxyConfig: _names("subscribe_stream map_publish map_remove cache_empty state"),
    ChannelOptions: _names(
        """subscribe_stream_proxy_enabled subscribe_stream_proxy_name
        subscribe_stream_proxy_bidirectional subscribe_stream_bidirectional
        allow_tags_filter batch_max_size batch_max_delay batch_flush_latest"""
    ),
    ProxyOptions: _names("emulated_headers"),
    ProxyGrpcOptions: _names("static_metadata"),
    RpcConfig: _names("ping ping_method"),
    # Buffer sizes tune gorilla/websocket; hubbub's writes are not per-message
    # (slow clients are cut by client.queue_max_size, not a write timeout).
    WebSocketConfig: _names(
        "read_buffer_size write_buffer_size use_write_buffer_pool write_timeout"
    ),
    UniWebSocketConfig: _names(
        """compression compression_min_size compression_level read_buffer_size
        use_write_buffer_pool write_buffer_size write_timeout join_push_messages
        decompressed_message_size_limit disable_closing_handshake disable_disconnect_push"""
    ),
    AdminConfig: _names("web_path web_proxy_address"),
    PrometheusConfig: _names(
        "instrument_http_handlers recovered_publications_histogram native_histograms"
    ),
    UniSseConfig: _names("connect_code_to_http_response"),
    UniHttpStreamConfig: _names("connect_code_to_http_response"),
    EngineConfig: _names(""),
    BrokerConfig: _names("name redis postgres redisnats"),
    NatsBrokerConfig: _names("write_timeout raw_mode"),
    # RESP2 is what hubbub speaks anyway; the presence layout, reads from replicas and
    # Redis lists for history are Centrifugo's choices (reads stay on the master here).
    RedisConfig: _names(
        """force_resp2 presence_hash_field_ttl presence_user_mapping replica_client
        history_use_lists"""
    ),
    PresenceManagerConfig: _names("redis"),
    ConsumerConfig: _names("postgresql kafka google_pub_sub aws_sqs azure_service_bus"),
    MapBrokerConfig: _names("postgres"),
    MapRedisConfig: _names("skip_pub_sub"),
}

#: Where the usual "a Centrifugo option hubbub ignores" would mislead.
REASONS: dict[str, str] = {
    "tls": (
        "tls is not a Centrifugo v6 option (v5 kept TLS here, v6 reads http_server.tls): "
        "ignored, as Centrifugo 6.8 does"
    ),
    "unified_proxy": "unified_proxy is not a Centrifugo v6 option: ignored",
}

#: Values of options hubbub does not apply that are refused: (dotted key, why and
#: what to do). Each would otherwise send data elsewhere than asked, or in the
#: clear. (engine.redis, broker.nats, presence_manager and consumers have their
#: own refusals and warnings: config/engine_checks.py.)
_REFUSED: tuple[tuple[str, str], ...] = (
    (
        "map_broker.redis.sentinel_address",
        "maps through Redis Sentinel are not supported yet: list the Redis server in "
        "map_broker.redis.address",
    ),
    (
        "broker.nats.raw_mode.enabled",
        "NATS raw mode (subjects without prefix, data passed as is) is not supported",
    ),
)


def ignored(cls: type) -> frozenset[str]:
    """The ignored option names of ``cls``, including those of its base classes."""
    return frozenset().union(*(IGNORED.get(base, frozenset()) for base in cls.__mro__))


def ignored_warning(key: str) -> str:
    return REASONS.get(key) or f"{key} is a Centrifugo option hubbub ignores"


def refuse_unimplemented(raw: Mapping[str, Any]) -> None:
    """Refuse an ignored option set to a value hubbub can not honour."""
    for key, why in _REFUSED:
        node: Any = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node:  # set: true, or a non-empty list or string
            raise ConfigError(key, why)
