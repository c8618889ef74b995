"""Application payloads: JSON (``msgspec.Raw``) or binary (``Binary``), and their crossings.

Rule 1: a payload (the ``data`` of a publication, an RPC, a ``send``, a
connect or subscribe request or result) is one of two things:
  - ``msgspec.Raw``: one line of valid JSON, embedded as it is wherever JSON
    travels. JSON clients, the HTTP API's ``data`` and hooks returning Python
    values make these; it is the hot path and nothing ever re-checks it.
  - ``Binary``: bytes kept exactly as they came: a Protobuf client's payload
    that is not one line of JSON (``from_wire``), the HTTP API's ``b64data``,
    a ``binary_encoding`` proxy's answers, hooks returning ``bytes``.
Code that only passes payloads along never looks inside either.
Rule 2: a JSON encoder that writes payloads into the client protocol uses
``json_hook`` (``protocol.codec`` does): a Binary holding valid JSON (say a
Protobuf client's pretty-printed JSON) is written as that JSON made one line;
any other raises ``NotJSON``, and the caller closes that client with 3506
(inappropriate protocol), as Centrifugo does. So a JSON client never gets an
invalid frame, nor a base64 string it would take for the data (msgspec would
silently write plain ``bytes`` that way: ``Binary`` is a type msgspec does
not know, so forgetting the hook fails loudly instead).
Rule 3: where JSON is only a container (Redis and NATS messages, HTTP API
answers, webhooks, proxy requests), a Binary travels as base64 in a
``b64data`` field next to an absent ``data`` (``to_container``,
``from_container``); JSON written for people (admin traces) shows it as
base64 text (``display_hook``).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any, Final

import msgspec
from msgspec import Raw

if TYPE_CHECKING:
    from typing import TypeAlias

#: An absent payload: omitted on encode (the default of payload fields), falsy.
NO_DATA: Final = Raw(b"")


class Binary(bytes):
    """Payload bytes that are not (or not known to be) one line of JSON (Rule 1)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Binary({bytes.__repr__(self)})"


if TYPE_CHECKING:
    Payload: TypeAlias = Raw | Binary
else:
    # What msgspec sees in Struct annotations: JSON payloads decode as Raw. Binary
    # values are set by hubbub's code (Protobuf decoding, b64data), never decoded.
    Payload = Raw


class NotJSON(TypeError):
    """A binary payload had to be written as JSON and is not JSON (Rule 2)."""


_raw_decoder: Final = msgspec.json.Decoder(Raw)


def is_binary(payload: object) -> bool:
    return type(payload) is Binary


def json_text(data: bytes) -> Raw:
    """``data`` as one line of JSON, or ``NotJSON``.

    Strict: the bytes must be UTF-8 (msgspec's Raw decoding does not check the
    inside of strings) and one JSON document. A raw CR or LF in valid JSON is
    whitespace between tokens, so dropping them keeps the value.
    """
    try:
        bytes(data).decode()
        _raw_decoder.decode(data)
    except (UnicodeDecodeError, msgspec.DecodeError, RecursionError) as exc:
        raise NotJSON(f"payload is not JSON: {exc}") from None
    text = bytes(data)
    if b"\n" in text or b"\r" in text:
        text = text.replace(b"\n", b"").replace(b"\r", b"")
    return Raw(text)


def json_hook(value: Any) -> Any:
    """``enc_hook`` of JSON encoders that write the client protocol (Rule 2)."""
    if type(value) is Binary:
        return json_text(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def from_wire(data: bytes) -> Payload:
    """A payload from a binary-capable wire (a Protobuf bytes field): JSON when it is
    exactly one line of valid JSON, else the same bytes as Binary. Empty: absent."""
    if not data:
        return NO_DATA
    try:
        data.decode()
        raw = _raw_decoder.decode(data)
    except (UnicodeDecodeError, msgspec.DecodeError, RecursionError):
        return Binary(data)
    # The decoder drops surrounding whitespace: such bytes stay exact as Binary.
    if len(raw) != len(data) or b"\n" in data or b"\r" in data:
        return Binary(data)
    return Raw(data)


def from_b64(text: str) -> Payload:
    """A ``b64data`` field's payload (as ``from_wire`` classifies it); ``ValueError``
    when it is not base64."""
    try:
        data = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not valid base64: {exc}") from None
    return from_wire(data)


def to_b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def to_container(struct: Any) -> Any:
    """``struct`` (with ``data`` and ``b64data`` fields) as JSON carries it (Rule 3):
    a copy with a Binary ``data`` moved to ``b64data``; ``struct`` itself otherwise."""
    data = struct.data
    if type(data) is not Binary:
        return struct
    # ``data`` back to its default object: msgspec omits a default by identity.
    return msgspec.structs.replace(struct, data=_data_default(type(struct)), b64data=to_b64(data))


def _data_default(cls: type[Any]) -> Any:
    fields, defaults = cls.__struct_fields__, cls.__struct_defaults__
    return defaults[fields.index("data") - (len(fields) - len(defaults))]


def from_container(struct: Any) -> Any:
    """Undo ``to_container`` in place (``b64data`` back to Binary ``data``); ``ValueError``
    when ``b64data`` is not base64. Returns ``struct``."""
    if struct.b64data:
        try:
            struct.data = Binary(base64.b64decode(struct.b64data, validate=True))
        except binascii.Error as exc:
            raise ValueError(f"b64data is not valid base64: {exc}") from None
        struct.b64data = ""
    return struct


def display_hook(value: Any) -> Any:
    """``enc_hook`` of JSON written for people (traces): a Binary as its base64 text."""
    if type(value) is Binary:
        return to_b64(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
