"""JSON encoding of replies and pushes, decoding of command frames, and the Codec interface.

Rule: one place per protocol turns bytes into Commands and Commands' answers
into bytes: a ``Codec`` (this module's ``JSON`` and ``UNI_JSON``, and
``PROTOBUF`` in protocol/protobuf.py). A session holds one codec and the hub
encodes everything it sends to that session through it. Decoding never raises
anything but ``FrameError``; encoding builds the few hot shapes (a publication
push) without intermediate dicts. The JSON codecs raise ``NotJSON`` for a binary
payload that is not JSON (protocol/payload.py Rule 2): the caller closes that
client with 3506.
"""

from __future__ import annotations

from typing import Final, Protocol

import msgspec

from hubbub.codes import ErrorInfo
from hubbub.protocol.messages import (
    ClientInfo,
    Command,
    ConnectResult,
    Join,
    Leave,
    Publication,
    Push,
    PushFrame,
    RefreshPush,
    Result,
    SubscribePush,
    UnsubscribePush,
)
from hubbub.protocol.payload import json_hook

_command_decoder: Final = msgspec.json.Decoder(Command)
# The hook runs only for Binary payloads (msgspec encodes Raw natively): the JSON
# hot path is untouched.
_encode: Final = msgspec.json.Encoder(enc_hook=json_hook).encode

#: The method fields of a Command, in wire order.
METHODS: Final[tuple[str, ...]] = (
    "connect",
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "presence_stats",
    "history",
    "ping",
    "send",
    "rpc",
    "refresh",
    "sub_refresh",
)

#: The reply to a server ping and the ping itself: an empty object.
PING_FRAME: Final = b"{}"


class FrameError(Exception):
    """A frame that is not a sequence of valid commands."""


def decode_commands(frame: bytes | str) -> list[Command]:
    """Decode a frame of newline-separated JSON commands, in order (blank lines skipped)."""
    try:
        return _command_decoder.decode_lines(frame)
    except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
        raise FrameError(str(exc)) from exc


def compact_json(raw: msgspec.Raw) -> msgspec.Raw:
    """Valid JSON from outside the client protocol (the HTTP API, a backend) made one line.

    The protocol frames messages by ``\n``, so a payload embedded raw must hold
    no line break. Inside a JSON string a raw CR or LF is invalid, so every one
    in valid JSON is whitespace between tokens and can be dropped; JSON without
    line breaks (the usual case) is returned as it came.
    """
    data = bytes(raw)
    if b"\n" not in data and b"\r" not in data:
        return raw
    return msgspec.Raw(data.replace(b"\n", b"").replace(b"\r", b""))


def command_method(command: Command) -> str | None:
    """The one method field set on ``command``; "" for a pong; None when several are set."""
    found = ""
    for name in METHODS:
        if getattr(command, name) is not None:
            if found:
                return None
            found = name
    return found


def encode_reply(command_id: int, method: str, result: Result) -> bytes:
    """``{"id": N, "<method>": {...}}``."""
    return b'{"id":%d,"%s":%s}' % (command_id, method.encode(), _encode(result))


def encode_error(command_id: int, error: ErrorInfo) -> bytes:
    body = {"code": error.code, "message": error.message}
    if error.temporary:
        body["temporary"] = True
    return b'{"id":%d,"error":%s}' % (command_id, _encode(body))


def encode_push(push: Push) -> bytes:
    return _encode(PushFrame(push))


def encode_publication_push(channel: str, publication: Publication) -> bytes:
    """The push every subscriber of ``channel`` receives: encoded once per publication."""
    return _encode(PushFrame(Push(channel=channel, pub=publication)))


def encode_join_push(channel: str, info: ClientInfo) -> bytes:
    return _encode(PushFrame(Push(channel=channel, join=Join(info))))


def encode_leave_push(channel: str, info: ClientInfo) -> bytes:
    return _encode(PushFrame(Push(channel=channel, leave=Leave(info))))


def encode_unsubscribe_push(channel: str, code: int, reason: str) -> bytes:
    return _encode(PushFrame(Push(channel=channel, unsubscribe=UnsubscribePush(code, reason))))


def encode_subscribe_push(channel: str, push: SubscribePush) -> bytes:
    return _encode(PushFrame(Push(channel=channel, subscribe=push)))


def encode_refresh_push(expires: bool, ttl: int) -> bytes:
    return _encode(PushFrame(Push(refresh=RefreshPush(expires, ttl))))


# --- codecs ------------------------------------------------------------------------


class Codec(Protocol):
    """How one connection's messages are encoded: what the hub needs of a protocol."""

    @property
    def name(self) -> str:
        """``json`` or ``protobuf`` (what a transport negotiated)."""

    @property
    def binary(self) -> bool:
        """Frames are binary (WebSocket opcode 2), not text."""

    @property
    def separator(self) -> bytes:
        """What joins several encoded messages in one frame."""

    @property
    def ping(self) -> bytes:
        """The server's ping message."""

    def decode_commands(self, frame: bytes | str) -> list[Command]: ...

    def reply(self, command_id: int, method: str, result: Result) -> bytes: ...

    def error(self, command_id: int, error: ErrorInfo) -> bytes: ...

    def push(self, push: Push) -> bytes: ...

    def publication_push(self, channel: str, publication: Publication) -> bytes: ...

    def publication_push_from(
        self, json_push: bytes, channel: str, publication: Publication
    ) -> bytes:
        """The push of ``publication`` in this codec, given its JSON push (a broadcast
        encodes JSON first; other codecs reuse or ignore it)."""


class JsonCodec:
    """The JSON protocol: text frames of ``\\n``-separated objects."""

    name: Final = "json"
    binary: Final = False
    separator: Final = b"\n"
    ping: Final = PING_FRAME

    def decode_commands(self, frame: bytes | str) -> list[Command]:
        return decode_commands(frame)

    def reply(self, command_id: int, method: str, result: Result) -> bytes:
        return encode_reply(command_id, method, result)

    def error(self, command_id: int, error: ErrorInfo) -> bytes:
        return encode_error(command_id, error)

    def push(self, push: Push) -> bytes:
        return encode_push(push)

    def publication_push(self, channel: str, publication: Publication) -> bytes:
        return encode_publication_push(channel, publication)

    def publication_push_from(
        self, json_push: bytes, channel: str, publication: Publication
    ) -> bytes:
        return json_push


#: ``{"push":`` before the push and ``}`` after it, in every JSON push.
_PUSH_PREFIX: Final = len(b'{"push":')


class UniJsonCodec(JsonCodec):
    """Unidirectional transports (uni_websocket, uni_sse, uni_http_stream): bare pushes.

    The client sends no commands; it gets ``{"connect": {...}}`` for the
    connect result, then pushes without the ``{"push": ...}`` wrapper, and
    ``{}`` as the server's ping (no pong is expected).
    """

    def reply(self, command_id: int, method: str, result: Result) -> bytes:
        if not isinstance(result, ConnectResult):
            raise TypeError(f"a unidirectional connection has no {method} replies")
        return _encode(Push(connect=result))

    def push(self, push: Push) -> bytes:
        return _encode(push)

    def publication_push(self, channel: str, publication: Publication) -> bytes:
        return _encode(Push(channel=channel, pub=publication))

    def publication_push_from(
        self, json_push: bytes, channel: str, publication: Publication
    ) -> bytes:
        return json_push[_PUSH_PREFIX:-1]  # the same bytes, without the wrapper


JSON: Final = JsonCodec()
UNI_JSON: Final = UniJsonCodec()
