"""Combinations of configuration values, checked after every value is converted.

Rule: each problem is reported once, naming its dotted key, and a combination
is not checked when one of its keys already has a problem (its value is then
the default, and a complaint about it would mislead). The checks of the other
rooms (engines, proxies, TLS, streams, state synchronisation) run from here too;
each stops at its first problem, which joins the others.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from hubbub.config.backend_checks import check_backend
from hubbub.config.durations import show as _show
from hubbub.config.engine_checks import check_broker, check_redis, check_routing
from hubbub.config.model import AdminConfig, ChannelOptions, Config
from hubbub.config.statesync import check_state_options
from hubbub.config.streams import check_streams
from hubbub.config.transport import check_transport  # TLS and websocket.* (issue 10)
from hubbub.errors import ConfigError

__all__ = ["LOG_LEVELS", "Problems", "validate"]

# Centrifugo's levels (any case), and "warning" as Python spells it.
LOG_LEVELS = ("none", "trace", "debug", "info", "warn", "warning", "error", "fatal")
LOG_FORMATS = ("text", "json")
NAMESPACE_NAME_RE = re.compile(r"^[-a-zA-Z0-9_.]{2,}$")
ENGINE_TYPES = ("memory", "redis")


class Problems:
    """The problems found while loading, and the keys they are about."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def __bool__(self) -> bool:
        return bool(self.errors)

    def add(self, error: ConfigError) -> None:
        self.errors.extend(error.problems)

    def fail(self, key: str, message: str) -> None:
        self.add(ConfigError(key, message))

    def about(self, *keys: str) -> bool:
        """Whether a problem was found in one of ``keys`` (or inside it)."""
        return any(
            error.key == key or error.key.startswith((key + ".", key + "["))
            for error in self.errors
            for key in keys
        )


def validate(config: Config, problems: Problems) -> list[str]:
    """Check value sets and combinations (each problem once); return the warnings.

    A combination is not checked when one of its keys already has a problem:
    its value is the default, and a complaint about it would mislead.
    """
    warnings: list[str] = []
    channel = config.channel
    if not channel.namespace_boundary and not problems.about("channel.namespace_boundary"):
        problems.fail("channel.namespace_boundary", "must not be empty")
    meta_ttl = channel.history_meta_ttl
    _check_options(channel.without_namespace, "channel.without_namespace", meta_ttl, problems)
    if not problems.about("channel.namespaces"):
        seen: set[str] = set()
        for i, ns in enumerate(channel.namespaces):
            key = f"channel.namespaces[{i}]"
            if not NAMESPACE_NAME_RE.match(ns.name):
                pattern = NAMESPACE_NAME_RE.pattern
                problems.fail(
                    f"{key}.name",
                    f"invalid namespace name {_show(ns.name)}: it must match {pattern}",
                )
            elif ns.name in seen:
                problems.fail(f"{key}.name", f"duplicate namespace name {_show(ns.name)}")
            seen.add(ns.name)
            _check_options(ns.options, key, meta_ttl, problems)
    else:
        # A malformed entry shifted the list: check the options of each, not the names.
        for i, ns in enumerate(channel.namespaces):
            _check_options(ns.options, f"channel.namespaces[{i}]", meta_ttl, problems)

    client = config.client
    if client.pong_timeout >= client.ping_interval and not problems.about(
        "client.pong_timeout", "client.ping_interval"
    ):
        problems.fail(
            "client.pong_timeout",
            f"must be less than client.ping_interval ({client.ping_interval:g}s), "
            f"got {client.pong_timeout:g}s",
        )
    server = config.http_server
    if server.internal_port and server.internal_port == server.port:
        problems.fail(
            "http_server.internal_port", f"must differ from http_server.port ({server.port})"
        )
    if client.command_rate_limit and client.command_rate_burst < 1:
        problems.fail("client.command_rate_burst", "must be at least 1 when a rate is set")
    for i, proxy in enumerate(server.trusted_proxies):
        try:
            ipaddress.ip_network(proxy.strip(), strict=False)
        except ValueError:
            problems.fail(
                f"http_server.trusted_proxies[{i}]",
                f"expected an IP address or a network like 10.0.0.0/8, got {_show(proxy)}",
            )
    # The API (and admin, metrics) listen on the internal address when there is an
    # internal port.
    internal_address = server.internal_address if server.internal_port else server.address
    admin_address = server.address if config.admin.external else internal_address
    for key, on, address in (
        ("client.insecure", client.insecure, server.address),
        ("http_api.insecure", config.http_api.insecure, internal_address),
        ("admin.insecure", config.admin.enabled and config.admin.insecure, admin_address),
    ):
        if on and not _is_loopback(address):
            problems.fail(
                key,
                "is only for local development: the address it is served on must be a "
                f"loopback address (127.0.0.1, ::1, localhost), not {_show(address)}",
            )
    _check_log(config, problems)
    if config.engine.type not in ENGINE_TYPES:
        problems.fail(
            "engine.type", f'{_show(config.engine.type)} is unknown: use "memory" or "redis"'
        )
    warnings += _check_admin(config.admin, problems)
    # The other rooms' checks stop at their first problem; it joins the others.
    checks: tuple[Callable[[Config], list[str] | None], ...] = (
        _redis,
        check_broker,
        check_routing,
        check_backend,
        check_transport,
        check_streams,
        check_state_options,  # personal channels, cache recovery, maps, shared poll
    )
    for check in checks:
        try:
            warnings += check(config) or []  # engines, proxies, TLS, streams
        except ConfigError as exc:
            problems.add(exc)
    for key, prefix in (
        ("prometheus.handler_prefix", config.prometheus.handler_prefix),
        ("health.handler_prefix", config.health.handler_prefix),
    ):
        if not prefix.startswith("/"):
            problems.fail(key, f'must start with "/", got {_show(prefix)}')

    api = config.http_api
    if not api.key and not api.insecure and not api.disabled:
        warnings.append(
            "http_api.key is empty: the HTTP API rejects every request until you set it"
        )
    return warnings


