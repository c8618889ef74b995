"""Tests of the configuration loader, generator, namespace lookup and config commands.

Rule: every test passes ``env=`` explicitly (or clears HUBBUB_* variables), so the
machine's environment never changes a result.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.cli.config_cmd import checkconfig, genconfig
from hubbub.config import (
    ChannelOptions,
    Config,
    LoadedConfig,
    Namespace,
    generate_config,
    load_config,
    parse_duration,
)
from hubbub.errors import ConfigError

API_KEY_WARNING = "http_api.key is empty: the HTTP API rejects every request until you set it"

JSON_TEXT = """{
  "http_server": {"address": "127.0.0.1", "port": 9000},
  "http_api": {"key": "secret"},
  "client": {
    "token": {"hmac_secret_key": "hmac"},
    "allowed_origins": ["http://a", "http://b"],
    "ping_interval": "20s",
    "pong_timeout": 5
  },
  "channel": {
    "without_namespace": {"presence": true},
    "namespaces": [
      {"name": "chat", "history_size": 10, "history_ttl": "5m", "force_recovery": true}
    ]
  },
  "log": {"level": "debug"}
}
"""

TOML_TEXT = """
[http_server]
address = "127.0.0.1"
port = 9000

[http_api]
key = "secret"

[client]
allowed_origins = ["http://a", "http://b"]
ping_interval = "20s"
pong_timeout = 5

[client.token]
hmac_secret_key = "hmac"

[channel.without_namespace]
presence = true

[[channel.namespaces]]
name = "chat"
history_size = 10
history_ttl = "5m"
force_recovery = true

[log]
level = "debug"
"""

YAML_TEXT = """
http_server:
  address: 127.0.0.1
  port: 9000
http_api:
  key: secret
client:
  token:
    hmac_secret_key: hmac
  allowed_origins: [http://a, http://b]
  ping_interval: 20s
  pong_timeout: 5
channel:
  without_namespace:
    presence: true
  namespaces:
    - name: chat
      history_size: 10
      history_ttl: 5m
      force_recovery: true
log:
  level: debug
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(data: dict[str, Any] | None = None, **env: str) -> LoadedConfig:
    """Load nested ``data`` given as dotted overrides, with ``env`` as the environment."""
    return load_config(env=env, overrides=_flatten(data or {}))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def error_key(tmp_path: Path, data: dict[str, Any]) -> str:
    path = write(tmp_path, "c.json", json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    return info.value.key


# ---------------------------------------------------------------- files and defaults


def test_three_formats_load_the_same_config(tmp_path: Path) -> None:
    configs = [
        load_config(write(tmp_path, "c.json", JSON_TEXT), env={}),
        load_config(write(tmp_path, "c.toml", TOML_TEXT), env={}),
        load_config(write(tmp_path, "c.yaml", YAML_TEXT), env={}),
        load_config(str(write(tmp_path, "c.yml", YAML_TEXT)), env={}),
    ]
    assert all(c == configs[0] for c in configs)
    config = configs[0].config
    assert configs[0].warnings == ()
    assert config.http_server.port == 9000
    assert config.client.allowed_origins == ("http://a", "http://b")
    assert config.client.ping_interval == 20.0
    assert config.client.pong_timeout == 5.0
    assert config.channel.without_namespace.presence is True
    assert config.channel.namespaces == (
        Namespace("chat", ChannelOptions(history_size=10, history_ttl=300.0, force_recovery=True)),
    )
    assert config.log.level == "debug"


def test_unknown_extension_is_read_as_json(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, "hubbub.conf", JSON_TEXT), env={})
    assert loaded.config.http_server.port == 9000


def test_defaults_without_a_file() -> None:
    loaded = load_config(env={})
    assert loaded.config == Config()
    assert loaded.config.http_server.address == "127.0.0.1"
    assert loaded.warnings == (API_KEY_WARNING,)


def test_empty_address_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "c.json", '{"http_server": {"address": ""}, "http_api": {"key": "k"}}')
    assert load_config(path, env={}).config.http_server.address == ""


