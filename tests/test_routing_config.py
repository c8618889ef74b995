"""Keys that change where data goes are honoured or refused naming the key, never ignored.

Honoured: Redis Sentinel (``engine.redis.sentinel_*``, Centrifugo v6's names;
the engine then finds its master through the sentinels; the end-to-end tests
are tests/test_engine_redis_sentinel.py and tests/test_failover.py),
``client_name``, and an embedded ``Hub(config)`` builds the engine the
configuration names, TLS sections of Redis, its sentinels, NATS and the
consumers (tests/test_engine_tls.py connects with them). Refused at start:
Sentinel without a master name, malformed sentinel addresses, NATS wildcard
subscriptions, a separate presence manager, a consumer of an unknown type. Accepted with one
warning: options that only tune how Centrifugo talks to Redis (RESP2 is what
hubbub speaks, reads stay on the master), an enabled consumer of a type hubbub
does not run (Kafka, ...: tests/test_consumers.py runs the others).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hubbub.config.loader import load_config
from hubbub.engines.factory import engine_from_config
from hubbub.engines.memory import MemoryEngine
from hubbub.engines.nats import NatsBroker
from hubbub.engines.redis import RedisEngine
from hubbub.engines.redis_tls import SentinelTlsConnection
from hubbub.errors import ConfigError
from hubbub.hub.hub import Hub

SENTINEL = {
    "type": "redis",
    "redis": {
        "sentinel_address": ["127.0.0.1:26379,127.0.0.1:26380", "10.0.0.9:26379"],
        "sentinel_master_name": "mymaster",
        "sentinel_user": "su",
        "sentinel_password": "sp",
        "sentinel_client_name": "sc",
        "client_name": "hubbub-node",
    },
}


def load(data: dict[str, Any]) -> Any:
    return load_config(None, env={}, base={"http_api": {"key": "k"}, **data})


def refused(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(data)
    return info.value


def test_sentinel_keys_build_a_sentinel_engine() -> None:
    loaded = load({"engine": SENTINEL})
    redis = loaded.config.engine.redis
    assert list(redis.sentinel_address) == SENTINEL["redis"]["sentinel_address"]
    assert (redis.sentinel_master_name, redis.sentinel_user) == ("mymaster", "su")
    assert (redis.sentinel_password, redis.sentinel_client_name) == ("sp", "sc")
    assert redis.client_name == "hubbub-node"
    assert loaded.warnings == ()
    engine = engine_from_config(loaded.config)
    assert isinstance(engine, RedisEngine)
    # Two shards, each one master found through its own sentinels (not 127.0.0.1:6379).
    urls = {engine.shard_url(f"channel{i}") for i in range(50)}
    assert urls == {
        "sentinel mymaster@127.0.0.1:26379,127.0.0.1:26380",
        "sentinel mymaster@10.0.0.9:26379",
    }


def test_one_sentinel_address_may_be_a_string_and_come_from_the_environment() -> None:
    env = {
        "HUBBUB_ENGINE_TYPE": "redis",
        "HUBBUB_ENGINE_REDIS_SENTINEL_ADDRESS": "127.0.0.1:26379",
        "HUBBUB_ENGINE_REDIS_SENTINEL_MASTER_NAME": "m",
    }
    redis = load_config(None, env=env).config.engine.redis
    assert redis.sentinel_address == ("127.0.0.1:26379",)
    data = {
        "engine": {
            "type": "redis",
            "redis": {"sentinel_address": "h:1", "sentinel_master_name": "m"},
        }
    }
    assert load(data).config.engine.redis.sentinel_address == ("h:1",)


def test_cluster_address_takes_precedence_over_sentinel_address() -> None:
    data = {
        "engine": {
            "type": "redis",
            "redis": {"cluster_address": ["127.0.0.1:7000"], "sentinel_address": ["h:1"]},
        }
    }
    engine = engine_from_config(load(data).config)
    assert isinstance(engine, RedisEngine)
    assert engine.shard_url("x") == "redis cluster 127.0.0.1:7000"


def test_an_embedded_hub_uses_the_configured_engine() -> None:
    hub = Hub(load({"engine": {"type": "redis", "redis": {"address": "127.0.0.1:6399"}}}).config)
    assert isinstance(hub.engine, RedisEngine)
    assert hub.engine.shard_url("x") == "redis://127.0.0.1:6399"
    assert isinstance(Hub(load({}).config).engine, MemoryEngine)
    given = MemoryEngine()
    assert Hub(load({"engine": SENTINEL}).config, engine=given).engine is given


@pytest.mark.parametrize(
    ("data", "key", "words"),
    [
        (
            {"engine": {"redis": {"sentinel_address": ["h:1"]}}},
            "engine.redis.sentinel_master_name",
            "must be set",
        ),
        (
            {"engine": {"redis": {"sentinel_address": ["h:1", "h"], "sentinel_master_name": "m"}}},
            "engine.redis.sentinel_address[1]",
            "host:port",
        ),
        (
            {"engine": {"redis": {"sentinel_address": ["h:1,:2"], "sentinel_master_name": "m"}}},
            "engine.redis.sentinel_address[0]",
            "host:port",
        ),
        (
            {"presence_manager": {"enabled": True, "type": "redis", "redis": {"address": "h:1"}}},
            "presence_manager.enabled",
            "not supported",
        ),
        (
            {
                "consumers": [
                    {"name": "a", "enabled": False},
                    {"name": "q", "enabled": True, "type": "rabbitmq"},
                ]
            },
            "consumers[1].type",
            '"rabbitmq" is unknown',
        ),
        (
            {"broker": {"enabled": True, "type": "nats", "nats": {"allow_wildcards": True}}},
            "broker.nats.allow_wildcards",
            "not supported",
        ),
        *(
            (
                {"broker": {"enabled": True, "type": "nats", "nats": {"prefix": prefix}}},
                "broker.nats.prefix",
                "not a NATS subject prefix",
            )
            for prefix in ("my app", "app.*", "app.>", "app..x", ".app", "app.", "a\tb")
        ),
    ],
)  # fmt: skip
def test_keys_hubbub_cannot_honour_are_refused_naming_the_key(
    data: dict[str, Any], key: str, words: str
) -> None:
    error = refused(data)
    assert error.key == key
    assert words in error.message


def test_tls_sections_are_honoured() -> None:
    """Enabled TLS sections load (the system's authorities verify the servers) and
    reach the engine, the sentinels and the NATS connection."""
    tls = {"enabled": True, "server_name": "redis.example"}
    data = {
        "engine": {
            "type": "redis",
            "redis": {
                "sentinel_address": ["127.0.0.1:26379"],
                "sentinel_master_name": "m",
                "tls": tls,
                "sentinel_tls": {"enabled": True},
            },
        },
        "broker": {"enabled": True, "type": "nats", "nats": {"tls": {"enabled": True}}},
        "consumers": [
            {"name": "n", "enabled": True, "type": "nats_jetstream",
             "nats_jetstream": {"stream_name": "S", "durable_consumer_name": "d",
                                "tls": {"enabled": True}}},
        ],
    }  # fmt: skip
    loaded = load_config(None, env={}, base=data)
    assert not [w for w in loaded.warnings if "tls" in w]
    broker = engine_from_config(loaded.config)
    assert isinstance(broker, NatsBroker) and "tls" in broker._tls
    engine = broker.engine
    assert isinstance(engine, RedisEngine)
    pool = engine._shards[0].pool  # type: ignore[attr-defined]
    assert issubclass(pool.connection_class, SentinelTlsConnection)
    assert isinstance(pool.connection_kwargs["tls_context"], ssl.SSLContext)


def test_disabled_sections_and_tuning_options_are_accepted() -> None:
    data = {
        "engine": {
            "type": "redis",
            "redis": {
                "tls": {"enabled": False},
                "force_resp2": True,
                "replica_client": {"enabled": True},
            },
        },
        "presence_manager": {"enabled": False, "type": "redis", "redis": {"address": "h:1"}},
        "consumers": [{"name": "later", "enabled": False, "type": "postgresql", "postgresql": {}}],
        "broker": {"enabled": False, "nats": {"allow_wildcards": True}},
    }
    warnings = load(data).warnings
    suffix = " is a Centrifugo option hubbub ignores"
    assert sorted(warnings) == sorted(
        key + suffix
        for key in (
            "engine.redis.force_resp2",
            "engine.redis.replica_client",
            "presence_manager.redis",
            "consumers[0].postgresql",
        )
    )


def test_an_enabled_kafka_consumer_is_one_warning_not_a_refusal() -> None:
    data = {
        "consumers": [
            {"name": "a", "enabled": False},
            {"name": "k", "enabled": True, "type": "kafka", "kafka": {"brokers": ["h:1"]}},
        ]
    }
    warnings = [w for w in load(data).warnings if "consumers" in w]
    assert len(warnings) == 1
    assert warnings[0].startswith("consumers[1]: the kafka consumer is not implemented")


def test_checkconfig_names_the_refused_key(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"presence_manager": {"enabled": True, "type": "redis"}}))
    done = subprocess.run(
        [sys.executable, "-m", "hubbub.cli.main", "checkconfig", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "presence_manager.enabled" in done.stderr
    assert "Traceback" not in done.stderr
