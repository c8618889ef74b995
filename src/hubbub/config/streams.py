"""Checks of the keys of the non-WebSocket transports and of delta compression.

Rule: a key that changes how clients are carried is honoured or refused with a
``ConfigError`` naming it: a handler path that is not a path, two endpoints on
one path, a delta type hubbub does not know.
"""

from __future__ import annotations

import re

from hubbub.config.model import ChannelOptions, Config
from hubbub.errors import ConfigError

__all__ = ["DELTA_TYPES", "check_streams", "stream_endpoints"]

#: Delta types a namespace may allow (``allowed_delta_types``).
DELTA_TYPES = ("fossil",)
_PATH = re.compile(r"/[^\s?#]*")


def stream_endpoints(config: Config) -> list[tuple[str, str]]:
    """(key of the handler prefix, path) of every enabled non-WebSocket endpoint."""
    endpoints: list[tuple[str, str]] = []
    if config.http_stream.enabled:
        endpoints.append(("http_stream.handler_prefix", config.http_stream.handler_prefix))
    if config.sse.enabled:
        endpoints.append(("sse.handler_prefix", config.sse.handler_prefix))
    if config.http_stream.enabled or config.sse.enabled:
        endpoints.append(("emulation.handler_prefix", config.emulation.handler_prefix))
    for name in ("uni_websocket", "uni_sse", "uni_http_stream"):
        section = getattr(config, name)
        if section.enabled:
            endpoints.append((f"{name}.handler_prefix", section.handler_prefix))
    return endpoints


def check_streams(config: Config) -> list[str]:
    """Refuse what cannot be served; return warnings."""
    seen: dict[str, str] = {}
    for key, path in stream_endpoints(config):
        if not _PATH.fullmatch(path):
            raise ConfigError(key, f"must be a path starting with /, got {path!r}")
        if path in seen:
            raise ConfigError(key, f"{path} is also {seen[path]}: every endpoint needs its own")
        seen[path] = key
    for key in (
        "http_stream.max_request_body_size",
        "sse.max_request_body_size",
        "emulation.max_request_body_size",
        "uni_sse.max_request_body_size",
        "uni_http_stream.max_request_body_size",
        "uni_websocket.message_size_limit",
    ):
        section, name = key.split(".")
        if getattr(getattr(config, section), name) <= 0:
            raise ConfigError(key, "must be more than 0")
    _check_deltas(config.channel.without_namespace, "channel.without_namespace")
    for i, namespace in enumerate(config.channel.namespaces):
        _check_deltas(namespace.options, f"channel.namespaces[{i}]")
    return []


def _check_deltas(options: ChannelOptions, path: str) -> None:
    for kind in options.allowed_delta_types:
        if kind not in DELTA_TYPES:
            raise ConfigError(
                f"{path}.allowed_delta_types", f'unknown delta type {kind!r}: use "fossil"'
            )
    # Map subscriptions are always positioned (their change stream): no history needed.
    if options.allowed_delta_types and not options.history_enabled and not options.is_map:
        raise ConfigError(
            f"{path}.allowed_delta_types",
            "delta compression needs positioned subscribers: set history_size and history_ttl",
        )