@pytest.mark.parametrize(
    ("name", "text", "parser"),
    [
        ("bad.json", '{"http_server": ', "JSON"),
        ("bad.toml", "[http_server\nport = 1", "TOML"),
        ("bad.yaml", "http_server: [1, 2\n", "YAML"),
        ("bad.cfg", "not json", "JSON"),
    ],
)
def test_unparsable_file_names_the_file_and_parser(
    tmp_path: Path, name: str, text: str, parser: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path) in info.value.message
    assert f"as {parser}:" in info.value.message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_missing_file_and_non_object_top_level(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.json", env={})
    with pytest.raises(ConfigError, match="top level must be an object"):
        load_config(write(tmp_path, "list.json", "[1, 2]"), env={})


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300s", 300.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2h", 7200.0),
        ("1h2m3.5s", 3723.5),
        ("0", 0.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("250us", 0.00025),
        ("10ns", 1e-08),
        ("-1s", -1.0),
        (30, 30.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "5", "1x", "s", "1.2.3s", "1h 2m", "--1s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(text, key="client.ping_interval")
    assert info.value.key == "client.ping_interval"


@given(st.integers(0, 1000), st.integers(0, 59), st.integers(0, 59))
def test_parse_duration_property(hours: int, minutes: int, seconds: int) -> None:
    assert parse_duration(f"{hours}h{minutes}m{seconds}s") == hours * 3600 + minutes * 60 + seconds


def test_duration_fields_accept_numbers_and_strings() -> None:
    config = load({"client": {"ping_interval": "2m", "pong_timeout": 30}}).config
    assert (config.client.ping_interval, config.client.pong_timeout) == (120.0, 30.0)


# ---------------------------------------------------------------- environment and overrides


def test_env_overrides_file(tmp_path: Path) -> None:
    env = {
        "HUBBUB_HTTP_SERVER_PORT": "9100",
        "HUBBUB_HTTP_API_KEY": "from-env",
        "HUBBUB_CLIENT_TOKEN_HMAC_SECRET_KEY": "env-hmac",
        "HUBBUB_CLIENT_ALLOWED_ORIGINS": "http://x  http://y",
        "HUBBUB_CHANNEL_WITHOUT_NAMESPACE_PRESENCE": "false",
        "HUBBUB_CLIENT_PING_INTERVAL": "1m",
        "HUBBUB_CLIENT_PONG_TIMEOUT": "10",
        "HUBBUB_CHANNEL_NAMESPACES": '[{"name": "news", "presence": true}]',
        "PATH": "/bin",
    }
    loaded = load_config(write(tmp_path, "c.json", JSON_TEXT), env=env)
    config = loaded.config
    assert loaded.warnings == ()
    assert config.http_server.port == 9100
    assert config.http_api.key == "from-env"
    assert config.client.token.hmac_secret_key == "env-hmac"
    assert config.client.allowed_origins == ("http://x", "http://y")
    assert config.channel.without_namespace.presence is False
    assert config.client.ping_interval == 60.0
    assert config.client.pong_timeout == 10.0
    assert config.channel.namespaces == (Namespace("news", ChannelOptions(presence=True)),)


@pytest.mark.parametrize(
    ("word", "value"), [("true", True), ("1", True), ("YES", True), ("no", False), ("0", False)]
)
def test_env_bools(word: str, value: bool) -> None:
    loaded = load_config(env={"HUBBUB_CLIENT_INSECURE": word, "HUBBUB_HTTP_API_KEY": "k"})
    assert loaded.config.client.insecure is value


@pytest.mark.parametrize(
    ("var", "text", "key"),
    [
        ("HUBBUB_HTTP_SERVER_PORT", "abc", "http_server.port"),
        ("HUBBUB_HTTP_SERVER_PORT", "70000", "http_server.port"),
        ("HUBBUB_CLIENT_INSECURE", "maybe", "client.insecure"),
        ("HUBBUB_CLIENT_PING_INTERVAL", "soon", "client.ping_interval"),
        ("HUBBUB_CHANNEL_NAMESPACES", "[{", "channel.namespaces"),
        ("HUBBUB_CHANNEL_NAMESPACES", '[{"name": "x!"}]', "channel.namespaces[0].name"),
    ],
)
def test_env_bad_values_name_the_key(var: str, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={var: text})
    assert info.value.key == key


def test_env_port_error_message() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"HUBBUB_HTTP_SERVER_PORT": "abc"})
    assert 'expected an integer 0..65535, got "abc"' in str(info.value)
    assert "HUBBUB_HTTP_SERVER_PORT" in str(info.value)


