"""The configuration loader's validation: unknown keys are all listed, ignored
Centrifugo keys warn once each, invalid values (engine, channel options,
insecure modes off loopback) are refused naming the key, and the warnings a valid
config gets.

Rule: every test passes ``env=`` explicitly (or clears HUBBUB_* variables), so the
machine's environment never changes a result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hubbub.config import load_config
from hubbub.errors import ConfigError
from tests.config_helpers import API_KEY_WARNING, error_key, load, write

# ---------------------------------------------------------------- unknown and ignored keys


def test_unknown_keys_are_all_listed(tmp_path: Path) -> None:
    data = {
        "foo": 1,
        "channel": {
            "without_namespace": {"histroy_size": 3},
            "namespaces": [{"name": "chat", "bogus": True}],
        },
    }
    path = write(tmp_path, "c.json", json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = info.value.message
    assert message.startswith(
        "unknown keys: channel.namespaces[0].bogus, channel.without_namespace.histroy_size, foo"
    )
    assert "did you mean channel.without_namespace.history_size" in message


def test_ignored_centrifugo_keys_warn_once_each(tmp_path: Path) -> None:
    data = {
        "http_api": {"key": "k", "handler_prefix": "/api", "external": True},
        "admin": {"web_path": "/srv/ui", "web_proxy_address": "http://x"},
        "swagger": {"enabled": True},
        "prometheus": {"enabled": True, "instrument_http_handlers": True},
        "engine": {"type": "memory", "redis": {"address": "redis://x", "cluster_address": []}},
        "http_server": {"tls": {"enabled": False}, "http3": {"enabled": False}},
        "client": {"proxy": {"connect": {"emulated_headers": []}}, "connection_limit": 10},
        "websocket": {"write_timeout": "1s", "read_buffer_size": 1024},
        "rpc": {"without_namespace": {}, "namespaces": [], "ping": {}},
        "channel": {
            "proxy": {"subscribe_stream": {}},
            "without_namespace": {"subscribe_stream_proxy_enabled": True, "batch_max_size": 10},
            "namespaces": [
                {"name": "chat", "subscribe_stream_proxy_name": "p", "allow_tags_filter": True}
            ],
        },
    }
    warnings = load_config(write(tmp_path, "c.json", json.dumps(data)), env={}).warnings
    suffix = " is a Centrifugo option hubbub ignores"
    expected = {
        "http_api.handler_prefix",
        "http_api.external",
        "admin.web_path",
        "admin.web_proxy_address",
        "swagger",
        "prometheus.instrument_http_handlers",
        "client.proxy.connect.emulated_headers",
        "client.connection_limit",
        "websocket.write_timeout",
        "websocket.read_buffer_size",
        "rpc.ping",
        "channel.proxy.subscribe_stream",
        "channel.without_namespace.subscribe_stream_proxy_enabled",
        "channel.without_namespace.batch_max_size",
        "channel.namespaces[0].subscribe_stream_proxy_name",
        "channel.namespaces[0].allow_tags_filter",
    }
    assert sorted(warnings) == sorted(key + suffix for key in expected)


# ---------------------------------------------------------------- invalid values


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"http_server": {"port": "abc"}}, "http_server.port"),
        ({"http_server": {"port": 70000}}, "http_server.port"),
        ({"http_server": {"port": -1}}, "http_server.port"),
        ({"http_server": {"port": True}}, "http_server.port"),
        ({"http_server": {"address": 5}}, "http_server.address"),
        ({"http_server": 5}, "http_server"),
        ({"client": {"insecure": "yes"}}, "client.insecure"),
        ({"client": {"ping_interval": "soon"}}, "client.ping_interval"),
        ({"client": {"stale_close_delay": "-1s"}}, "client.stale_close_delay"),
        ({"client": {"channel_limit": -5}}, "client.channel_limit"),
        ({"client": {"queue_max_size": 1.5}}, "client.queue_max_size"),
        ({"client": {"allowed_origins": "http://a"}}, "client.allowed_origins"),
        ({"client": {"allowed_origins": ["http://a", 1]}}, "client.allowed_origins"),
        ({"client": {"pong_timeout": "25s"}}, "client.pong_timeout"),
        ({"client": {"ping_interval": "5s"}}, "client.pong_timeout"),
        ({"client": {"token": {"hmac_secret_key": 1}}}, "client.token.hmac_secret_key"),
        ({"log": {"level": "loud"}}, "log.level"),
        ({"engine": {"type": "nats"}}, "engine.type"),
        ({"engine": {"redis": {"address": 6379}}}, "engine.redis.address"),
        ({"engine": {"redis": {"address": "localhost"}}}, "engine.redis.address"),
        ({"engine": {"redis": {"address": "http://h:1"}}}, "engine.redis.address"),
        ({"engine": {"redis": {"address": ["h:1", "h:x"]}}}, "engine.redis.address[1]"),
        ({"engine": {"redis": {"address": ["h:1", "h:1"]}}}, "engine.redis.address"),
        ({"engine": {"redis": {"prefix": ""}}}, "engine.redis.prefix"),
        ({"engine": {"redis": {"db": 16}}}, "engine.redis.db"),
        ({"engine": {"redis": {"connect_timeout": "0s"}}}, "engine.redis.connect_timeout"),
        ({"engine": {"redis": {"presence_ttl": 0}}}, "engine.redis.presence_ttl"),
        ({"engine": {"redis": {"adress": "h:1"}}}, "engine.redis.adress"),
        ({"websocket": {"message_size_limit": -1}}, "websocket.message_size_limit"),
        ({"channel": {"namespace_boundary": ""}}, "channel.namespace_boundary"),
        ({"channel": {"namespaces": {"chat": {}}}}, "channel.namespaces"),
        ({"channel": {"namespaces": ["chat"]}}, "channel.namespaces[0]"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, data: dict[str, Any], key: str) -> None:
    assert error_key(tmp_path, data) == key


def test_type_error_message(tmp_path: Path) -> None:
    path = write(tmp_path, "c.json", '{"client": {"insecure": "yes"}}')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(info.value) == 'client.insecure: expected true or false, got "yes"'


def test_unknown_engine_message(tmp_path: Path) -> None:
    path = write(tmp_path, "c.json", '{"engine": {"type": "nats"}}')
    with pytest.raises(ConfigError, match='"nats" is unknown: use "memory" or "redis"'):
        load_config(path, env={})


def test_redis_engine_keys(tmp_path: Path) -> None:
    data = {
        "engine": {
            "type": "redis",
            "redis": {
                "address": ["redis://10.0.0.1:6379/0", "10.0.0.2:6380"],
                "prefix": "app",
                "db": 2,
                "password": "pw",
                "connect_timeout": "500ms",
                "presence_ttl": "30s",
            },
        }
    }
    redis = load_config(write(tmp_path, "c.json", json.dumps(data)), env={}).config.engine.redis
    assert redis.address == ("redis://10.0.0.1:6379/0", "10.0.0.2:6380")
    assert (redis.prefix, redis.db, redis.password) == ("app", 2, "pw")
    assert (redis.connect_timeout, redis.presence_ttl) == (0.5, 30.0)
    one = {"engine": {"type": "redis", "redis": {"address": "127.0.0.1:7000"}}}
    config = load_config(write(tmp_path, "d.json", json.dumps(one)), env={}).config
    assert config.engine.redis.address == ("127.0.0.1:7000",)
    env = {"HUBBUB_ENGINE_TYPE": "redis", "HUBBUB_ENGINE_REDIS_ADDRESS": "a:1 b:2"}
    config = load_config(None, env=env).config
    assert config.engine.type == "redis"
    assert config.engine.redis.address == ("a:1", "b:2")


def test_redis_engine_defaults_to_localhost(tmp_path: Path) -> None:
    from hubbub.engines.factory import engine_from_config
    from hubbub.engines.redis import RedisEngine

    path = write(tmp_path, "c.json", '{"engine": {"type": "redis"}}')
    engine = engine_from_config(load_config(path, env={}).config)
    assert isinstance(engine, RedisEngine)
    assert engine.shard_url("any") == "redis://127.0.0.1:6379"


def ns(**options: Any) -> dict[str, Any]:
    return {"channel": {"namespaces": [{"name": "ok"}, {"name": "chat", **options}]}}


def wn(**options: Any) -> dict[str, Any]:
    return {"channel": {"without_namespace": options}}


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (wn(history_size=10), "channel.without_namespace.history_ttl"),
        (wn(history_ttl="10s"), "channel.without_namespace.history_size"),
        (ns(history_size=10), "channel.namespaces[1].history_ttl"),
        (ns(history_ttl=30), "channel.namespaces[1].history_size"),
        (ns(history_size=-1), "channel.namespaces[1].history_size"),
        (ns(history_ttl="-5s"), "channel.namespaces[1].history_ttl"),
        (
            ns(history_size=1, history_ttl="2h", history_meta_ttl="1h"),
            "channel.namespaces[1].history_ttl",
        ),
        (wn(force_recovery=True), "channel.without_namespace.force_recovery"),
        (ns(allow_recovery=True), "channel.namespaces[1].allow_recovery"),
        (ns(force_recovery_mode="fast"), "channel.namespaces[1].force_recovery_mode"),
        (ns(channel_regex="(["), "channel.namespaces[1].channel_regex"),
        (wn(channel_regex="a)"), "channel.without_namespace.channel_regex"),
        (ns(presence="yes"), "channel.namespaces[1].presence"),
        ({"channel": {"namespaces": [{"presence": True}]}}, "channel.namespaces[0].name"),
        ({"channel": {"namespaces": [{"name": 5}]}}, "channel.namespaces[0].name"),
        ({"channel": {"namespaces": [{"name": "x"}]}}, "channel.namespaces[0].name"),
        ({"channel": {"namespaces": [{"name": "chat room"}]}}, "channel.namespaces[0].name"),
        (
            {"channel": {"namespaces": [{"name": "ab"}, {"name": "ab"}]}},
            "channel.namespaces[1].name",
        ),
    ],
)
def test_invalid_channel_options_name_the_key(
    tmp_path: Path, data: dict[str, Any], key: str
) -> None:
    assert error_key(tmp_path, data) == key


def test_valid_history_and_recovery(tmp_path: Path) -> None:
    data = ns(history_size=5, history_ttl="1m", allow_recovery=True, force_recovery_mode="cache")
    path = write(tmp_path, "c.json", json.dumps({**data, "http_api": {"key": "k"}}))
    options = load_config(path, env={}).config.channel.namespaces[1].options
    assert options.history_enabled and options.force_recovery_mode == "cache"


@pytest.mark.parametrize("field", ["client.insecure", "http_api.insecure"])
@pytest.mark.parametrize("address", ["0.0.0.0", "", "192.168.1.5", "example.com"])
def test_insecure_needs_loopback(field: str, address: str) -> None:
    overrides = {field: True, "http_server.address": address, "http_api.key": "k"}
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides=overrides)
    assert info.value.key == field
    assert "local development" in info.value.message


@pytest.mark.parametrize("address", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
def test_insecure_allowed_on_loopback(address: str) -> None:
    overrides = {"client.insecure": True, "http_api.insecure": True, "http_server.address": address}
    loaded = load_config(env={}, overrides=overrides)
    assert loaded.config.client.insecure and loaded.config.http_api.insecure
    assert loaded.warnings == ()


def test_empty_api_key_warns_only_when_the_api_is_reachable() -> None:
    assert API_KEY_WARNING in load_config(env={}).warnings
    assert load_config(env={}, overrides={"http_api.disabled": True}).warnings == ()
    assert load_config(env={}, overrides={"http_api.key": "k"}).warnings == ()


def test_every_token_kind_may_be_combined() -> None:
    token = {"hmac_secret_key": "a", "rsa_public_key": "b", "ecdsa_public_key": "c"}
    config = load({"client": {"token": token}, "http_api": {"key": "k"}}).config
    assert config.client.token.configured
