"""Wire types of the JSON client protocol (version 2), as msgspec Structs.

Rule: field names and meaning follow ``client.proto`` of centrifugal/protocol;
zero values are omitted on encode; payload fields (``data``, ``info``,
``conn_info``, ``chan_info``) are embedded raw JSON (``msgspec.Raw``), never
re-encoded; a ``data`` field may instead hold a ``Binary`` payload (from a
Protobuf client, the API's ``b64data``...: protocol/payload.py says how each
crosses JSON). Unknown fields sent by newer SDKs are ignored.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta, Raw

from hubbub.protocol.payload import NO_DATA as NO_DATA
from hubbub.protocol.payload import Payload

# --- requests (client -> server) ---------------------------------------------------


class SubscribeRequest(msgspec.Struct, omit_defaults=True):
    channel: str = ""
    token: str = ""
    recover: bool = False
    epoch: str = ""
    offset: int = 0
    data: Payload = NO_DATA
    positioned: bool = False
    recoverable: bool = False
    join_leave: bool = False
    delta: str = ""
    tf: Raw = NO_DATA  # a tags filter (FilterNode); hubbub refuses it (107)
    flag: int = 0
    # Map and shared poll subscriptions (client.proto 6.8): the subscription type
    # (0 stream, 1 map, 2 map_clients, 3 map_users, 4 shared_poll) and, for maps,
    # the phase of a paginated subscribe (2 state, 1 stream, 0 live).
    type: int = 0
    phase: int = 0
    cursor: str = ""
    limit: int = 0
    asc: bool = False


class ConnectRequest(msgspec.Struct, omit_defaults=True):
    token: str = ""
    data: Payload = NO_DATA
    subs: dict[str, SubscribeRequest] | None = None
    name: str = ""
    version: str = ""
    headers: dict[str, str] | None = None
    flag: int = 0


class UnsubscribeRequest(msgspec.Struct):
    channel: str = ""


class PublishRequest(msgspec.Struct):
    channel: str = ""
    data: Payload = NO_DATA
    type: int = 0  # 1: a map publish of ``key`` (``removed``: its removal)
    key: str = ""
    removed: bool = False


class PresenceRequest(msgspec.Struct):
    channel: str = ""


class PresenceStatsRequest(msgspec.Struct):
    channel: str = ""


class StreamPosition(msgspec.Struct, omit_defaults=True):
    """A place in a channel's stream: the offset of a publication and the stream's epoch."""

    offset: int = 0
    epoch: str = ""


class HistoryRequest(msgspec.Struct):
    channel: str = ""
    limit: int = 0
    since: StreamPosition | None = None
    reverse: bool = False


class RPCRequest(msgspec.Struct):
    method: str = ""
    data: Payload = NO_DATA


class SendRequest(msgspec.Struct):
    data: Payload = NO_DATA


class RefreshRequest(msgspec.Struct):
    token: str = ""


class KeyedItem(msgspec.Struct, omit_defaults=True):
    """A shared poll key and the version the client has of it (0: none)."""

    key: str = ""
    version: int = 0


class TrackBatch(msgspec.Struct, omit_defaults=True):
    """Keys a shared poll client tracks, with the signature that authorises them."""

    signature: str = ""
    items: list[KeyedItem] | None = None


class SubRefreshRequest(msgspec.Struct):
    channel: str = ""
    token: str = ""
    type: int = 0  # shared poll: 1 track (and untrack), 2 untrack
    track: list[TrackBatch] | None = None
    untrack: list[str] | None = None


class PingRequest(msgspec.Struct):
    pass


class Command(msgspec.Struct):
    """One command: an ``id`` and exactly one method field (none at all is a pong)."""

    id: Annotated[int, Meta(ge=0, le=2**32 - 1)] = 0  # uint32 in client.proto
    connect: ConnectRequest | None = None
    subscribe: SubscribeRequest | None = None
    unsubscribe: UnsubscribeRequest | None = None
    publish: PublishRequest | None = None
    presence: PresenceRequest | None = None
    presence_stats: PresenceStatsRequest | None = None
    history: HistoryRequest | None = None
    ping: PingRequest | None = None
    send: SendRequest | None = None
    rpc: RPCRequest | None = None
    refresh: RefreshRequest | None = None
    sub_refresh: SubRefreshRequest | None = None


# --- shared value types --------------------------------------------------------------


class ClientInfo(msgspec.Struct, omit_defaults=True):
    """Who a connection is: shown in presence, join/leave and publication ``info``.

    ``user`` and ``client`` have no default so they are always encoded, even
    empty (an anonymous user): SDKs read ``info.user`` as a string.
    """

    user: str
    client: str
    conn_info: Raw = NO_DATA
    chan_info: Raw = NO_DATA


class Publication(msgspec.Struct, omit_defaults=True):
    """A publication as stored in history and sent to subscribers.

    Map and shared poll channels use ``key`` (the entry it changes), ``removed``
    (the entry is gone), ``score`` (ordered maps) and ``version`` (shared poll).
    """

    data: Payload = Raw(b"null")
    info: ClientInfo | None = None
    offset: int = 0
    tags: dict[str, str] | None = None
    # Set only on a delta subscriber's copy: ``data`` is a Fossil patch (never stored).
    delta: bool = False
    time: int = 0
    key: str = ""
    removed: bool = False
    score: int = 0
    epoch: str = ""  # shared poll publish: the publisher's epoch (hub-internal)
    version: int = 0
    # Only where JSON is a container (Redis, NATS, API answers): a Binary ``data``
    # as base64, ``data`` absent. Never set on a publication in memory.
    b64data: str = ""


# --- results (server -> client) ------------------------------------------------------


class SubscribeResult(msgspec.Struct, omit_defaults=True):
    expires: bool = False
    ttl: int = 0
    recoverable: bool = False
    epoch: str = ""
    publications: list[Publication] | None = None
    recovered: bool = False
    offset: int = 0
    positioned: bool = False
    data: Payload = NO_DATA
    was_recovering: bool = False
    delta: bool = False  # delta compression agreed: publications' data are JSON strings
    # Map subscriptions: the result type (1), the phase it answers or moves to
    # (2 state, 1 stream, 0 live), the next state page's cursor, state entries.
    type: int = 0
    phase: int = 0
    cursor: str = ""
    state: list[Publication] | None = None
    publish_debounce: int = 0  # milliseconds: the SDK coalesces a key's publishes


class ConnectResult(msgspec.Struct, omit_defaults=True):
    client: str = ""
    version: str = ""
    expires: bool = False
    ttl: int = 0
    data: Payload = NO_DATA
    subs: dict[str, SubscribeResult] | None = None
    ping: int = 0
    pong: bool = False
    session: str = ""
    node: str = ""


class RefreshResult(msgspec.Struct, omit_defaults=True):
    client: str = ""
    version: str = ""
    expires: bool = False
    ttl: int = 0


class SubRefreshResult(msgspec.Struct, omit_defaults=True):
    expires: bool = False
    ttl: int = 0
    items: list[Publication] | None = None  # shared poll: data the tracking client lacks


class EmptyResult(msgspec.Struct):
    """``{}``: unsubscribe, publish and ping results."""


class PresenceResult(msgspec.Struct):
    presence: dict[str, ClientInfo]


class PresenceStatsResult(msgspec.Struct):
    num_clients: int = 0
    num_users: int = 0


class HistoryResult(msgspec.Struct, omit_defaults=True):
    publications: list[Publication] | None = None
    epoch: str = ""
    offset: int = 0


class RPCResult(msgspec.Struct, omit_defaults=True):
    data: Payload = NO_DATA


# --- pushes --------------------------------------------------------------------------


class Join(msgspec.Struct):
    info: ClientInfo


class Leave(msgspec.Struct):
    info: ClientInfo


class UnsubscribePush(msgspec.Struct):
    code: int
    reason: str = ""


class MessagePush(msgspec.Struct):
    data: Payload


class SubscribePush(msgspec.Struct, omit_defaults=True):
    recoverable: bool = False
    epoch: str = ""
    offset: int = 0
    positioned: bool = False
    data: Payload = NO_DATA


class DisconnectPush(msgspec.Struct):
    code: int
    reason: str
    reconnect: bool = False


class RefreshPush(msgspec.Struct, omit_defaults=True):
    expires: bool = False
    ttl: int = 0


class Push(msgspec.Struct, omit_defaults=True):
    channel: str = ""
    pub: Publication | None = None
    join: Join | None = None
    leave: Leave | None = None
    unsubscribe: UnsubscribePush | None = None
    message: MessagePush | None = None
    subscribe: SubscribePush | None = None
    disconnect: DisconnectPush | None = None
    refresh: RefreshPush | None = None
    # Unidirectional transports: the connect result, pushed (they send no commands).
    connect: ConnectResult | None = None


class PushFrame(msgspec.Struct):
    push: Push


Result = (
    ConnectResult
    | SubscribeResult
    | EmptyResult
    | PresenceResult
    | PresenceStatsResult
    | HistoryResult
    | RPCResult
    | RefreshResult
    | SubRefreshResult
)