def test_unknown_and_ignored_env_vars_warn() -> None:
    env = {"HUBBUB_HTTP_API_KEY": "k", "HUBBUB_NOPE": "1", "HUBBUB_SWAGGER_ENABLED": "true"}
    warnings = load_config(env=env).warnings
    assert any("HUBBUB_NOPE" in w and "unknown" in w for w in warnings)
    assert "swagger is a Centrifugo option hubbub ignores (from HUBBUB_SWAGGER_ENABLED)" in warnings


def test_default_env_is_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HUBBUB_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HUBBUB_HTTP_SERVER_PORT", "9200")
    monkeypatch.setenv("HUBBUB_HTTP_API_KEY", "k")
    assert load_config().config.http_server.port == 9200


def test_overrides_win_over_env_and_file(tmp_path: Path) -> None:
    loaded = load_config(
        write(tmp_path, "c.json", JSON_TEXT),
        env={"HUBBUB_HTTP_SERVER_PORT": "9100"},
        overrides={"http_server.port": 9300, "log.level": "error", "client.insecure": None},
    )
    assert loaded.config.http_server.port == 9300
    assert loaded.config.log.level == "error"
    assert loaded.config.client.insecure is False


def test_override_values_are_type_checked() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides={"http_server.port": "abc"})
    assert info.value.key == "http_server.port"
    assert str(info.value) == 'http_server.port: expected an integer 0..65535, got "abc"'


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


# ---------------------------------------------------------------- generate_config


@pytest.mark.parametrize("fmt", ["json", "toml", "yaml"])
def test_generated_config_round_trips(tmp_path: Path, fmt: str) -> None:
    text = generate_config(fmt)
    loaded = load_config(write(tmp_path, f"c.{fmt}", text), env={})
    assert loaded.warnings == ()
    config = loaded.config
    assert len(config.client.token.hmac_secret_key) >= 40
    assert len(config.http_api.key) >= 40
    assert config.client.allowed_origins == ("http://localhost:8000", "http://127.0.0.1:8000")
    assert (config.http_server.address, config.http_server.port) == ("127.0.0.1", 8000)
    default = config.channel.without_namespace
    assert default.allow_subscribe_for_client and default.allow_publish_for_client
    (chat,) = config.channel.namespaces
    assert chat.name == "chat"
    assert chat.options.history_size == 100 and chat.options.history_ttl == 300.0
    assert chat.options.force_recovery and chat.options.presence and chat.options.join_leave


def test_generated_secrets_are_fresh_or_absent() -> None:
    assert generate_config("json") != generate_config("json")
    assert generate_config("toml", secrets=False) == generate_config("toml", secrets=False)
    with pytest.raises(ValueError):
        generate_config("ini")


# ---------------------------------------------------------------- commands


def test_checkconfig_ok_with_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("HUBBUB_"):
            monkeypatch.delenv(name)
    path = write(tmp_path, "c.json", '{"swagger": {"enabled": true}}')
    assert checkconfig(str(path)) == 0
    out, err = capsys.readouterr()
    assert out == (
        f"config OK: {path}\n"
        "1 option set: 0 implemented, 1 accepted but not implemented (swagger)\n"
    )
    assert "warning: swagger is a Centrifugo option hubbub ignores\n" in err
    assert f"warning: {API_KEY_WARNING}\n" in err


def test_checkconfig_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "c.json", '{"http_server": {"port": "abc"}}')
    assert checkconfig(str(path)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == 'error: http_server.port: expected an integer 0..65535, got "abc"\n'

    assert checkconfig(str(tmp_path / "missing.json")) == 1
    assert "does not exist" in capsys.readouterr().err

    assert checkconfig(str(write(tmp_path, "bad.yaml", "a: [\n"))) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: can not parse config file") and "Traceback" not in err


def test_genconfig_stdout_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert genconfig("yaml", None) == 0
    assert "hmac_secret_key" in capsys.readouterr().out

    target = tmp_path / "hubbub.toml"
    assert genconfig("toml", str(target)) == 0
    assert load_config(target, env={}).warnings == ()
    first = target.read_text()

    assert genconfig("toml", str(target)) == 1
    assert "already exists" in capsys.readouterr().err
    assert target.read_text() == first

    assert genconfig("ini", str(tmp_path / "x.ini")) == 1
    assert "unknown format" in capsys.readouterr().err
