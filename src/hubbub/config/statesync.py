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


def check_state_options(config: Config) -> list[str]:
    """Validate the options of this module's concern; return warnings."""
    _check_personal_channel(config)
    channel = config.channel
    _check_cache_recovery(channel.without_namespace, "channel.without_namespace")
    for i, ns in enumerate(channel.namespaces):
        _check_cache_recovery(ns.options, f"channel.namespaces[{i}]")
    return []


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
