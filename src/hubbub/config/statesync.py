"""Checks of the state-synchronisation options: personal channels, cache recovery,
map and shared poll namespaces.

Rule: like the loader's own checks, each refusal names its dotted key and says
what to change; nothing here reads files or the environment. The loader calls
``check_state_options`` once the whole ``Config`` is built.
"""

from __future__ import annotations

import json

from hubbub.config.model import ChannelOptions, Config
from hubbub.errors import ConfigError


def _show(value: object) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


SUBSCRIPTION_TYPES = ("stream", "map", "map_clients", "map_users", "shared_poll")
MAP_MODES = ("ephemeral", "durable", "recoverable", "persistent")
SHARED_POLL_MODES = ("", "versionless", "versioned")
CLIENT_KEYS = ("", "client_id", "user_id")
DATA_FORMATS = ("", "json", "json_object", "binary")
MAP_BROKERS = ("memory", "redis")


def check_state_options(config: Config) -> list[str]:
    """Validate the options of this module's concern; return warnings."""
    _check_personal_channel(config)
    channel = config.channel
    if channel.publication_data_format not in DATA_FORMATS:
        raise ConfigError(
            "channel.publication_data_format",
            f"expected one of {', '.join(map(_show, DATA_FORMATS))}, "
            f"got {_show(channel.publication_data_format)}",
        )
    scopes = [("channel.without_namespace", channel.without_namespace)]
    scopes += [(f"channel.namespaces[{i}]", ns.options) for i, ns in enumerate(channel.namespaces)]
    for path, options in scopes:
        _check_cache_recovery(options, path)
        _check_types(options, path, config)
    if config.map_broker.type not in MAP_BROKERS:
        raise ConfigError(
            "map_broker.type",
            f'{_show(config.map_broker.type)} is not supported: use "memory" or "redis"',
        )
    warnings = []
    maps = any(options.is_map for _, options in scopes)
    if maps and config.engine.type != "memory" and config.map_broker.type == "memory":
        warnings.append(
            "map_broker.type is memory (the default): map channels live on each node "
            'apart; set map_broker.type to "redis" to share them between nodes'
        )
    return warnings


def _check_types(options: ChannelOptions, path: str, config: Config) -> None:
    """subscription_type and what each type needs."""
    kind = options.subscription_type
    if kind not in SUBSCRIPTION_TYPES:
        raise ConfigError(
            f"{path}.subscription_type",
            f"{_show(kind)} is unknown: use one of {', '.join(SUBSCRIPTION_TYPES)}",
        )
    m = options.map
    if options.is_map:
        if m.mode not in MAP_MODES:
            raise ConfigError(
                f"{path}.map.mode",
                f'a {kind} namespace needs "ephemeral", "durable" or "persistent", '
                f"got {_show(m.mode)}",
            )
        if kind == "map" and m.mode != "persistent" and not m.key_ttl:
            raise ConfigError(f"{path}.map.key_ttl", f"required in {m.mode} mode")
        if m.client_key not in CLIENT_KEYS:
            raise ConfigError(
                f"{path}.map.client_key",
                f'expected "", "client_id" or "user_id", got {_show(m.client_key)}',
            )
        if m.min_page_size and m.max_page_size and m.min_page_size > m.max_page_size:
            raise ConfigError(f"{path}.map.min_page_size", "must not exceed map.max_page_size")
        for name, on in (
            ("publish_proxy_enabled", m.publish_proxy_enabled),
            ("remove_proxy_enabled", m.remove_proxy_enabled),
        ):
            if on:  # refused, not ignored: the backend would never see the writes
                raise ConfigError(
                    f"{path}.map.{name}",
                    "map publish and remove proxies are not supported yet: authorise map "
                    "writes with map.allow_publish_* / map.allow_remove_* and the "
                    "on_map_publish hook",
                )
    elif m.remove_client_on_unsubscribe:
        raise ConfigError(
            f"{path}.map.remove_client_on_unsubscribe",
            "requires subscription_type to be a map type",
        )
    if options.publication_data_format not in DATA_FORMATS:
        raise ConfigError(
            f"{path}.publication_data_format",
            f"expected one of {', '.join(map(_show, DATA_FORMATS))}, "
            f"got {_show(options.publication_data_format)}",
        )
    for name, want in (
        ("map_clients_presence_channel_prefix", "map_clients"),
        ("map_users_presence_channel_prefix", "map_users"),
    ):
        prefix = getattr(options, name)
        if prefix:
            _check_presence_target(config, f"{path}.{name}", prefix, want)
    if kind == "shared_poll":
        if options.shared_poll.mode not in SHARED_POLL_MODES:
            raise ConfigError(
                f"{path}.shared_poll.mode",
                f'expected "versionless" or "versioned", got {_show(options.shared_poll.mode)}',
            )
        if not config.shared_poll.hmac_secret_key:
            raise ConfigError(
                "shared_poll.hmac_secret_key",
                f"required: {path} is a shared_poll namespace (tracked keys are signed)",
            )
        name = options.shared_poll.proxy_name
        named = {p.name: p.endpoint for p in config.proxies}
        endpoint = (
            named.get(name, "")
            if name and name != "default"
            else config.channel.proxy.shared_poll_refresh.endpoint
        )
        if endpoint.startswith("grpc://"):
            raise ConfigError(
                f"{path}.shared_poll.proxy_name",
                f"{endpoint} is a gRPC proxy: hubbub polls shared poll backends over HTTP only",
            )


def _check_presence_target(config: Config, key: str, prefix: str, want: str) -> None:
    """A presence prefix must lead to a namespace of the presence type it feeds."""
    boundary = config.channel.namespace_boundary
    probe = prefix + "x"
    target = probe.split(boundary, 1)[0] if boundary in probe else ""
    named = {ns.name: ns.options for ns in config.channel.namespaces}
    options = named.get(target) if target else config.channel.without_namespace
    where = f"namespace {_show(target)}" if target else "channel.without_namespace"
    if options is None:
        raise ConfigError(key, f"{_show(prefix)} leads to namespace {_show(target)}, not defined")
    if options.subscription_type != want:
        raise ConfigError(
            key, f'{_show(prefix)} leads to {where}: its subscription_type must be "{want}"'
        )


def _check_personal_channel(config: Config) -> None:
    personal = config.client.subscribe_to_user_personal_channel
    key = "client.subscribe_to_user_personal_channel"
    if not personal.enabled:
        return
    namespace = personal.personal_channel_namespace
    options: ChannelOptions | None = config.channel.without_namespace
    where = "channel.without_namespace"
    if namespace:
        named = {ns.name: ns.options for ns in config.channel.namespaces}
        options = named.get(namespace)
        where = f"namespace {_show(namespace)}"
        if options is None:
            raise ConfigError(
                f"{key}.personal_channel_namespace",
                f"namespace {_show(namespace)} is not defined in channel.namespaces",
            )
    assert options is not None
    if personal.single_connection and not options.presence:
        raise ConfigError(
            f"{key}.single_connection",
            f"needs presence in {where} (the personal channel's presence counts the "
            "user's connections): set presence to true there",
        )


def _check_cache_recovery(options: ChannelOptions, path: str) -> None:
    if options.auto_cache_recovery and not (
        options.force_recovery and options.force_recovery_mode == "cache"
    ):
        raise ConfigError(
            f"{path}.auto_cache_recovery",
            'needs force_recovery: true and force_recovery_mode: "cache" in the same namespace',
        )
