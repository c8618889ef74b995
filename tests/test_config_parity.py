"""Centrifugo 6.8 configuration parity.

Every option of Centrifugo 6.8 loads (tests/centrifugo_keys.py lists them):
hubbub implements it, or accepts it with one warning; ``checkconfig`` reports
which. Only real errors are refused: values hubbub can not honour without
sending data elsewhere or in the clear. Centrifugo's own example configuration
(its internal/config/testdata, transcribed below, in all three formats) is
loads as written: its enabled Kafka consumer with one warning naming it (hubbub
runs redis_stream and nats_jetstream consumers, not Kafka ones).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hubbub.auth.tokens import InvalidToken, TokenVerifier, make_token
from hubbub.config.loader import LOG_LEVELS, load_config
from hubbub.config.model import TokenConfig
from hubbub.engines.factory import map_engine_from_config
from hubbub.engines.redis_maps import RedisMapEngine
from hubbub.errors import ConfigError
from tests.centrifugo_keys import full_config, leaf_keys
from tests.conftest import ServerFactory
from tests.wsclient import connected_client

# Centrifugo's internal/config/testdata (config.json, .yaml, .toml): the same
# configuration in each format; v5's top-level "tls" and a Kafka consumer included.
EXAMPLE_JSON = """{
  "tls": {"enabled": true},
  "client": {
    "allowed_origins": ["http://localhost:3000"],
    "token": {"jwks_public_endpoint": "https://example.com/jwks"},
    "ping_interval": "12s"
  },
  "channel": {
    "without_namespace": {"presence": true},
    "namespaces": [{"name": "ns1", "presence": true}, {"name": "ns2", "presence": false}]
  },
  "proxies": [{"name": "ppp"}],
  "consumers": [
    {
      "name": "kafka",
      "enabled": true,
      "type": "kafka",
      "kafka": {
        "brokers": ["localhost:9092"],
        "topics": ["postgres.public.chat_cdc"],
        "consumer_group": "centrifugo",
        "tls": {"enabled": true, "cert_pem": "xxx"}
      }
    }
  ],
  "unified_proxy": {"http": {"static_headers": {"x": "y"}}},
  "websocket": {"write_timeout": "2s"}
}
"""
EXAMPLE_YAML = """---
tls:
  enabled: true
client:
  allowed_origins:
    - http://localhost:3000
  token:
    jwks_public_endpoint: https://example.com/jwks
  ping_interval: 12s
channel:
  without_namespace:
    presence: true
  namespaces:
    - name: ns1
      presence: true
    - name: ns2
      presence: false
proxies:
  - name: ppp
consumers:
  - name: kafka
    enabled: true
    type: kafka
    kafka:
      brokers:
        - localhost:9092
      topics:
        - postgres.public.chat_cdc
      consumer_group: centrifugo
      tls:
        enabled: true
        cert_pem: xxx
websocket:
  write_timeout: 2s
"""
EXAMPLE_TOML = """[tls]
enabled = true

[client]
allowed_origins = [ "http://localhost:3000" ]
ping_interval = "12s"

  [client.token]
  jwks_public_endpoint = "https://example.com/jwks"

[channel]
  [channel.without_namespace]
  presence = true

  [[channel.namespaces]]
  name = "ns1"
  presence = true

  [[channel.namespaces]]
  name = "ns2"
  presence = false

[[proxies]]
name = "ppp"

[[consumers]]
name = "kafka"
enabled = true
type = "kafka"

  [consumers.kafka]
  brokers = [ "localhost:9092" ]
  topics = [ "postgres.public.chat_cdc" ]
  consumer_group = "centrifugo"

    [consumers.kafka.tls]
    enabled = true
    cert_pem = "xxx"

