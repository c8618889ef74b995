"""Configuration: the frozen model, the loader and the starter-file generator.

Rule: import configuration names from here; ``load_config`` is the only way a
file, the environment or flags become a ``Config``.
"""

from __future__ import annotations

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
