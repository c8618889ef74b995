"""Every option of Centrifugo 6.8's configuration, with Centrifugo's default values.

Transcribed from Centrifugo's configuration types (``internal/configtypes``:
types.go, namespace.go, engine.go, redis.go); the key names and defaults are
facts. ``full_config()`` builds one configuration that sets every key, so a
test can check that each one loads: implemented by hubbub, or accepted with a
warning. Values are the defaults (features off), so nothing here asks for
something hubbub refuses.
"""

from __future__ import annotations

import copy
from typing import Any


def _tls() -> dict[str, Any]:
    return {
        "enabled": False,
        "cert_pem": "",
        "key_pem": "",
        "server_ca_pem": "",
        "client_ca_pem": "",
        "insecure_skip_verify": False,
        "server_name": "",
    }


def _proxy(endpoint: str = "") -> dict[str, Any]:
    """Centrifugo's Proxy: endpoint, timeout and ProxyCommon (squashed)."""
    return {
        "endpoint": endpoint,
        "timeout": "1s",
        "http_headers": [],
        "grpc_metadata": [],
        "emulated_headers": [],
        "binary_encoding": False,
        "include_connection_meta": False,
        "http": {"tls": _tls(), "static_headers": {}, "status_to_code_transforms": []},
        "grpc": {
            "tls": _tls(),
            "credentials_key": "",
            "credentials_value": "",
            "compression": False,
            "static_metadata": {},
        },
    }


def _redis() -> dict[str, Any]:
    """RedisPrefixed: prefix and Redis (squashed)."""
    return {
        "prefix": "centrifugo",
        "address": ["redis://127.0.0.1:6379"],
        "connect_timeout": "1s",
        "io_timeout": "4s",
        "db": 0,
        "user": "",
        "password": "",
        "client_name": "",
        "force_resp2": False,
        "cluster_address": [],
        "tls": _tls(),
        "sentinel_address": [],
        "sentinel_user": "",
        "sentinel_password": "",
        "sentinel_master_name": "",
        "sentinel_client_name": "",
        "sentinel_tls": _tls(),
        "replica_client": {"enabled": False},
    }


def _postgres(**extra: Any) -> dict[str, Any]:
    return {
        "dsn": "",
        "tls": _tls(),
        "pool_size": 16,
        "num_shards": 8,
        "cleanup_interval": "1m",
        "idempotent_result_ttl": "5m",
        "binary_data": False,
        "stream_retention": "24h",
        "use_notify": False,
        "notify_dsn": "",
        "table_prefix": "cf",
        "skip_schema_init": False,
        "outbox": {"poll_interval": "100ms", "batch_size": 1000},
        "partition_lookahead_days": 2,
        "partition_retention_days": 7,
        **extra,
    }


def _nats() -> dict[str, Any]:
    return {
        "prefix": "centrifugo",
        "url": "nats://localhost:4222",
        "dial_timeout": "1s",
        "write_timeout": "1s",
        "tls": _tls(),
        "allow_wildcards": False,
        "raw_mode": {"enabled": False, "channel_replacements": {}, "prefix": ""},
    }


def _channel_options() -> dict[str, Any]:
    return {
        "presence": False,
        "join_leave": False,
        "force_push_join_leave": False,
        "map_clients_presence_channel_prefix": "",
        "map_users_presence_channel_prefix": "",
        "history_size": 0,
        "history_ttl": "0s",
        "history_meta_ttl": "0s",
        "force_positioning": False,
        "allow_positioning": False,
        "force_recovery": False,
        "allow_recovery": False,
        "force_recovery_mode": "",
        "auto_cache_recovery": False,
        "allowed_delta_types": [],
        "allow_tags_filter": False,
        "delta_publish": False,
        "allow_subscribe_for_anonymous": False,
        "allow_subscribe_for_client": False,
        "allow_publish_for_anonymous": False,
        "allow_publish_for_subscriber": False,
        "allow_publish_for_client": False,
        "allow_presence_for_anonymous": False,
        "allow_presence_for_subscriber": False,
        "allow_presence_for_client": False,
        "allow_history_for_anonymous": False,
        "allow_history_for_subscriber": False,
        "allow_history_for_client": False,
        "allow_user_limited_channels": False,
        "channel_regex": "",
        "publication_data_format": "",
        "subscribe_proxy_enabled": False,
        "subscribe_proxy_name": "default",
        "publish_proxy_enabled": False,
        "publish_proxy_name": "default",
        "sub_refresh_proxy_enabled": False,
        "sub_refresh_proxy_name": "default",
        "subscribe_stream_proxy_enabled": False,
        "subscribe_stream_proxy_name": "default",
        "subscribe_stream_proxy_bidirectional": False,
        "subscription_type": "",
        "map": {
            "mode": "",
            "key_ttl": "0s",
            "ordered": False,
            "stream_size": 0,
            "stream_ttl": "0s",
            "meta_ttl": "0s",
            "remove_client_on_unsubscribe": False,
            "client_key": "",
            "allow_publish_for_client": False,
            "allow_publish_for_subscriber": False,
            "allow_publish_for_anonymous": False,
            "allow_remove_for_client": False,
            "allow_remove_for_subscriber": False,
            "allow_remove_for_anonymous": False,
            "publish_proxy_enabled": False,
            "publish_proxy_name": "default",
            "remove_proxy_enabled": False,
            "remove_proxy_name": "default",
            "default_page_size": 0,
            "min_page_size": 0,
            "max_page_size": 0,
            "live_transition_max_publication_limit": 0,
            "subscribe_catch_up_timeout": "0s",
        },
        "shared_poll": {
            "proxy_name": "",
            "refresh_interval": "0s",
            "refresh_batch_size": 0,
            "max_keys_per_connection": 0,
            "mode": "",
            "channel_shutdown_delay": "0s",
            "track_expired_extra_delay": "0s",
            "publish_enabled": False,
        },
    }