[websocket]
write_timeout = "2s"
"""
EXAMPLES = {"config.json": EXAMPLE_JSON, "config.yaml": EXAMPLE_YAML, "config.toml": EXAMPLE_TOML}
IGNORES = " is a Centrifugo option hubbub ignores"


def test_every_centrifugo_6_8_option_loads() -> None:
    data = full_config()
    loaded = load_config(None, env={}, base=data)
    ignored = set(loaded.ignored)
    for key in leaf_keys(data):
        covered = key in loaded.implemented or any(
            key == name or key.startswith((name + ".", name + "[")) for name in ignored
        )
        assert covered, f"{key} neither implemented nor accepted"
    # One warning per accepted-but-not-implemented option, naming it.
    for name in ignored:
        assert [w for w in loaded.warnings if w.startswith(name + " ")] == [name + IGNORES]
    # What hubbub implements is most of it: every option of maps and shared poll too.
    assert "channel.namespaces[0].map.subscribe_catch_up_timeout" in loaded.implemented
    assert "map_broker.redis.cleanup_batch_size" in loaded.implemented
    assert "client.token.hmac_previous_secret_key" in loaded.implemented
    assert len(loaded.implemented) > 3 * len(ignored)


KAFKA_WARNING = (
    "consumers[0]: the kafka consumer is not implemented in hubbub: its commands are not "
    "applied (send them to the HTTP API, or use a redis_stream or nats_jetstream consumer)"
)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_centrifugo_example_configs_load(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    # As written, with its enabled Kafka consumer: one warning names it.
    path.write_text(EXAMPLES[name])
    loaded = load_config(path, env={})
    config = loaded.config
    assert config.client.allowed_origins == ("http://localhost:3000",)
    assert config.client.ping_interval == 12.0
    assert config.client.token.jwks_public_endpoint == "https://example.com/jwks"
    assert config.channel.without_namespace.presence
    assert [(ns.name, ns.options.presence) for ns in config.channel.namespaces] == [
        ("ns1", True),
        ("ns2", False),
    ]
    assert [p.name for p in config.proxies] == ["ppp"]
    expected = {"tls", "consumers[0].kafka", "websocket.write_timeout"}
    if name == "config.json":
        expected.add("unified_proxy")
    assert set(loaded.ignored) == expected
    assert any(w.startswith("tls is not a Centrifugo v6 option") for w in loaded.warnings)
    assert KAFKA_WARNING in loaded.warnings
    assert "consumers[0].kafka" + IGNORES not in loaded.warnings  # one warning, not two


def test_checkconfig_reports_implemented_and_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(EXAMPLE_JSON)
    done = subprocess.run(
        [sys.executable, "-m", "hubbub.cli.main", "checkconfig", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [
        f"config OK: {path}",
        "16 options set: 12 implemented, 4 accepted but not implemented "
        "(tls, consumers[0].kafka, unified_proxy, websocket.write_timeout)",
    ]
    assert f"warning: {KAFKA_WARNING}" in done.stderr
    assert "warning: consumers[0].kafka" + IGNORES not in done.stderr


@pytest.mark.parametrize("level", sorted(LOG_LEVELS))
def test_every_centrifugo_log_level_loads(level: str) -> None:
    assert load_config(None, env={}, base={"log": {"level": level}}).config.log.level == level


def test_an_unknown_log_level_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={}, base={"log": {"level": "verbose"}})
    assert info.value.key == "log.level"
    assert "trace" in str(info.value)


def test_empty_centrifugo_defaults_mean_the_default() -> None:
    options = {"subscription_type": "", "force_recovery_mode": ""}
    config = load_config(None, env={}, base={"channel": {"without_namespace": options}}).config
    assert config.channel.without_namespace.subscription_type == "stream"
    assert config.channel.without_namespace.force_recovery_mode == "stream"


_REDIS = {"address": ["127.0.0.1:6379"]}


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (
            {"map_broker": {"redis": {"sentinel_address": "127.0.0.1:26379"}}},
            "map_broker.redis.sentinel_address",
        ),
        (
            {"map_broker": {"type": "redis", "redis": {"cluster_address": ["127.0.0.1:7000"]}}},
            "map_broker.redis.cluster_address",
        ),
        ({"map_broker": {"type": "postgres"}}, "map_broker.type"),
        ({"broker": {"nats": {"raw_mode": {"enabled": True}}}}, "broker.nats.raw_mode.enabled"),
        ({"presence_manager": {"enabled": True, "type": "redis"}}, "presence_manager.enabled"),
        (
            {"channel": {"without_namespace": {"publication_data_format": "xml"}}},
            "channel.without_namespace.publication_data_format",
        ),
        ({"channel": {"publication_data_format": "xml"}}, "channel.publication_data_format"),
        (
            {
                "channel": {
                    "namespaces": [
                        {
                            "name": "board",
                            "subscription_type": "map",
                            "map": {"mode": "persistent", "publish_proxy_enabled": True},
                        }
                    ]
                }
            },
            "channel.namespaces[0].map.publish_proxy_enabled",
        ),
        (
            {
                "channel": {
                    "namespaces": [
                        {
                            "name": "board",
                            "subscription_type": "map",
                            "map": {"mode": "persistent", "remove_proxy_enabled": True},
                        }
                    ]
                }
            },
            "channel.namespaces[0].map.remove_proxy_enabled",
        ),
    ],
)
def test_values_hubbub_can_not_honour_are_refused(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={}, base=data)
    assert info.value.key == key


def test_map_broker_redis_sweeper_options_reach_the_engine() -> None:
    redis = {**_REDIS, "cleanup_batch_size": 7, "idempotent_result_ttl": "90s"}
    for given, expected in (("3s", 3.0), ("-1s", 0.0), (-1, 0.0)):
        data = {"map_broker": {"type": "redis", "redis": {**redis, "cleanup_interval": given}}}
        config = load_config(None, env={}, base=data).config
        assert config.map_broker.redis.cleanup_interval == expected
        engine = map_engine_from_config(config)
        assert isinstance(engine, RedisMapEngine)
        assert engine._cleanup_interval == expected
        assert engine._cleanup_batch == 7
        assert engine._idempotent_ttl == 90


async def test_tokens_of_the_previous_hmac_key_until_it_expires() -> None:
    old, new = "the-old-secret-of-enough-length-xx", "the-new-secret-of-enough-length-xx"
    old_token, new_token = make_token(old, "42"), make_token(new, "43")
    rotating = TokenVerifier(TokenConfig(hmac_secret_key=new, hmac_previous_secret_key=old))
    assert (await rotating.verify_connection(old_token)).user == "42"
    assert (await rotating.verify_connection(new_token)).user == "43"
    expired = TokenVerifier(
        TokenConfig(
            hmac_secret_key=new,
            hmac_previous_secret_key=old,
            hmac_previous_secret_key_valid_until=int(time.time()) - 1,
        )
    )
    with pytest.raises(InvalidToken):
        await expired.verify_connection(old_token)
    assert (await expired.verify_connection(new_token)).user == "43"
    with pytest.raises(InvalidToken):
        await TokenVerifier(TokenConfig(hmac_secret_key=new)).verify_connection(old_token)
    stranger = make_token("a-third-secret-of-enough-length-xx", "44")
    with pytest.raises(InvalidToken):
        await rotating.verify_connection(stranger)


async def test_channel_publication_data_format_applies_to_stream_publishes(
    start_server: ServerFactory,
) -> None:
    server = await start_server(
        {
            "channel": {
                "publication_data_format": "json_object",
                "namespaces": [
                    {"name": "chat", "allow_subscribe_for_client": True},
                    {
                        "name": "free",
                        "allow_subscribe_for_client": True,
                        "publication_data_format": "json",
                    },
                ],
            }
        }
    )
    async with connected_client(server.ws_url, server.token("42")) as client:
        for channel in ("chat:a", "free:a"):
            await client.result("subscribe", {"channel": channel})
        chat = await client.call("publish", {"channel": "chat:a", "data": [1, 2]})
        assert chat["error"]["code"] == 107
        # Permission comes after the data check; allowed data reaches the permission.
        chat = await client.call("publish", {"channel": "chat:a", "data": {"a": 1}})
        assert chat["error"]["code"] == 103
        free = await client.call("publish", {"channel": "free:a", "data": [1, 2]})
        assert free["error"]["code"] == 103


async def test_log_file_receives_the_log(tmp_path: Path) -> None:
    log_file = tmp_path / "hubbub.log"
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "http_server": {"port": 0},
                "http_api": {"key": "k"},
                "log": {"level": "trace", "file": str(log_file)},
            }
        )
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubbub.cli.main",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while "hubbub listening on" not in (log_file.read_text() if log_file.exists() else ""):
            assert process.returncode is None, "hubbub serve exited"
            assert time.monotonic() < deadline, "nothing logged to log.file"
            await asyncio.sleep(0.05)
    finally:
        if process.returncode is None:
            process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), timeout=15)
    assert b"hubbub listening on" not in err  # the file, not stderr