def _check_log(config: Config, problems: Problems) -> None:
    log = config.log
    if log.level not in LOG_LEVELS:
        problems.fail(
            "log.level", f"expected one of {', '.join(LOG_LEVELS)}, got {_show(log.level)}"
        )
    if log.format not in LOG_FORMATS:
        problems.fail(
            "log.format", f"expected one of {', '.join(LOG_FORMATS)}, got {_show(log.format)}"
        )


#: Shorter admin secrets could be guessed from a token offline.
MIN_ADMIN_SECRET = 16


def _check_admin(admin: AdminConfig, problems: Problems) -> list[str]:
    """The admin UI is refused unless it is protected: a password and a token
    secret, or ``admin.insecure`` on a loopback address (checked above)."""
    prefix = admin.handler_prefix
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        problems.fail(
            "admin.handler_prefix", f'must start with "/" and not end with one, got {_show(prefix)}'
        )
    if not admin.enabled or admin.insecure:
        return []
    for key, value in (("admin.password", admin.password), ("admin.secret", admin.secret)):
        if not value:
            problems.fail(
                key,
                "is required when admin.enabled is true: set admin.password and admin.secret "
                "(or admin.insecure for local development on a loopback address)",
            )
    if admin.secret and len(admin.secret) < MIN_ADMIN_SECRET:
        return [
            f"admin.secret is shorter than {MIN_ADMIN_SECRET} characters: admin tokens "
            "signed with it could be forged (hubbub genconfig makes a long one)"
        ]
    return []


def _redis(config: Config) -> list[str]:
    warnings = check_redis(config.engine.redis)
    if config.map_broker.type == "redis":
        warnings += check_redis(config.map_broker.redis, "map_broker.redis")
        if config.map_broker.redis.cluster_address:
            raise ConfigError(
                "map_broker.redis.cluster_address",
                "maps on a Redis Cluster are not supported yet: use map_broker.redis.address",
            )
    return warnings


def _check_options(
    options: ChannelOptions, path: str, global_meta_ttl: float, problems: Problems
) -> None:
    if problems.about(path):
        return  # a value of this section is wrong: its combinations are not checked
    if options.history_size > 0 and options.history_ttl == 0:
        problems.fail(f"{path}.history_ttl", "history_size is set: history_ttl is required too")
    if options.history_ttl > 0 and options.history_size == 0:
        problems.fail(f"{path}.history_size", "history_ttl is set: history_size is required too")
    meta_ttl = options.history_meta_ttl or global_meta_ttl
    if options.history_ttl > meta_ttl:
        problems.fail(
            f"{path}.history_ttl",
            f"must not exceed the history meta ttl ({meta_ttl:g}s), got {options.history_ttl:g}s",
        )
    for name in ("force_recovery", "allow_recovery"):
        if getattr(options, name) and not options.history_enabled:
            problems.fail(
                f"{path}.{name}", "recovery needs history: set history_size and history_ttl"
            )
    if options.force_recovery_mode not in ("stream", "cache"):
        problems.fail(
            f"{path}.force_recovery_mode",
            f'expected "stream" or "cache", got {_show(options.force_recovery_mode)}',
        )
    if options.channel_regex:
        try:
            re.compile(options.channel_regex)
        except re.error as exc:
            problems.fail(f"{path}.channel_regex", f"invalid regular expression: {exc}")


def _is_loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False
