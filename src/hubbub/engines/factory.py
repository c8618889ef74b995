"""Build the engine a configuration asks for.

Rule: the only place that maps ``engine.*`` keys to an Engine; the config was
validated by the loader, so nothing here reads or checks raw values.
"""

from __future__ import annotations

from hubbub.config.model import Config
from hubbub.engines.base import Engine
from hubbub.engines.maps import MapEngine
from hubbub.engines.memory import MemoryEngine
from hubbub.engines.memory_maps import MemoryMapEngine

#: Where ``engine.type = "redis"`` connects when ``engine.redis.address`` is empty.
DEFAULT_REDIS_ADDRESS = "127.0.0.1:6379"


def engine_from_config(config: Config) -> Engine:
    """A new, not yet started engine for ``config.engine`` (and ``config.broker``)."""
    engine = _engine(config)
    broker = config.broker
    if broker.enabled and broker.type == "nats":
        from hubbub.config.tls import client_context
        from hubbub.engines.nats import NatsBroker  # nats-py only when asked for

        tls = broker.nats.tls
        context = client_context(tls, "broker.nats.tls") if tls.enabled else None
        return NatsBroker(
            engine,
            broker.nats.url,
            prefix=broker.nats.prefix,
            dial_timeout=broker.nats.dial_timeout,
            tls=context,
            tls_hostname=tls.server_name if tls.enabled else "",
        )
    return engine


def _engine(config: Config) -> Engine:
    if config.engine.type == "redis":
        from hubbub.engines.redis import RedisEngine  # redis-py only when asked for
        from hubbub.engines.redis_tls import context_for

        redis = config.engine.redis
        return RedisEngine(
            redis.address or (DEFAULT_REDIS_ADDRESS,),
            clusters=redis.cluster_address,
            sentinels=redis.sentinel_address,
            master_name=redis.sentinel_master_name,
            sentinel_user=redis.sentinel_user,
            sentinel_password=redis.sentinel_password,
            sentinel_client_name=redis.sentinel_client_name,
            prefix=redis.prefix,
            db=redis.db,
            user=redis.user,
            password=redis.password,
            client_name=redis.client_name,
            connect_timeout=redis.connect_timeout,
            io_timeout=redis.io_timeout,
            presence_ttl=redis.presence_ttl,
            tls=context_for(redis.tls, "engine.redis.tls"),
            sentinel_tls=context_for(redis.sentinel_tls, "engine.redis.sentinel_tls"),
        )
    return MemoryEngine()


def map_engine_from_config(config: Config) -> MapEngine:
    """A new, not yet started map engine for ``config.map_broker`` (memory by default,
    as in Centrifugo, whatever the engine)."""
    if config.map_broker.type == "redis":
        from hubbub.engines.redis_maps import RedisMapEngine
        from hubbub.engines.redis_tls import context_for

        redis = config.map_broker.redis
        return RedisMapEngine(
            redis.address or (DEFAULT_REDIS_ADDRESS,),
            prefix=redis.prefix,
            db=redis.db,
            user=redis.user,
            password=redis.password,
            connect_timeout=redis.connect_timeout,
            io_timeout=redis.io_timeout,
            cleanup_interval=redis.cleanup_interval,
            cleanup_batch_size=redis.cleanup_batch_size,
            idempotent_result_ttl=redis.idempotent_result_ttl,
            tls=context_for(redis.tls, "map_broker.redis.tls"),
        )
    return MemoryMapEngine()
