"""Checks of the keys that say where data goes: ``engine.redis.*``, ``broker.*``,
``presence_manager.*`` and ``consumers[]``.

Rule: such a key is never ignored: a value hubbub cannot honour stops startup
with a ConfigError naming the key (an address that is not one, Sentinel without
a master name, a TLS section whose PEM values do not load, a broker type hubbub has no
client for, a NATS broker that would leave history or presence inside each
node, a separate presence manager). An enabled consumer of a type hubbub does
not run (kafka, postgresql, ...) loads with one warning naming it, as every
Centrifugo key does; a ``redis_stream`` or ``nats_jetstream`` consumer missing
what Centrifugo requires is refused.
"""

from __future__ import annotations

import re

from hubbub.config.backend import TLSConfig
from hubbub.config.durations import show as _show
from hubbub.config.model import Config, NatsJetStreamConsumer, RedisConfig, RedisStreamConsumer
from hubbub.config.tls import client_context, load_pem
from hubbub.errors import ConfigError

_REDIS_SCHEMES = ("redis", "rediss", "unix")
#: Dot-separated NATS subject tokens, none empty, no whitespace, no wildcard.
_NATS_TOKENS = re.compile(r"[^.\s*>]+(\.[^.\s*>]+)*")


def check_client_tls(tls: TLSConfig, key: str) -> list[str]:
    """A client ``tls`` section (Redis, NATS): when enabled, its context is built now,
    so a PEM value that does not load is refused at start naming its key."""
    if not tls.enabled:
        return []
    client_context(tls, key)
    warnings = []
    if tls.insecure_skip_verify:
        warnings.append(f"{key}.insecure_skip_verify: the server's certificate is not checked")
    if tls.client_ca_pem:
        load_pem(tls.client_ca_pem, f"{key}.client_ca_pem")
        warnings.append(
            f"{key}.client_ca_pem has no effect: it verifies clients, and here hubbub is "
            "the client (server_ca_pem verifies the server)"
        )
    return warnings


def check_redis(redis: RedisConfig, path: str = "engine.redis") -> list[str]:
    """The connection keys of a Redis section; the warnings of its TLS sections."""
    for i, address in enumerate(redis.address):
        key = f"{path}.address[{i}]" if len(redis.address) > 1 else f"{path}.address"
        text = address.strip()
        if "://" in text:
            scheme, _, rest = text.partition("://")
            if scheme not in _REDIS_SCHEMES:
                raise ConfigError(
                    key,
                    f"expected redis://, rediss:// or unix:// (or host:port), got {_show(address)}",
                )
            if scheme == "unix":
                continue
            text = rest.rpartition("@")[2].partition("/")[0].partition("?")[0]
            if text and ":" not in text:
                continue  # a URL may leave the port out (6379)
        host, colon, port = text.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(key, f"expected host:port or a redis:// URL, got {_show(address)}")
    for i, cluster in enumerate(redis.cluster_address):
        key = f"{path}.cluster_address[{i}]"
        seeds = [seed.strip() for seed in cluster.split(",")]
        for seed in seeds:
            host, colon, port = seed.removeprefix("redis://").rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(
                    key, f"expected comma-separated host:port seeds, got {_show(cluster)}"
                )
    for i, sentinels in enumerate(redis.sentinel_address):
        key = f"{path}.sentinel_address[{i}]"
        for sentinel in sentinels.split(","):
            host, colon, port = sentinel.strip().removeprefix("redis://").rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(
                    key, f"expected comma-separated sentinel host:port, got {_show(sentinels)}"
                )
    if redis.sentinel_address and not redis.cluster_address and not redis.sentinel_master_name:
        raise ConfigError(f"{path}.sentinel_master_name", "must be set when sentinel_address is")
    if redis.tls.enabled:
        for address in redis.address:
            if address.strip().startswith("unix://"):
                raise ConfigError(
                    f"{path}.tls.enabled", f"TLS over a unix:// socket is not supported: {address}"
                )
    warnings = check_client_tls(redis.tls, f"{path}.tls")
    if redis.sentinel_address:
        warnings += check_client_tls(redis.sentinel_tls, f"{path}.sentinel_tls")
    if len(set(redis.address)) != len(redis.address):
        raise ConfigError(f"{path}.address", "lists the same address twice")
    if not redis.prefix:
        raise ConfigError(f"{path}.prefix", "must not be empty")
    for key, value in (
        (f"{path}.connect_timeout", redis.connect_timeout),
        (f"{path}.io_timeout", redis.io_timeout),
        (f"{path}.presence_ttl", redis.presence_ttl),
    ):
        if value <= 0:
            raise ConfigError(key, f"must be more than 0, got {value:g}s")
    return warnings


def check_routing(config: Config) -> list[str]:
    """``presence_manager``: refused when enabled; ``consumers``: check_consumers."""
    presence = config.presence_manager
    if presence.enabled:
        raise ConfigError(
            "presence_manager.enabled",
            "a separate presence manager is not supported: presence is kept by the engine "
            f"(engine.type {_show(config.engine.type)}); remove presence_manager",
        )
    return check_consumers(config)