def _token(**extra: Any) -> dict[str, Any]:
    return {
        **extra,
        "hmac_secret_key": "",
        "hmac_previous_secret_key": "",
        "hmac_previous_secret_key_valid_until": 0,
        "rsa_public_key": "",
        "ecdsa_public_key": "",
        "jwks_public_endpoint": "",
        "audience": "",
        "audience_regex": "",
        "issuer": "",
        "issuer_regex": "",
        "user_id_claim": "",
        "insecure_skip_jwks_endpoint_safety_check": False,
    }


def _uni_http(prefix: str) -> dict[str, Any]:
    return {
        "enabled": False,
        "handler_prefix": prefix,
        "max_request_body_size": 65536,
        "connect_code_to_http_response": {"enabled": False, "transforms": []},
    }


def _ws(prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "handler_prefix": prefix,
        "compression": False,
        "compression_min_size": 0,
        "compression_level": 1,
        "read_buffer_size": 0,
        "use_write_buffer_pool": False,
        "write_buffer_size": 0,
        "write_timeout": "1s",
        "message_size_limit": 65536,
        "decompressed_message_size_limit": 1048576,
        **extra,
    }


def _handler(prefix: str) -> dict[str, Any]:
    return {"enabled": False, "handler_prefix": prefix}


_FULL: dict[str, Any] = {
    "http_server": {
        "address": "",
        "port": 8000,
        "internal_address": "",
        "internal_port": 0,
        "tls": _tls(),
        "tls_autocert": {
            "enabled": False,
            "host_whitelist": [],
            "cache_dir": "",
            "email": "",
            "server_name": "",
            "http": False,
            "http_addr": ":80",
        },
        "tls_external": False,
        "internal_tls": _tls(),
        "http3": {"enabled": False},
        "h2c_external": False,
    },
    "log": {"level": "info", "file": ""},
    "engine": {
        "type": "memory",
        "redis": {
            **_redis(),
            "history_use_lists": False,
            "presence_ttl": "60s",
            "presence_hash_field_ttl": False,
            "presence_user_mapping": False,
        },
    },
    "broker": {
        "enabled": False,
        "type": "memory",
        "redis": {**_redis(), "history_use_lists": False},
        "nats": _nats(),
        "postgres": _postgres(),
    },
    "presence_manager": {
        "enabled": False,
        "type": "memory",
        "redis": {
            **_redis(),
            "presence_ttl": "60s",
            "presence_hash_field_ttl": False,
            "presence_user_mapping": False,
        },
    },
    "map_broker": {
        "type": "memory",
        "redis": {
            **_redis(),
            "cleanup_interval": "1s",
            "cleanup_batch_size": 100,
            "idempotent_result_ttl": "5m",
            "skip_pub_sub": False,
        },
        "postgres": _postgres(),
    },
    "controller": {
        "enabled": False,
        "type": "",
        "postgres": {
            "dsn": "",
            "tls": _tls(),
            "pool_size": 8,
            "num_shards": 1,
            "table_prefix": "cf",
            "poll_interval": "50ms",
            "use_notify": True,
            "notify_dsn": "",
            "partition_retention_days": 1,
            "partition_lookahead_days": 2,
            "partition_cleanup_interval": "1m",
            "batch_size": 1000,
            "skip_schema_init": False,
        },
    },
    "shared_poll": {
        "hmac_secret_key": "",
        "hmac_previous_secret_key": "",
        "hmac_previous_secret_key_valid_until": 0,
        "concurrency_limit": 64,
    },
    "client": {
        "proxy": {
            "connect": {"enabled": False, **_proxy()},
            "refresh": {"enabled": False, **_proxy()},
        },
        "allowed_origins": [],
        "token": _token(),
        "subscription_token": _token(enabled=False),
        "allow_anonymous_connect_without_token": False,
        "disallow_anonymous_connection_tokens": False,
        "ping_interval": "25s",
        "pong_timeout": "8s",
        "expired_close_delay": "25s",
        "expired_sub_close_delay": "25s",
        "stale_close_delay": "10s",
        "channel_limit": 128,
        "queue_max_size": 1048576,
        "presence_update_interval": "27s",
        "concurrency": 0,
        "channel_position_check_delay": "40s",
        "channel_position_max_time_lag": "0s",
        "connection_limit": 0,
        "user_connection_limit": 0,
        "connection_rate_limit": 0,
        "connect_include_server_time": False,
        "history_max_publication_limit": 300,
        "recovery_max_publication_limit": 300,
        "insecure_skip_token_signature_verify": False,
        "user_id_http_header": "",
        "insecure": False,
        "subscribe_to_user_personal_channel": {
            "enabled": False,
            "personal_channel_namespace": "",
            "single_connection": False,
        },
        "connect_code_to_unidirectional_disconnect": {"enabled": False, "transforms": []},
    },
    "channel": {
        "proxy": {
            event: _proxy()
            for event in (
                "subscribe",
                "publish",
                "sub_refresh",
                "subscribe_stream",
                "map_publish",
                "map_remove",
                "shared_poll_refresh",
            )
        },
        "without_namespace": _channel_options(),
        "namespaces": [{"name": "ns", **_channel_options()}],
        "history_meta_ttl": "720h",
        "publication_data_format": "",
        "max_length": 255,
        "private_prefix": "$",
        "namespace_boundary": ":",
        "user_boundary": "#",
        "user_separator": ",",
    },
    "rpc": {
        "proxy": _proxy(),
        "without_namespace": {"proxy_enabled": False, "proxy_name": "default"},
        "namespaces": [{"name": "rpcns", "proxy_enabled": False, "proxy_name": "default"}],
        "ping": {"enabled": False, "method": "ping"},
        "namespace_boundary": ":",
    },
    "proxies": [{"name": "backend", **_proxy("http://127.0.0.1:3000/centrifugo")}],
    "http_api": {
        "disabled": False,
        "handler_prefix": "/api",
        "key": "an-api-key",
        "error_mode": "",
        "external": False,
        "insecure": False,
    },
    "grpc_api": {
        "enabled": False,
        "error_mode": "",
        "address": "",
        "port": 10000,
        "key": "",
        "tls": _tls(),
        "reflection": False,
        "max_receive_message_size": 0,
    },
    "consumers": [
        {
            "name": "kafka",
            "enabled": False,
            "type": "kafka",
            "kafka": {"brokers": [], "topics": [], "consumer_group": ""},
        }
    ],
    "websocket": {"disabled": False, **_ws("/connection/websocket")},
    "sse": {"enabled": False, "handler_prefix": "/connection/sse", "max_request_body_size": 65536},
    "http_stream": {
        "enabled": False,
        "handler_prefix": "/connection/http_stream",
        "max_request_body_size": 65536,
    },
    "webtransport": {
        "enabled": False,
        "handler_prefix": "/connection/webtransport",
        "message_size_limit": 65536,
    },
    "uni_sse": _uni_http("/connection/uni_sse"),
    "uni_http_stream": _uni_http("/connection/uni_http_stream"),
    "uni_websocket": {
        "enabled": False,
        **_ws(
            "/connection/uni_websocket",
            disable_closing_handshake=False,
            disable_disconnect_push=False,
            join_push_messages=False,
        ),
    },
    "uni_grpc": {
        "enabled": False,
        "address": "",
        "port": 11000,
        "max_receive_message_size": 0,
        "tls": _tls(),
    },
    "emulation": {"handler_prefix": "/emulation", "max_request_body_size": 65536},
    "admin": {
        "enabled": False,
        "handler_prefix": "",
        "password": "",
        "secret": "",
        "insecure": False,
        "web_path": "",
        "web_proxy_address": "",
        "external": False,
    },
    "prometheus": {
        "enabled": False,
        "handler_prefix": "/metrics",
        "instrument_http_handlers": False,
        "recovered_publications_histogram": False,
        "native_histograms": False,
    },
    "health": _handler("/health"),
    "swagger": _handler("/swagger"),
    "debug": _handler("/debug/pprof"),
    "dev": _handler("/dev"),
    "init": _handler("/connection/init"),
    "opentelemetry": {
        "enabled": False,
        "api": False,
        "consuming": False,
        "google_cloud_adc_auth": False,
    },
    "graphite": {
        "enabled": False,
        "host": "localhost",
        "port": 2003,
        "prefix": "centrifugo",
        "interval": "10s",
        "tags": False,
    },
    "usage_stats": {"disabled": False},
    "node": {"name": "", "info_metrics_aggregate_interval": "60s"},
    "shutdown": {"timeout": "30s"},
    "pid_file": "",
    "enable_unreleased_features": False,
}


def full_config() -> dict[str, Any]:
    """A configuration that sets every Centrifugo 6.8 option (a fresh copy)."""
    return copy.deepcopy(_FULL)


def leaf_keys(data: Any, path: str = "") -> list[str]:
    """The dotted keys of every value that is not an object (lists of objects by index)."""
    if isinstance(data, dict):
        keys: list[str] = []
        for name, value in data.items():
            keys += leaf_keys(value, f"{path}.{name}" if path else name)
        return keys
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        keys = []
        for i, item in enumerate(data):
            keys += leaf_keys(item, f"{path}[{i}]")
        return keys
    return [path]
