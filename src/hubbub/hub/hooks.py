"""Application hooks: async Python functions called on client events.

Rule: a hook receives one event object and returns ``None`` (go on as usual)
or a decision object that rewrites the outcome; it denies by raising
``ClientError`` (the reply carries its code) or ``DisconnectRequest`` (the
connection closes with its code). Any other exception is logged and the client
gets error 100 (internal). Notification hooks (disconnect, unsubscribe) return
nothing and their exceptions are only logged.

The decision hooks (connect, refresh, subscribe, publish, sub_refresh, rpc)
and Centrifugo's event proxies are one mechanism (``hub.decisions``): an
event is decided by the proxy configured for it, else by the hook registered
for it, else by hubbub's own rules; a proxy's answer becomes the same
decision object a hook returns, with payloads as ``msgspec.Raw`` (JSON text)
where a hook gives Python values. Events carry what the proxy requests carry.

    @hub.on_connect
    async def authenticate(event: ConnectEvent) -> ConnectDecision | None:
        if event.user == "":
            raise ClientError(Error.UNAUTHORIZED)
        return ConnectDecision(data={"welcome": True}, channels=["news"])

Events and decisions are ``msgspec.Struct``s (frozen, made in C: cheap to create
at start-up): built by keyword, compared by value, copied with changes by
``msgspec.structs.replace``; ``dataclasses`` functions do not apply to them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from hubbub.codes import DisconnectInfo

# --- events --------------------------------------------------------------------------


#: Defaults of an event's ``transport`` and ``protocol`` (the hub passes the
#: connection's own: websocket, http_stream, sse, uni_*; json, protobuf).
TRANSPORT = "websocket"
PROTOCOL = "json"


class ConnectEvent(msgspec.Struct, frozen=True):
    client: str  # the id the hub gave this connection
    user: str  # from the token; "" when anonymous
    token_present: bool
    data: Any  # the ``data`` the client sent with connect (decoded JSON), or None
    name: str
    version: str
    remote: str  # peer address
    headers: dict[str, str]  # of the WebSocket upgrade request, lower-case names
    channels: tuple[str, ...] = ()  # the channels the client asks to recover (connect subs)
    transport: str = TRANSPORT
    protocol: str = PROTOCOL


class RefreshEvent(msgspec.Struct, frozen=True):
    """A connection reached its ``expire_at``: extend it, or let it expire."""

    client: str
    user: str
    meta: Any  # the connection's meta (token ``meta`` claim or connect decision), or None
    transport: str = TRANSPORT
    protocol: str = PROTOCOL


class SubscribeEvent(msgspec.Struct, frozen=True):
    client: str
    user: str
    channel: str
    data: Any
    meta: Any = None
    transport: str = TRANSPORT
    protocol: str = PROTOCOL


class PublishEvent(msgspec.Struct, frozen=True):
    client: str
    user: str
    channel: str
    data: Any
    meta: Any = None
    transport: str = TRANSPORT
    protocol: str = PROTOCOL


class SubRefreshEvent(msgspec.Struct, frozen=True):
    """A subscription reached its ``expire_at``: extend it, or let it expire."""

    client: str
    user: str
    channel: str
    meta: Any = None
    transport: str = TRANSPORT
    protocol: str = PROTOCOL


class MapPublishEvent(msgspec.Struct, frozen=True):
    """A client writes (or, ``removed``, removes) ``key`` of a map channel."""

    client: str
    user: str
    channel: str
    key: str  # after ``map.client_key`` (the client id or user id when configured)
    data: Any  # decoded JSON; None for a removal
    removed: bool


class RPCEvent(msgspec.Struct, frozen=True):
    client: str
    user: str
    method: str
    data: Any
    meta: Any = None
    transport: str = TRANSPORT
    protocol: str = PROTOCOL


class MessageEvent(msgspec.Struct, frozen=True):
    """An asynchronous ``send`` from the client: no reply is expected."""

    client: str
    user: str
    data: Any


class UnsubscribeEvent(msgspec.Struct, frozen=True):
    client: str
    user: str
    channel: str
    server_side: bool  # the server (API, hub, disconnect) removed the subscription


class DisconnectEvent(msgspec.Struct, frozen=True):
    client: str
    user: str
    code: int
    reason: str


# --- decisions -----------------------------------------------------------------------

_UNSET: Any = object()
#: The value of a decision field the decider leaves as it is.
UNSET: Any = _UNSET


class ChannelOverride(msgspec.Struct, frozen=True):
    """Namespace options replaced for one subscription; None keeps the namespace's."""

    presence: bool | None = None
    join_leave: bool | None = None
    force_recovery: bool | None = None
    force_positioning: bool | None = None
    force_push_join_leave: bool | None = None


class SubscribeDecision(msgspec.Struct, frozen=True):
    """What an ``on_subscribe`` hook may change (also the options of a server-side
    subscription in ``ConnectDecision.subs``)."""

    info: Any = _UNSET  # chan_info for this subscription
    data: Any = _UNSET  # returned in the subscribe result
    expire_at: int | None = None  # unix seconds: the subscription expires then
    override: ChannelOverride | None = None


