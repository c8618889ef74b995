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
    flag: int = 0


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


class SubRefreshRequest(msgspec.Struct):
    channel: str = ""
    token: str = ""


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
    """A publication as stored in history and sent to subscribers."""

    data: Payload = NO_DATA
    info: ClientInfo | None = None
    offset: int = 0
    tags: dict[str, str] | None = None
    time: int = 0
    # Set only on a delta subscriber's copy: ``data`` is a Fossil patch (never stored).
    delta: bool = False
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
