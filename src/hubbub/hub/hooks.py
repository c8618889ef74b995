"""Application hooks: async Python functions called on client events.

Rule: a hook receives one event object and returns ``None`` (go on as usual)
or a decision object that rewrites the outcome; it denies by raising
``ClientError`` (the reply carries its code) or ``DisconnectRequest`` (the
connection closes with its code). Any other exception is logged and the client
gets error 100 (internal). Notification hooks (disconnect, unsubscribe) return
nothing and their exceptions are only logged.

    @hub.on_connect
    async def authenticate(event: ConnectEvent) -> ConnectDecision | None:
        if event.user == "":
            raise ClientError(Error.UNAUTHORIZED)
        return ConnectDecision(data={"welcome": True}, channels=["news"])
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hubbub.codes import DisconnectInfo

# --- events --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectEvent:
    client: str  # the id the hub gave this connection
    user: str  # from the token; "" when anonymous
    token_present: bool
    data: Any  # the ``data`` the client sent with connect (decoded JSON), or None
    name: str
    version: str
    remote: str  # peer address
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class SubscribeEvent:
    client: str
    user: str
    channel: str
    data: Any


@dataclass(frozen=True, slots=True)
class PublishEvent:
    client: str
    user: str
    channel: str
    data: Any


@dataclass(frozen=True, slots=True)
class MapPublishEvent:
    """A client writes (or, ``removed``, removes) ``key`` of a map channel."""

    client: str
    user: str
    channel: str
    key: str  # after ``map.client_key`` (the client id or user id when configured)
    data: Any  # decoded JSON; None for a removal
    removed: bool


@dataclass(frozen=True, slots=True)
class RPCEvent:
    client: str
    user: str
    method: str
    data: Any


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """An asynchronous ``send`` from the client: no reply is expected."""

    client: str
    user: str
    data: Any


@dataclass(frozen=True, slots=True)
class UnsubscribeEvent:
    client: str
    user: str
    channel: str
    server_side: bool  # the server (API, hub, disconnect) removed the subscription


@dataclass(frozen=True, slots=True)
class DisconnectEvent:
    client: str
    user: str
    code: int
    reason: str


# --- decisions -----------------------------------------------------------------------

_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class ConnectDecision:
    """What an ``on_connect`` hook may change; unset fields keep their value."""

    user: str | None = None
    info: Any = _UNSET  # conn_info shown in presence and publications
    data: Any = _UNSET  # returned to the client in the connect result
    channels: list[str] = field(default_factory=list)  # server-side subscriptions
    expire_at: int | None = None  # unix seconds; 0 disables expiry


@dataclass(frozen=True, slots=True)
class SubscribeDecision:
    info: Any = _UNSET  # chan_info for this subscription
    data: Any = _UNSET  # returned in the subscribe result


@dataclass(frozen=True, slots=True)
class PublishDecision:
    data: Any = _UNSET  # replaces the published data
    skip_history: bool = False


@dataclass(frozen=True, slots=True)
class MapPublishDecision:
    key: str | None = None  # replaces the key
    data: Any = _UNSET  # replaces the data (not for a removal)


@dataclass(frozen=True, slots=True)
class RPCResponse:
    data: Any = None


def is_set(value: Any) -> bool:
    return value is not _UNSET


# --- registry ------------------------------------------------------------------------

ConnectHook = Callable[[ConnectEvent], Awaitable[ConnectDecision | None]]
SubscribeHook = Callable[[SubscribeEvent], Awaitable[SubscribeDecision | None]]
PublishHook = Callable[[PublishEvent], Awaitable[PublishDecision | None]]
MapPublishHook = Callable[[MapPublishEvent], Awaitable[MapPublishDecision | None]]
RPCHook = Callable[[RPCEvent], Awaitable[RPCResponse | Any]]
MessageHook = Callable[[MessageEvent], Awaitable[None]]
UnsubscribeHook = Callable[[UnsubscribeEvent], Awaitable[None]]
DisconnectHook = Callable[[DisconnectEvent], Awaitable[None]]


@dataclass(slots=True)
class Hooks:
    """The hooks an application registered; ``None`` where it registered none."""

    connect: ConnectHook | None = None
    subscribe: SubscribeHook | None = None
    publish: PublishHook | None = None
    map_publish: MapPublishHook | None = None  # client map writes (instead of map.allow_*)
    rpc: RPCHook | None = None
    message: MessageHook | None = None
    unsubscribe: UnsubscribeHook | None = None
    disconnect: DisconnectHook | None = None


def disconnect_event(client: str, user: str, disconnect: DisconnectInfo) -> DisconnectEvent:
    return DisconnectEvent(client, user, disconnect.code, disconnect.reason)
