"""hubbub: a real-time messaging server for WebSocket clients.

It speaks Centrifugo's client protocol and HTTP API, so the existing SDKs and
``cent`` work unchanged. Run it with ``hubbub serve`` or embed it::

    from hubbub import Hub, load_config, attach

    hub = Hub(load_config("config.json").config)

    @hub.on_rpc
    async def rpc(event: RPCEvent) -> RPCResponse: ...

    attach(aiohttp_app, hub)            # routes + lifecycle in your app
    await hub.publish("news", {"x": 1})  # from application code
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hubbub.lazy import exports
from hubbub.version import __version__

if TYPE_CHECKING:
    from hubbub.codes import Disconnect, Error, Unsubscribe
    from hubbub.config import Config, load_config
    from hubbub.errors import ClientError, ConfigError, DisconnectRequest, HubbubError
    from hubbub.hub.hooks import (
        ChannelOverride,
        ConnectDecision,
        ConnectEvent,
        DisconnectEvent,
        MapPublishDecision,
        MapPublishEvent,
        MessageEvent,
        PublishDecision,
        PublishEvent,
        RefreshDecision,
        RefreshEvent,
        RPCEvent,
        RPCResponse,
        SubRefreshDecision,
        SubRefreshEvent,
        SubscribeDecision,
        SubscribeEvent,
        UnsubscribeEvent,
    )
    from hubbub.hub.hub import Hub
    from hubbub.server.app import attach, create_app
    from hubbub.server.run import serve

# The public names are imported on first use (PEP 562), not with the package:
# ``hubbub serve`` and every ``python -m hubbub...`` start import ``hubbub`` first,
# and the whole stack (aiohttp, the proxies' gRPC, JWT) costs more start-up time
# than the server needs before it listens.
_SOURCES = {
    "hubbub.codes": ("Disconnect", "Error", "Unsubscribe"),
    "hubbub.config": ("Config", "load_config"),
    "hubbub.errors": ("ClientError", "ConfigError", "DisconnectRequest", "HubbubError"),
    "hubbub.hub.hooks": (
        "ChannelOverride",
        "ConnectDecision",
        "ConnectEvent",
        "DisconnectEvent",
        "MapPublishDecision",
        "MapPublishEvent",
        "MessageEvent",
        "PublishDecision",
        "PublishEvent",
        "RefreshDecision",
        "RefreshEvent",
        "RPCEvent",
        "RPCResponse",
        "SubRefreshDecision",
        "SubRefreshEvent",
        "SubscribeDecision",
        "SubscribeEvent",
        "UnsubscribeEvent",
    ),
    "hubbub.hub.hub": ("Hub",),
    "hubbub.server.app": ("attach", "create_app"),
    "hubbub.server.run": ("serve",),
}
__getattr__, __dir__ = exports("hubbub", _SOURCES, globals())

__all__ = [
    "ChannelOverride",
    "ClientError",
    "Config",
    "ConfigError",
    "ConnectDecision",
    "ConnectEvent",
    "Disconnect",
    "DisconnectEvent",
    "DisconnectRequest",
    "Error",
    "Hub",
    "HubbubError",
    "MapPublishDecision",
    "MapPublishEvent",
    "MessageEvent",
    "PublishDecision",
    "PublishEvent",
    "RPCEvent",
    "RPCResponse",
    "RefreshDecision",
    "RefreshEvent",
    "SubRefreshDecision",
    "SubRefreshEvent",
    "SubscribeDecision",
    "SubscribeEvent",
    "Unsubscribe",
    "UnsubscribeEvent",
    "__version__",
    "attach",
    "create_app",
    "load_config",
    "serve",
]