class ConnectDecision(msgspec.Struct, frozen=True):
    """What an ``on_connect`` hook may change; unset fields keep their value."""

    user: str | None = None
    info: Any = _UNSET  # conn_info shown in presence and publications
    data: Any = _UNSET  # returned to the client in the connect result
    channels: list[str] = msgspec.field(default_factory=list)  # server-side subscriptions
    expire_at: int | None = None  # unix seconds; 0 disables expiry
    subs: dict[str, SubscribeDecision] = msgspec.field(default_factory=dict)  # with options
    meta: Any = _UNSET  # kept with the connection, never shown to clients


class RefreshDecision(msgspec.Struct, frozen=True):
    """The answer to a RefreshEvent: ``expired`` closes the connection (3005);
    else ``expire_at`` is the new expiry (0: never)."""

    expired: bool = False
    expire_at: int = 0
    info: Any = _UNSET  # replaces conn_info
    meta: Any = _UNSET  # replaces the connection's meta


class SubRefreshDecision(msgspec.Struct, frozen=True):
    """The answer to a SubRefreshEvent: ``expired`` unsubscribes (2501); else
    ``expire_at`` is the new expiry (0: never)."""

    expired: bool = False
    expire_at: int = 0
    info: Any = _UNSET  # replaces chan_info


class PublishDecision(msgspec.Struct, frozen=True):
    data: Any = _UNSET  # replaces the published data
    skip_history: bool = False
    tags: dict[str, str] | None = None  # attached to the publication
    idempotency_key: str = ""  # a repeated key within the engine's window publishes once


class MapPublishDecision(msgspec.Struct, frozen=True):
    key: str | None = None  # replaces the key
    data: Any = _UNSET  # replaces the data (not for a removal)


class RPCResponse(msgspec.Struct, frozen=True):
    data: Any = None


def is_set(value: Any) -> bool:
    return value is not _UNSET


# --- registry ------------------------------------------------------------------------

ConnectHook = Callable[[ConnectEvent], Awaitable[ConnectDecision | None]]
RefreshHook = Callable[[RefreshEvent], Awaitable[RefreshDecision]]
SubscribeHook = Callable[[SubscribeEvent], Awaitable[SubscribeDecision | None]]
SubRefreshHook = Callable[[SubRefreshEvent], Awaitable[SubRefreshDecision]]
PublishHook = Callable[[PublishEvent], Awaitable[PublishDecision | None]]
MapPublishHook = Callable[[MapPublishEvent], Awaitable[MapPublishDecision | None]]
RPCHook = Callable[[RPCEvent], Awaitable[RPCResponse | Any]]
MessageHook = Callable[[MessageEvent], Awaitable[None]]
UnsubscribeHook = Callable[[UnsubscribeEvent], Awaitable[None]]
DisconnectHook = Callable[[DisconnectEvent], Awaitable[None]]


class Hooks(msgspec.Struct):
    """The hooks an application registered; ``None`` where it registered none."""

    connect: ConnectHook | None = None
    refresh: RefreshHook | None = None
    subscribe: SubscribeHook | None = None
    sub_refresh: SubRefreshHook | None = None
    publish: PublishHook | None = None
    map_publish: MapPublishHook | None = None  # client map writes (instead of map.allow_*)
    rpc: RPCHook | None = None
    message: MessageHook | None = None
    unsubscribe: UnsubscribeHook | None = None
    disconnect: DisconnectHook | None = None


_F = TypeVar("_F")


class HookDecorators:
    """``@hub.on_connect`` and its siblings: each registers its function as that hook."""

    hooks: Hooks

    def on_connect(self, fn: _F) -> _F:
        self.hooks.connect = fn  # type: ignore[assignment]
        return fn

    def on_subscribe(self, fn: _F) -> _F:
        self.hooks.subscribe = fn  # type: ignore[assignment]
        return fn

    def on_refresh(self, fn: _F) -> _F:
        """Server-side refresh: asked when a connection expires (see hub.decisions)."""
        self.hooks.refresh = fn  # type: ignore[assignment]
        return fn

    def on_sub_refresh(self, fn: _F) -> _F:
        """Server-side refresh of subscriptions: asked when one expires."""
        self.hooks.sub_refresh = fn  # type: ignore[assignment]
        return fn

    def on_publish(self, fn: _F) -> _F:
        self.hooks.publish = fn  # type: ignore[assignment]
        return fn

    def on_rpc(self, fn: _F) -> _F:
        self.hooks.rpc = fn  # type: ignore[assignment]
        return fn

    def on_message(self, fn: _F) -> _F:
        self.hooks.message = fn  # type: ignore[assignment]
        return fn

    def on_unsubscribe(self, fn: _F) -> _F:
        self.hooks.unsubscribe = fn  # type: ignore[assignment]
        return fn

    def on_disconnect(self, fn: _F) -> _F:
        self.hooks.disconnect = fn  # type: ignore[assignment]
        return fn


def disconnect_event(client: str, user: str, disconnect: DisconnectInfo) -> DisconnectEvent:
    return DisconnectEvent(client, user, disconnect.code, disconnect.reason)
