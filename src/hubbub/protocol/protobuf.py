"""The Protobuf client protocol: commands in, replies and pushes out, hand-written.

Rule 1: field numbers are those of ``client.proto`` (centrifugal/protocol);
every message on the wire is preceded by its length as a varint, and a frame
(a WebSocket binary message, an HTTP-stream chunk) holds any number of them.
Rule 2: commands decode into the same msgspec Structs as the JSON protocol, so
the hub runs one command path for both; replies and pushes encode from them.
Payload bytes (``data``) are opaque, as in Centrifugo: one line of JSON is kept
as ``msgspec.Raw``, anything else as a ``Binary`` (protocol/payload.py).
Rule 3: encoding builds bytes directly, field by field (no intermediate
message objects): the publication push is the hot path of a broadcast.
``benchmarks/protobuf_codec.py`` measures it against the ``protobuf``
package's upb backend.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from hubbub.codes import ErrorInfo
from hubbub.protocol.codec import FrameError
from hubbub.protocol.messages import (
    ClientInfo,
    Command,
    ConnectResult,
    DisconnectPush,
    EmptyResult,
    HistoryResult,
    PresenceResult,
    PresenceStatsResult,
    Publication,
    Push,
    RefreshPush,
    RefreshResult,
    Result,
    RPCResult,
    SubRefreshResult,
    SubscribePush,
    SubscribeResult,
)
from hubbub.protocol.payload import from_wire, is_binary
from hubbub.protocol.protowire import (
    Field,
    Kind,
    Schema,
    WireError,
    delimited,
    read_message,
    split_delimited,
    varint,
    write_message,
)

# --- encoding ---------------------------------------------------------------------


def _tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


# Keys of length-delimited (L) and varint (V) fields 1..15, one byte each.
_L: Final = tuple(_tag(n, 2) for n in range(16))
_V: Final = tuple(_tag(n, 0) for n in range(16))
_TRUE: Final = b"\x01"


def _str(number: int, value: str) -> bytes:
    if not value:
        return b""
    data = value.encode()
    return _L[number] + varint(len(data)) + data


def _bytes(number: int, data: bytes | msgspec.Raw | None) -> bytes:
    if not data:
        return b""
    raw = bytes(data)
    return _L[number] + varint(len(raw)) + raw


def _msg(number: int, body: bytes) -> bytes:
    """A nested message: present even when empty (its presence means something)."""
    return _L[number] + varint(len(body)) + body


def _uint(number: int, value: int) -> bytes:
    return _V[number] + varint(value) if value else b""


def _bool(number: int, value: bool) -> bytes:
    return _V[number] + _TRUE if value else b""


def _number(number: int, value: int) -> bytes:
    """A varint field of any number (fields above 15 take a two-byte key)."""
    return _tag(number, 0) + varint(value) if value else b""


def _text(number: int, value: str) -> bytes:
    if not value:
        return b""
    data = value.encode()
    return _tag(number, 2) + varint(len(data)) + data


def _zigzag(value: int) -> int:
    """sint64 (map scores may be negative)."""
    return ((value << 1) ^ (value >> 63)) & ((1 << 64) - 1)


def _string_map(number: int, values: dict[str, str] | None) -> bytes:
    if not values:
        return b""
    return b"".join(_msg(number, _str(1, k) + _str(2, v)) for k, v in values.items())


def _client_info(info: ClientInfo) -> bytes:
    return (
        _str(1, info.user)
        + _str(2, info.client)
        + _bytes(3, info.conn_info)
        + _bytes(4, info.chan_info)
    )


def _publication(pub: Publication) -> bytes:
    data = bytes(pub.data)
    body = _L[4] + varint(len(data)) + data if data else b""
    if pub.info is not None:
        body += _msg(5, _client_info(pub.info))
    if pub.offset:
        body += _V[6] + varint(pub.offset)
    if pub.tags:
        body += _string_map(7, pub.tags)
    if pub.delta:
        body += _V[8] + _TRUE
    if pub.time:
        body += _V[9] + varint(pub.time)
    if pub.key:  # map and shared poll publications (the epoch is hubbub's own)
        body += _str(11, pub.key) + _bool(12, pub.removed)
        if pub.score:
            body += _V[13] + varint(_zigzag(pub.score))
        body += _number(16, pub.version)
    return body


def _subscribe_result(result: SubscribeResult) -> bytes:
    return (
        _bool(1, result.expires)
        + _uint(2, result.ttl)
        + _bool(3, result.recoverable)
        + _str(6, result.epoch)
        + b"".join(_msg(7, _publication(p)) for p in result.publications or ())
        + _bool(8, result.recovered)
        + _uint(9, result.offset)
        + _bool(10, result.positioned)
        + _bytes(11, result.data)
        + _bool(12, result.was_recovering)
        + _bool(13, result.delta)
        + _number(15, result.type)
        + _number(16, result.phase)
        + _text(17, result.cursor)
        + b"".join(_tag(18, 2) + delimited(_publication(p)) for p in result.state or ())
        + _number(19, result.publish_debounce)
    )


def _connect_result(result: ConnectResult) -> bytes:
    subs = b"".join(
        _msg(6, _str(1, name) + _msg(2, _subscribe_result(sub)))
        for name, sub in (result.subs or {}).items()
    )
    return (
        _str(1, result.client)
        + _str(2, result.version)
        + _bool(3, result.expires)
        + _uint(4, result.ttl)
        + _bytes(5, result.data)
        + subs
        + _uint(7, result.ping)
        + _bool(8, result.pong)
        + _str(9, result.session)
        + _str(10, result.node)
    )


def _refresh_result(result: RefreshResult) -> bytes:
    return (
        _str(1, result.client)
        + _str(2, result.version)
        + _bool(3, result.expires)
        + _uint(4, result.ttl)
    )


def _presence_result(result: PresenceResult) -> bytes:
    return b"".join(
        _msg(1, _str(1, client) + _msg(2, _client_info(info)))
        for client, info in result.presence.items()
    )


def _history_result(result: HistoryResult) -> bytes:
    return (
        b"".join(_msg(1, _publication(p)) for p in result.publications or ())
        + _str(2, result.epoch)
        + _uint(3, result.offset)
    )


def _result(result: Result) -> bytes:
    if isinstance(result, EmptyResult):
        return b""
    if isinstance(result, SubscribeResult):
        return _subscribe_result(result)
    if isinstance(result, ConnectResult):
        return _connect_result(result)
    if isinstance(result, PresenceResult):
        return _presence_result(result)
    if isinstance(result, PresenceStatsResult):
        return _uint(1, result.num_clients) + _uint(2, result.num_users)
    if isinstance(result, HistoryResult):
        return _history_result(result)
    if isinstance(result, RPCResult):
        return _bytes(1, result.data)
    if isinstance(result, RefreshResult):
        return _refresh_result(result)
    if isinstance(result, SubRefreshResult):
        items = b"".join(_msg(3, _publication(p)) for p in result.items or ())
        return _bool(1, result.expires) + _uint(2, result.ttl) + items
    raise TypeError(f"no protobuf encoding for {type(result).__name__}")


#: Reply field number of each command's result.
REPLY_FIELDS: Final = {
    "connect": 5,
    "subscribe": 6,
    "unsubscribe": 7,
    "publish": 8,
    "presence": 9,
    "presence_stats": 10,
    "history": 11,
    "ping": 12,
    "rpc": 13,
    "refresh": 14,
    "sub_refresh": 15,
}


def _push_body(push: Push) -> bytes:
    body = _str(2, push.channel)
    if push.pub is not None:
        body += _msg(4, _publication(push.pub))
    if push.join is not None:
        body += _msg(5, _msg(1, _client_info(push.join.info)))
    if push.leave is not None:
        body += _msg(6, _msg(1, _client_info(push.leave.info)))
    if push.unsubscribe is not None:
        unsubscribe = push.unsubscribe
        body += _msg(7, _uint(2, unsubscribe.code) + _str(3, unsubscribe.reason))
    if push.message is not None:
        body += _msg(8, _bytes(1, push.message.data))
    if push.subscribe is not None:
        body += _msg(9, _subscribe_push(push.subscribe))
    if push.connect is not None:
        body += _msg(10, _connect_result(push.connect))
    if push.disconnect is not None:
        body += _msg(11, _disconnect(push.disconnect))
    if push.refresh is not None:
        body += _msg(12, _refresh_push(push.refresh))
    return body


def _subscribe_push(push: SubscribePush) -> bytes:
    return (
        _bool(1, push.recoverable)
        + _str(4, push.epoch)
        + _uint(5, push.offset)
        + _bool(6, push.positioned)
        + _bytes(7, push.data)
    )


def _disconnect(push: DisconnectPush) -> bytes:
    return _uint(1, push.code) + _str(2, push.reason) + _bool(3, push.reconnect)


def _refresh_push(push: RefreshPush) -> bytes:
    return _bool(1, push.expires) + _uint(2, push.ttl)


# --- decoding ------------------------------------------------------------------------


def _f(name: str, kind: Kind, schema: Schema | None = None, **extra: Any) -> Field:
    return Field(name, kind, schema, **extra)


_S, _B, _U32, _U64, _I32, _I64, _M, _MAP = (
    Kind.STRING,
    Kind.BOOL,
    Kind.UINT32,
    Kind.UINT64,
    Kind.INT32,
    Kind.INT64,
    Kind.MESSAGE,
    Kind.MAP,
)


def _payload(name: str) -> Field:
    return Field(name, Kind.BYTES, convert=from_wire)


_FILTER_GIVEN: Final = msgspec.Raw(b"{}")
_TRACK_BATCH: Final[Schema] = {
    1: _f("signature", _S),
    2: Field("items", _M, {1: _f("key", _S), 2: _f("version", _U64)}, repeated=True),
}
SUBSCRIBE_REQUEST: Final[Schema] = {
    1: _f("channel", _S),
    2: _f("token", _S),
    3: _f("recover", _B),
    6: _f("epoch", _S),
    7: _f("offset", _U64),
    8: _payload("data"),
    9: _f("positioned", _B),
    10: _f("recoverable", _B),
    11: _f("join_leave", _B),
    12: _f("delta", _S),
    # A tags filter: hubbub refuses it (107), so only its presence matters.
    13: Field("tf", Kind.BYTES, convert=lambda _: _FILTER_GIVEN),
    14: _f("flag", _I64),
    15: _f("type", _I32),
    16: _f("phase", _I32),
    17: _f("cursor", _S),
    18: _f("limit", _I32),
    19: _f("asc", _B),
}
_CHANNEL_ONLY: Final[Schema] = {1: _f("channel", _S)}
COMMAND: Final[Schema] = {
    1: _f("id", _U32),
    4: _f(
        "connect",
        _M,
        {
            1: _f("token", _S),
            2: _payload("data"),
            3: _f("subs", _MAP, {1: _f("key", _S), 2: _f("value", _M, SUBSCRIBE_REQUEST)}),
            4: _f("name", _S),
            5: _f("version", _S),
            6: _f("headers", _MAP, {1: _f("key", _S), 2: _f("value", _S)}),
            7: _f("flag", _I64),
        },
    ),
    5: _f("subscribe", _M, SUBSCRIBE_REQUEST),
    6: _f("unsubscribe", _M, _CHANNEL_ONLY),
    7: _f(
        "publish",
        _M,
        {
            1: _f("channel", _S),
            2: _payload("data"),
            3: _f("type", _I32),
            4: _f("key", _S),
            5: _f("removed", _B),
        },
    ),
    8: _f("presence", _M, _CHANNEL_ONLY),
    9: _f("presence_stats", _M, _CHANNEL_ONLY),
    10: _f(
        "history",
        _M,
        {
            1: _f("channel", _S),
            7: _f("limit", _I32),
            8: _f("since", _M, {1: _f("offset", _U64), 2: _f("epoch", _S)}),
            9: _f("reverse", _B),
        },
    ),
    11: _f("ping", _M, {}),
    12: _f("send", _M, {1: _payload("data")}),
    13: _f("rpc", _M, {1: _payload("data"), 2: _f("method", _S)}),
    14: _f("refresh", _M, {1: _f("token", _S)}),
    15: _f(
        "sub_refresh",
        _M,
        {
            1: _f("channel", _S),
            2: _f("token", _S),
            3: _f("type", _I32),
            4: Field("track", _M, _TRACK_BATCH, repeated=True),
            5: Field("untrack", _S, repeated=True),
        },
    ),
}
EMULATION_REQUEST: Final[Schema] = {
    1: _f("node", _S),
    2: _f("session", _S),
    3: _f("data", Kind.BYTES),
}


def _command(values: dict[str, Any]) -> Command:
    """A Command from ``read_message``'s dict, validated by msgspec. A Binary payload
    (payload.py) is not the ``Raw`` the Structs declare: it is set after."""
    binary: list[tuple[str, str, Any]] = []  # (method, connect sub or "", payload)
    for method, body in values.items():
        if isinstance(body, dict):
            if is_binary(body.get("data")):
                binary.append((method, "", body.pop("data")))
            for name, sub in (body.get("subs") or {}).items():
                if is_binary(sub.get("data")):
                    binary.append((method, name, sub.pop("data")))
    command = msgspec.convert(values, Command)
    for method, name, data in binary:
        request = getattr(command, method)
        (request.subs[name] if name else request).data = data
    return command


def decode_commands(frame: bytes) -> list[Command]:
    """The length-prefixed commands of a binary frame, in order."""
    try:
        return [_command(read_message(message, COMMAND)) for message in split_delimited(frame)]
    except (WireError, msgspec.ValidationError) as exc:
        raise FrameError(str(exc)) from exc


def decode_emulation_request(body: bytes) -> dict[str, Any]:
    """``EmulationRequest`` (node, session, data): the protobuf body of ``/emulation``."""
    try:
        return read_message(body, EMULATION_REQUEST)
    except WireError as exc:
        raise FrameError(str(exc)) from exc


# --- the codec -----------------------------------------------------------------------


class ProtobufCodec:
    """The Protobuf protocol (``centrifuge-protobuf``): binary frames of delimited messages."""

    name: Final = "protobuf"
    binary: Final = True
    separator: Final = b""  # delimited messages are simply concatenated
    ping: Final = b"\x00"  # an empty Reply; the pong is an empty Command

    def decode_commands(self, frame: bytes | str) -> list[Command]:
        if isinstance(frame, str):
            raise FrameError("text frame on the protobuf protocol")
        return decode_commands(frame)

    def reply(self, command_id: int, method: str, result: Result) -> bytes:
        return delimited(_uint(1, command_id) + _msg(REPLY_FIELDS[method], _result(result)))

    def error(self, command_id: int, error: ErrorInfo) -> bytes:
        body = _uint(1, error.code) + _str(2, error.message) + _bool(3, error.temporary)
        return delimited(_uint(1, command_id) + _msg(2, body))

    def push(self, push: Push) -> bytes:
        return delimited(_msg(4, _push_body(push)))

    def publication_push(self, channel: str, publication: Publication) -> bytes:
        """The hot path: ``Reply{push: Push{channel, pub}}``, length-prefixed."""
        pub = _publication(publication)
        push = _str(2, channel) + _L[4] + varint(len(pub)) + pub
        reply = _L[4] + varint(len(push)) + push
        return varint(len(reply)) + reply

    def publication_push_from(
        self, json_push: bytes, channel: str, publication: Publication
    ) -> bytes:
        """The push of ``publication`` in this format (its JSON form is no help here)."""
        return self.publication_push(channel, publication)


PROTOBUF: Final = ProtobufCodec()


# --- the client's side: replies as dicts (the bench, the audit, tests) ----------------

_CLIENT_INFO: Final[Schema] = {
    1: _f("user", _S),
    2: _f("client", _S),
    3: _f("conn_info", Kind.BYTES),
    4: _f("chan_info", Kind.BYTES),
}
_PUBLICATION: Final[Schema] = {
    4: _f("data", Kind.BYTES),
    5: _f("info", _M, _CLIENT_INFO),
    6: _f("offset", _U64),
    7: _f("tags", _MAP, {1: _f("key", _S), 2: _f("value", _S)}),
    8: _f("delta", _B),
    9: _f("time", _I64),
}
_SUBSCRIBE_RESULT: Final[Schema] = {
    1: _f("expires", _B),
    2: _f("ttl", _U32),
    3: _f("recoverable", _B),
    6: _f("epoch", _S),
    7: _f("publications", _M, _PUBLICATION, repeated=True),
    8: _f("recovered", _B),
    9: _f("offset", _U64),
    10: _f("positioned", _B),
    11: _f("data", Kind.BYTES),
    12: _f("was_recovering", _B),
    13: _f("delta", _B),
}
_CONNECT: Final[Schema] = {
    1: _f("client", _S),
    2: _f("version", _S),
    3: _f("expires", _B),
    4: _f("ttl", _U32),
    5: _f("data", Kind.BYTES),
    6: _f("subs", _MAP, {1: _f("key", _S), 2: _f("value", _M, _SUBSCRIBE_RESULT)}),
    7: _f("ping", _U32),
    8: _f("pong", _B),
    9: _f("session", _S),
    10: _f("node", _S),
    11: _f("time", _I64),
}
_INFO_ONLY: Final[Schema] = {1: _f("info", _M, _CLIENT_INFO)}
REPLY: Final[Schema] = {
    1: _f("id", _U32),
    2: _f("error", _M, {1: _f("code", _U32), 2: _f("message", _S), 3: _f("temporary", _B)}),
    4: _f(
        "push",
        _M,
        {
            1: _f("id", _I64),
            2: _f("channel", _S),
            4: _f("pub", _M, _PUBLICATION),
            5: _f("join", _M, _INFO_ONLY),
            6: _f("leave", _M, _INFO_ONLY),
            7: _f("unsubscribe", _M, {2: _f("code", _U32), 3: _f("reason", _S)}),
            8: _f("message", _M, {1: _f("data", Kind.BYTES)}),
            9: _f(
                "subscribe",
                _M,
                {
                    1: _f("recoverable", _B),
                    4: _f("epoch", _S),
                    5: _f("offset", _U64),
                    6: _f("positioned", _B),
                    7: _f("data", Kind.BYTES),
                },
            ),
            10: _f("connect", _M, _CONNECT),
            11: _f(
                "disconnect",
                _M,
                {1: _f("code", _U32), 2: _f("reason", _S), 3: _f("reconnect", _B)},
            ),
            12: _f("refresh", _M, {1: _f("expires", _B), 2: _f("ttl", _U32)}),
        },
    ),
    5: _f("connect", _M, _CONNECT),
    6: _f("subscribe", _M, _SUBSCRIBE_RESULT),
    7: _f("unsubscribe", _M, {}),
    8: _f("publish", _M, {}),
    9: _f(
        "presence",
        _M,
        {1: _f("presence", _MAP, {1: _f("key", _S), 2: _f("value", _M, _CLIENT_INFO)})},
    ),
    10: _f("presence_stats", _M, {1: _f("num_clients", _U32), 2: _f("num_users", _U32)}),
    11: _f(
        "history",
        _M,
        {
            1: _f("publications", _M, _PUBLICATION, repeated=True),
            2: _f("epoch", _S),
            3: _f("offset", _U64),
        },
    ),
    12: _f("ping", _M, {}),
    13: _f("rpc", _M, {1: _f("data", Kind.BYTES)}),
    14: _f(
        "refresh",
        _M,
        {1: _f("client", _S), 2: _f("version", _S), 3: _f("expires", _B), 4: _f("ttl", _U32)},
    ),
    15: _f("sub_refresh", _M, {1: _f("expires", _B), 2: _f("ttl", _U32)}),
}


def encode_command(command: dict[str, Any]) -> bytes:
    """A command given as a dict (``{"id": 1, "subscribe": {"channel": "c"}}``, payloads
    as bytes), length-prefixed: what a client sends."""
    return delimited(write_message(command, COMMAND))


def decode_replies(frame: bytes) -> list[dict[str, Any]]:
    """The replies and pushes of a frame a server sent, as dicts (payloads as bytes)."""
    return [read_message(message, REPLY) for message in split_delimited(frame)]
