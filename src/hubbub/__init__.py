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
from hubbub.version import __version__

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