#: Consumer types hubbub runs (hubbub.consumers), and those it only accepts.
RUN_CONSUMERS = ("redis_stream", "nats_jetstream")
ACCEPTED_CONSUMERS = ("kafka", "postgresql", "google_pub_sub", "aws_sqs", "azure_service_bus")


def check_consumers(config: Config) -> list[str]:
    """``consumers[]``: what Centrifugo requires of each enabled one; a warning for
    each enabled one hubbub does not run."""
    warnings: list[str] = []
    for i, consumer in enumerate(config.consumers):
        if not consumer.enabled:
            continue
        key = f"consumers[{i}]"
        if consumer.type in ACCEPTED_CONSUMERS:
            warnings.append(
                f"{key}: the {consumer.type} consumer is not implemented in hubbub: its "
                "commands are not applied (send them to the HTTP API, or use a "
                "redis_stream or nats_jetstream consumer)"
            )
        elif consumer.type == "redis_stream":
            warnings += _check_redis_stream(consumer.redis_stream, f"{key}.redis_stream")
        elif consumer.type == "nats_jetstream":
            warnings += _check_nats_jetstream(consumer.nats_jetstream, f"{key}.nats_jetstream")
        else:
            known = ", ".join((*RUN_CONSUMERS, *ACCEPTED_CONSUMERS))
            raise ConfigError(f"{key}.type", f"{_show(consumer.type)} is unknown: use {known}")
    return warnings


def _check_redis_stream(stream: RedisStreamConsumer, key: str) -> list[str]:
    if not stream.address and not stream.cluster_address and not stream.sentinel_address:
        raise ConfigError(f"{key}.address", "is required (the Redis holding the streams)")
    if stream.cluster_address:
        raise ConfigError(
            f"{key}.cluster_address", "Redis Cluster is not supported for consumers: use address"
        )
    warnings = check_redis(stream, key)
    if not stream.streams or not all(stream.streams):
        raise ConfigError(f"{key}.streams", "must list at least one stream name")
    if not stream.consumer_group:
        raise ConfigError(f"{key}.consumer_group", "is required")
    if stream.num_workers < 1:
        raise ConfigError(f"{key}.num_workers", f"must be at least 1, got {stream.num_workers}")
    mode = stream.publication_data_mode
    if mode.enabled and not mode.channels_value:
        raise ConfigError(f"{key}.publication_data_mode.channels_value", "is required")
    return warnings


def _check_nats_jetstream(nats: NatsJetStreamConsumer, key: str) -> list[str]:
    url = nats.url.strip()
    if not url.startswith(("nats://", "tls://")) or not url.partition("://")[2]:
        raise ConfigError(f"{key}.url", f"expected nats://host:port, got {_show(url)}")
    if not nats.stream_name:
        raise ConfigError(f"{key}.stream_name", "is required")
    if not nats.durable_consumer_name:
        raise ConfigError(f"{key}.durable_consumer_name", "is required")
    mode = nats.publication_data_mode
    if mode.enabled and not mode.channels_header:
        raise ConfigError(f"{key}.publication_data_mode.channels_header", "is required")
    return check_client_tls(nats.tls, f"{key}.tls")


def check_broker(config: Config) -> list[str]:
    broker = config.broker
    if not broker.enabled:
        return []
    if broker.type != "nats":
        raise ConfigError(
            "broker.type", f'{_show(broker.type)} is not supported: use "nats" (or disable broker)'
        )
    url = broker.nats.url.strip()
    if not url.startswith(("nats://", "tls://")) or not url.partition("://")[2]:
        raise ConfigError("broker.nats.url", f"expected nats://host:port, got {_show(url)}")
    prefix = broker.nats.prefix
    if not prefix:
        raise ConfigError("broker.nats.prefix", "must not be empty")
    if not _NATS_TOKENS.fullmatch(prefix):
        # Every subject starts with it: nats-server answers an invalid subject with
        # -ERR, and nats-py then closes the connection for good.
        raise ConfigError(
            "broker.nats.prefix",
            f"{_show(prefix)} is not a NATS subject prefix: dot-separated tokens "
            "without spaces or the wildcards * and >",
        )
    if broker.nats.allow_wildcards:
        raise ConfigError(
            "broker.nats.allow_wildcards",
            "wildcard subscriptions are not supported: channel names are matched exactly",
        )
    if config.engine.type == "memory":
        # NATS carries events only: history and presence would stay inside each node.
        channel = config.channel
        scopes = [("channel.without_namespace", channel.without_namespace)]
        scopes += [
            (f"channel.namespaces[{i}]", ns.options) for i, ns in enumerate(channel.namespaces)
        ]
        for path, options in scopes:
            for name, on in (
                ("history_size", options.history_enabled),
                ("presence", options.presence),
            ):
                if on:
                    raise ConfigError(
                        f"{path}.{name}",
                        "with broker nats and engine.type memory every node would keep its own "
                        'history and presence: use engine.type "redis" (Redis keeps them)',
                    )
    return check_client_tls(broker.nats.tls, "broker.nats.tls")
