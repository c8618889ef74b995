"""Configuration: the frozen model, the loader and the starter-file generator.

Rule: import configuration names from here; ``load_config`` is the only way a
file, the environment or flags become a ``Config``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hubbub.lazy import exports

if TYPE_CHECKING:
    from hubbub.config.generate import generate_config
    from hubbub.config.loader import LoadedConfig, env_var_name, load_config, parse_duration
    from hubbub.config.model import (
        ChannelConfig,
        ChannelOptions,
        ClientConfig,
        Config,
        EngineConfig,
        HttpApiConfig,
        HttpServerConfig,
        LogConfig,
        Namespace,
        RpcConfig,
        SubscriptionTokenConfig,
        TokenConfig,
        WebSocketConfig,
    )

# The names are imported on first use (PEP 562), not with the package: importing a
# module of this package (``hubbub serve`` imports config.generate before it binds
# its port, server/early.py) must not build the whole model first.
_SOURCES = {
    "hubbub.config.generate": ("generate_config",),
    "hubbub.config.loader": ("LoadedConfig", "env_var_name", "load_config", "parse_duration"),
    "hubbub.config.model": (
        "ChannelConfig",
        "ChannelOptions",
        "ClientConfig",
        "Config",
        "EngineConfig",
        "HttpApiConfig",
        "HttpServerConfig",
        "LogConfig",
        "Namespace",
        "RpcConfig",
        "SubscriptionTokenConfig",
        "TokenConfig",
        "WebSocketConfig",
    ),
}
__getattr__, __dir__ = exports("hubbub.config", _SOURCES, globals())

__all__ = [
    "ChannelConfig",
    "ChannelOptions",
    "ClientConfig",
    "Config",
    "EngineConfig",
    "HttpApiConfig",
    "HttpServerConfig",
    "LoadedConfig",
    "LogConfig",
    "Namespace",
    "RpcConfig",
    "SubscriptionTokenConfig",
    "TokenConfig",
    "WebSocketConfig",
    "env_var_name",
    "generate_config",
    "load_config",
    "parse_duration",
]
