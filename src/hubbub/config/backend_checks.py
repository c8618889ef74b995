"""Checks of the proxy and webhook configuration; each failure names its key.

Rule: every proxy a namespace or a client event switches on must exist and
have a usable endpoint when the server starts, so that a typo is a startup
error and never a client that is silently refused (or allowed) later. What
is accepted but has no effect in hubbub gives one warning.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hubbub.config.backend import (
    DEFAULT_PROXY_NAME,
    WEBHOOK_EVENTS,
    ProxyOptions,
    StatusTransform,
    StrPairs,
    TLSConfig,
)
from hubbub.config.tls import client_context  # the one builder of client TLS contexts
from hubbub.errors import ConfigError

if TYPE_CHECKING:
    from hubbub.config.model import ChannelOptions, Config

__all__ = ["CHANNEL_PROXY_EVENTS", "check_backend"]

NAME_RE = re.compile(r"^[-a-zA-Z0-9_.]{2,}$")
#: HTTP header names (RFC 9110 tokens).
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: Channel events a namespace can proxy: (event, ChannelOptions field prefix).
CHANNEL_PROXY_EVENTS = ("subscribe", "publish", "sub_refresh")
#: A webhook secret shorter than this is refused: it could be guessed.
MIN_SECRET_LENGTH = 16


def check_backend(config: Config) -> list[str]:
    """Check ``client.proxy``, ``channel.proxy``, ``rpc``, ``proxies`` and ``webhooks``;
    return the warnings."""
    warnings: list[str] = []
    named = _check_named(config, warnings)

    client = config.client
    for event in ("connect", "refresh"):
        proxy = getattr(client.proxy, event)
        by_name = getattr(client, f"{event}_proxy_name")
        key = f"client.proxy.{event}"
        if proxy.enabled or proxy != type(proxy)():
            _check_proxy(proxy, key, warnings, required=proxy.enabled)
        if by_name:
            if proxy.enabled:
                raise ConfigError(
                    f"client.{event}_proxy_name",
                    f"{key}.enabled is true too: use one of them",
                )
            if by_name not in named:
                raise ConfigError(
                    f"client.{event}_proxy_name", f"no entry of proxies[] is named {by_name!r}"
                )
            if not named[by_name]:
                raise ConfigError(
                    f"client.{event}_proxy_name", f"proxy {by_name!r} has no endpoint"
                )

    channel = config.channel
    for event in CHANNEL_PROXY_EVENTS:
        proxy = getattr(channel.proxy, event)
        if proxy != ProxyOptions():
            _check_proxy(proxy, f"channel.proxy.{event}", warnings, required=False)
    if channel.proxy.shared_poll_refresh != ProxyOptions():
        proxy = channel.proxy.shared_poll_refresh
        _check_proxy(proxy, "channel.proxy.shared_poll_refresh", warnings, required=False)
    for path, options in _namespace_options(config):
        if options.subscription_type == "shared_poll":
            name = options.shared_poll.proxy_name or DEFAULT_PROXY_NAME
            _check_reference(
                name,
                default=channel.proxy.shared_poll_refresh,
                default_key="channel.proxy.shared_poll_refresh.endpoint",
                key=f"{path}.shared_poll.proxy_name",
                named=named,
            )
        for event in CHANNEL_PROXY_EVENTS:
            if not getattr(options, f"{event}_proxy_enabled"):
                continue
            name = getattr(options, f"{event}_proxy_name")
            _check_reference(
                name,
                default=getattr(channel.proxy, event),
                default_key=f"channel.proxy.{event}.endpoint",
                key=f"{path}.{event}_proxy_name",
                named=named,
            )

    rpc = config.rpc
    if rpc.proxy != ProxyOptions():
        _check_proxy(rpc.proxy, "rpc.proxy", warnings, required=False)
    seen: set[str] = set()
    rpc_switches = [
        (
            "rpc.without_namespace",
            rpc.without_namespace.proxy_enabled,
            rpc.without_namespace.proxy_name,
        )
    ]
    for i, ns in enumerate(rpc.namespaces):
        key = f"rpc.namespaces[{i}]"
        _check_name(ns.name, f"{key}.name", seen)
        rpc_switches.append((key, ns.proxy_enabled, ns.proxy_name))
    for key, enabled, name in rpc_switches:
        if enabled:
            _check_reference(
                name,
                default=rpc.proxy,
                default_key="rpc.proxy.endpoint",
                key=f"{key}.proxy_name",
                named=named,
            )
    _check_webhooks(config, warnings)
    return warnings


def _namespace_options(config: Config) -> Iterator[tuple[str, ChannelOptions]]:
    yield "channel.without_namespace", config.channel.without_namespace
    for i, ns in enumerate(config.channel.namespaces):
        yield f"channel.namespaces[{i}]", ns.options


def _check_named(config: Config, warnings: list[str]) -> dict[str, str]:
    """``proxies[]``: name -> the key of its entry."""
    seen: set[str] = set()
    named: dict[str, str] = {}
    for i, proxy in enumerate(config.proxies):
        key = f"proxies[{i}]"
        _check_name(proxy.name, f"{key}.name", seen)
        # Without an endpoint an entry is accepted (Centrifugo's own example has
        # one) as long as nothing uses it (_check_reference).
        _check_proxy(proxy, key, warnings, required=False)
        named[proxy.name] = key if proxy.endpoint else ""
        if not proxy.endpoint:
            warnings.append(f"{key}.endpoint is empty: nothing can use proxy {proxy.name!r}")
    return named


def _check_name(name: str, key: str, seen: set[str]) -> None:
    if not NAME_RE.match(name):
        raise ConfigError(key, f"invalid name {name!r}: it must match {NAME_RE.pattern}")
    if name in seen:
        raise ConfigError(key, f"duplicate name {name!r}")
    seen.add(name)


def _check_reference(
    name: str, *, default: ProxyOptions, default_key: str, key: str, named: dict[str, str]
) -> None:
    if name == DEFAULT_PROXY_NAME:
        if not default.endpoint:
            raise ConfigError(
                key, f'the proxy is enabled with name "default" but {default_key} is empty'
            )
    elif name not in named:
        raise ConfigError(key, f"no entry of proxies[] is named {name!r}")
    elif not named[name]:
        raise ConfigError(key, f"proxy {name!r} has no endpoint")


def _check_proxy(proxy: ProxyOptions, key: str, warnings: list[str], *, required: bool) -> None:
    if not proxy.endpoint:
        if required:
            raise ConfigError(f"{key}.endpoint", "is required")
        return
    parts = urlsplit(proxy.endpoint)
    if parts.scheme not in ("http", "https", "grpc") or not parts.hostname:
        raise ConfigError(
            f"{key}.endpoint",
            f"expected http://, https:// or grpc://host:port, got {proxy.endpoint!r}",
        )
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{key}.endpoint", f"invalid port in {proxy.endpoint!r}") from None
    if parts.scheme == "grpc" and (port is None or parts.path not in ("", "/")):
        raise ConfigError(f"{key}.endpoint", f"expected grpc://host:port, got {proxy.endpoint!r}")
    if proxy.timeout <= 0:
        raise ConfigError(f"{key}.timeout", f"must be more than 0, got {proxy.timeout:g}s")
    for i, name in enumerate(proxy.http_headers):
        if not HEADER_NAME_RE.match(name):
            raise ConfigError(f"{key}.http_headers[{i}]", f"invalid header name {name!r}")
    if proxy.grpc_metadata:
        warnings.append(f"{key}.grpc_metadata has no effect: hubbub has no gRPC client transport")
    _check_headers(proxy.http.static_headers, f"{key}.http.static_headers")
    for i, transform in enumerate(proxy.http.status_to_code_transforms):
        _check_transform(
            transform.status_code, transform, f"{key}.http.status_to_code_transforms[{i}]"
        )
    grpc = proxy.grpc
    if bool(grpc.credentials_key) != bool(grpc.credentials_value):
        raise ConfigError(
            f"{key}.grpc.credentials_key", "credentials_key and credentials_value go together"
        )
    if grpc.credentials_key and not grpc.credentials_key.islower():
        raise ConfigError(f"{key}.grpc.credentials_key", "gRPC metadata keys must be lower case")
    tls_key = f"{key}.grpc.tls" if parts.scheme == "grpc" else f"{key}.http.tls"
    _check_tls(grpc.tls if parts.scheme == "grpc" else proxy.http.tls, tls_key, warnings)
    if parts.scheme == "grpc" and grpc.tls.enabled and grpc.tls.insecure_skip_verify:
        # grpcio can not skip verification: refusing beats a setting silently not applied.
        raise ConfigError(
            f"{tls_key}.insecure_skip_verify",
            "is not supported for gRPC proxies: give the backend's CA in server_ca_pem",
        )


def _check_transform(status: int, transform: StatusTransform, key: str) -> None:
    to_error, to_disconnect = transform.to_error, transform.to_disconnect
    if not 100 <= status <= 599:
        raise ConfigError(f"{key}.status_code", f"expected an HTTP status, got {status}")
    if bool(to_error.code) == bool(to_disconnect.code):
        raise ConfigError(key, "set exactly one of to_error.code and to_disconnect.code")
    if to_disconnect.code:
        if not 3000 <= to_disconnect.code <= 4999:
            raise ConfigError(
                f"{key}.to_disconnect.code", f"expected 3000..4999, got {to_disconnect.code}"
            )
        if len(to_disconnect.reason.encode()) > 32:
            raise ConfigError(f"{key}.to_disconnect.reason", "must be at most 32 bytes")


def _check_headers(headers: StrPairs, key: str) -> None:
    for name, value in headers:
        if not HEADER_NAME_RE.match(name):
            raise ConfigError(key, f"invalid header name {name!r}")
        if "\r" in value or "\n" in value:
            raise ConfigError(key, f"the value of {name} has a line break")


def _check_tls(tls: TLSConfig, key: str, warnings: list[str]) -> None:
    if not tls.enabled:
        return
    # The context the proxy will use, built now: a PEM value that does not load (or
    # a key that does not match its certificate) is refused at start naming its key.
    client_context(tls, key)
    if tls.insecure_skip_verify:
        warnings.append(f"{key}.insecure_skip_verify: the backend's certificate is not checked")


def _check_webhooks(config: Config, warnings: list[str]) -> None:
    hooks = config.webhooks
    if not hooks.enabled:
        return
    if config.engine.type == "redis" and config.engine.redis.cluster_address:
        # The queue's scripts touch keys of many slots: it would have to live
        # elsewhere than where the configuration puts the node's data.
        raise ConfigError(
            "webhooks.enabled",
            "the webhook queue does not run on a Redis Cluster (engine.redis.cluster_address) "
            "yet: use a Redis server (address) or Sentinel (sentinel_address)",
        )
    parts = urlsplit(hooks.endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "webhooks.endpoint", f"expected an http:// or https:// URL, got {hooks.endpoint!r}"
        )
    if len(hooks.secret) < MIN_SECRET_LENGTH:
        raise ConfigError(
            "webhooks.secret",
            f"must be at least {MIN_SECRET_LENGTH} characters: receivers check signatures with it",
        )
    for i, name in enumerate(hooks.events):
        if name not in WEBHOOK_EVENTS:
            raise ConfigError(
                f"webhooks.events[{i}]",
                f"unknown event {name!r}: use {', '.join(WEBHOOK_EVENTS)}",
            )
    if hooks.batch_max_size < 1:
        raise ConfigError("webhooks.batch_max_size", "must be at least 1")
    if hooks.max_pending < 1:
        raise ConfigError("webhooks.max_pending", "must be at least 1")
    if hooks.queue_max_length < 1:
        raise ConfigError(
            "webhooks.queue_max_length", "must be at least 1 (the queue is always bounded)"
        )
    if hooks.queue_max_age < 0:
        raise ConfigError("webhooks.queue_max_age", "must be 0 (no age limit) or more")
    for name in ("timeout", "retry_min_delay", "retry_max_delay", "claim_after"):
        if getattr(hooks, name) <= 0:
            raise ConfigError(f"webhooks.{name}", "must be more than 0")
    if hooks.retry_min_delay > hooks.retry_max_delay:
        raise ConfigError("webhooks.retry_min_delay", "must not exceed webhooks.retry_max_delay")
    if hooks.claim_after <= hooks.timeout:
        raise ConfigError(
            "webhooks.claim_after",
            "must exceed webhooks.timeout (a batch still being posted would be sent twice)",
        )
    _check_headers(hooks.static_headers, "webhooks.static_headers")
    if parts.scheme == "https":
        _check_tls(hooks.tls, "webhooks.tls", warnings)
    if config.engine.type != "redis":
        warnings.append(
            "webhooks: with engine.type memory, events waiting for delivery are lost when "
            "the node stops (the Redis engine keeps them)"
        )
