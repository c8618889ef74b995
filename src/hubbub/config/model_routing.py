"""Where data goes: the engine, the map broker, the broker, the presence manager
and the consumers, as frozen value objects with Centrifugo v6 key names.

Rule: as in ``config.model`` (which re-exports every class here), these
classes hold validated values only; the checks live in ``config.engine_checks``.
"""

from __future__ import annotations

import msgspec

from hubbub.config.backend import TLSConfig

__all__ = [
    "BrokerConfig",
    "ConsumerConfig",
    "EngineConfig",
    "MapBrokerConfig",
    "MapRedisConfig",
    "NatsBrokerConfig",
    "NatsJetStreamConsumer",
    "NatsJetStreamPublicationDataMode",
    "PresenceManagerConfig",
    "RedisConfig",
    "RedisStreamConsumer",
    "RedisStreamPublicationDataMode",
]


class RedisConfig(msgspec.Struct, frozen=True):
    """``engine.redis.*`` (Centrifugo v6 names): the Redis servers shared by the nodes."""

    # "host:port" or a redis:// (rediss://, unix://) URL; several: channels are
    # spread over them (client-side sharding). Empty: 127.0.0.1:6379.
    address: tuple[str, ...] = ()
    # Redis Cluster: each entry one cluster, as comma-separated seed "host:port"s;
    # several: channels are spread over the clusters. Takes precedence over address.
    cluster_address: tuple[str, ...] = ()
    # Redis Sentinel: each entry one master (named sentinel_master_name), found through
    # the comma-separated sentinel "host:port"s of the entry; several: channels are
    # spread over them. Takes precedence over address (cluster_address over it).
    sentinel_address: tuple[str, ...] = ()
    sentinel_master_name: str = ""
    sentinel_user: str = ""  # authentication with the sentinels (user, password above:
    sentinel_password: str = ""  # with the Redis servers)
    sentinel_client_name: str = ""
    prefix: str = "hubbub"  # of every key and Redis channel
    db: int = 0
    user: str = ""
    password: str = ""
    client_name: str = ""  # CLIENT SETNAME of every connection
    # TLS to the Redis servers (and the masters the sentinels name), and to the
    # sentinels themselves (engines/redis_tls.py).
    tls: TLSConfig = msgspec.field(default_factory=TLSConfig)
    sentinel_tls: TLSConfig = msgspec.field(default_factory=TLSConfig)
    # Timeouts
    connect_timeout: float = 1.0
    io_timeout: float = 4.0
    presence_ttl: float = 60.0  # presence entries not refreshed in time disappear


class EngineConfig(msgspec.Struct, frozen=True):
    """``engine.*``: "memory" (one node) or "redis" (several nodes share channels)."""

    type: str = "memory"
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)


class MapRedisConfig(RedisConfig, frozen=True):
    """``map_broker.redis.*``: the Redis servers of map channels, and their sweeper."""

    cleanup_interval: float = 1.0  # how often due key TTLs are swept; -1 (0): never here
    cleanup_batch_size: int = 100  # keys removed per channel per sweep
    idempotent_result_ttl: float = 300.0  # how long an idempotency key is remembered


class MapBrokerConfig(msgspec.Struct, frozen=True):
    """``map_broker.*``: where map channels keep their state (Centrifugo's default is
    memory, whatever the engine: set "redis" to share maps between nodes)."""

    type: str = "memory"
    redis: MapRedisConfig = msgspec.field(default_factory=MapRedisConfig)


class NatsBrokerConfig(msgspec.Struct, frozen=True):
    """``broker.nats.*``: the NATS server the nodes publish through."""

    url: str = "nats://127.0.0.1:4222"
    prefix: str = "centrifugo"  # of every subject
    dial_timeout: float = 1.0  # a connection (and its TLS handshake) within this, or an outage
    tls: TLSConfig = msgspec.field(default_factory=TLSConfig)
    allow_wildcards: bool = False


class PresenceManagerConfig(msgspec.Struct, frozen=True):
    """``presence_manager.*`` (Centrifugo v6): presence kept apart from the engine.

    hubbub keeps presence in the engine; an enabled presence manager is refused
    at start rather than ignored (presence would not be where the config says).
    """

    enabled: bool = False
    type: str = "memory"


class RedisStreamPublicationDataMode(msgspec.Struct, frozen=True):
    """``consumers[].redis_stream.publication_data_mode.*``: an entry's payload value is
    the publication's data; the channels and options are other values of the entry."""

    enabled: bool = False
    channels_value: str = "centrifugo-channels"  # comma-separated channel names
    idempotency_key_value: str = "centrifugo-idempotency-key"
    delta_value: str = "centrifugo-delta"  # "true"/"false"
    version_value: str = "centrifugo-version"
    version_epoch_value: str = "centrifugo-version-epoch"
    tags_value_prefix: str = "centrifugo-tag-"  # each such value is one tag


class RedisStreamConsumer(RedisConfig, frozen=True):
    """``consumers[].redis_stream.*`` (Centrifugo v6): the Redis connection keys of
    ``engine.redis`` plus the streams read through one consumer group."""

    streams: tuple[str, ...] = ()
    consumer_group: str = ""
    # An entry taken by a node and not acknowledged within this time (the node died)
    # is taken over by another (XAUTOCLAIM); 0: never.
    visibility_timeout: float = 30.0
    num_workers: int = 1  # entries of one stream applied at once
    payload_value: str = "payload"  # the entry's value holding the command's request
    method_value: str = "method"  # the entry's value naming the API method
    publication_data_mode: RedisStreamPublicationDataMode = msgspec.field(
        default_factory=RedisStreamPublicationDataMode
    )


class NatsJetStreamPublicationDataMode(msgspec.Struct, frozen=True):
    """``consumers[].nats_jetstream.publication_data_mode.*``: a message's body is the
    publication's data; the channels and options are its headers."""

    enabled: bool = False
    channels_header: str = "centrifugo-channels"
    idempotency_key_header: str = "centrifugo-idempotency-key"
    delta_header: str = "centrifugo-delta"
    version_header: str = "centrifugo-version"
    version_epoch_header: str = "centrifugo-version-epoch"
    tags_header_prefix: str = "centrifugo-tag-"


class NatsJetStreamConsumer(msgspec.Struct, frozen=True):
    """``consumers[].nats_jetstream.*`` (Centrifugo v6): a durable pull consumer of an
    existing JetStream stream, shared by every node."""

    url: str = "nats://127.0.0.1:4222"
    credentials_file: str = ""
    username: str = ""
    password: str = ""
    token: str = ""
    stream_name: str = ""
    subjects: tuple[str, ...] = ()  # filter; empty: every subject of the stream
    durable_consumer_name: str = ""
    # The header naming the API method; empty (the default): the body is
    # {"method": ..., "payload": ...}.
    method_header: str = ""
    publication_data_mode: NatsJetStreamPublicationDataMode = msgspec.field(
        default_factory=NatsJetStreamPublicationDataMode
    )
    tls: TLSConfig = msgspec.field(default_factory=TLSConfig)


class ConsumerConfig(msgspec.Struct, frozen=True):
    """One entry of ``consumers[]`` (Centrifugo v6): API commands read from a queue.

    ``redis_stream`` and ``nats_jetstream`` consumers run in every node
    (hubbub.consumers); an enabled consumer of another type loads with one
    warning and is not run (its commands are not applied); the other types'
    sections are accepted and unused.
    """

    name: str = ""
    enabled: bool = False
    type: str = ""
    redis_stream: RedisStreamConsumer = msgspec.field(default_factory=RedisStreamConsumer)
    nats_jetstream: NatsJetStreamConsumer = msgspec.field(default_factory=NatsJetStreamConsumer)


class BrokerConfig(msgspec.Struct, frozen=True):
    """``broker.*`` (Centrifugo v6): a separate PUB/SUB broker, used only when enabled.

    With ``type = "nats"``, channels without history (and join/leave, control)
    travel through NATS; history, channels with history and presence stay with
    the engine.
    """

    enabled: bool = False
    type: str = ""
    nats: NatsBrokerConfig = msgspec.field(default_factory=NatsBrokerConfig)
