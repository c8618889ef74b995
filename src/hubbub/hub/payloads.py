"""Application payloads between Python values and the wire (protocol/payload.py).

Rule: hooks see and return Python values; the wire and the proxies carry raw
JSON or binary payloads. ``data`` payloads: a binary one reaches a hook as
``bytes``, and a hook's ``bytes`` (or bytearray, memoryview) is taken as a
Protobuf client's would be (one line of JSON stays JSON, anything else is a
binary payload, delivered byte for byte to Protobuf clients); any other value
is encoded as JSON. ``info`` and ``meta`` are JSON only (``to_raw``, ``from_raw``). A value
that is already a payload passes through unchanged.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hubbub.codes import Error
from hubbub.errors import ClientError
from hubbub.protocol.payload import Binary, NotJSON, Payload, from_wire, json_text


def to_raw(value: Any) -> msgspec.Raw | None:
    """Application data (any JSON value) as an embedded JSON payload."""
    if value is None:
        return None
    if isinstance(value, msgspec.Raw):
        return value
    return msgspec.Raw(msgspec.json.encode(value))


def from_raw(raw: msgspec.Raw | None) -> Any:
    """An embedded JSON payload as a Python value for hooks (None when absent)."""
    if not raw:
        return None
    return msgspec.json.decode(raw)


def to_payload(value: Any) -> Payload | None:
    """Application ``data``: bytes-like as a binary payload, anything else as JSON."""
    if value is None:
        return None
    if isinstance(value, msgspec.Raw | Binary):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return from_wire(bytes(value))  # as a Protobuf client's bytes: JSON stays JSON
    return msgspec.Raw(msgspec.json.encode(value))


def from_payload(payload: Payload | None) -> Any:
    """A ``data`` payload for hooks: bytes when binary, the decoded JSON value
    otherwise (None when absent)."""
    if not payload:
        return None
    if isinstance(payload, Binary):
        return payload
    return msgspec.json.decode(payload)


def check_data_format(data: Payload, data_format: str) -> None:
    """Refuse (error 107) publication ``data`` that the channel's
    ``publication_data_format`` does not allow, as Centrifugo does: "" any
    non-empty data, "json" valid JSON, "json_object" a JSON object, "binary"
    anything, empty included."""
    if data_format == "binary":
        return
    if not data:
        raise ClientError(Error.BAD_REQUEST, "data required")
    if not data_format:
        return
    text: bytes = data
    if isinstance(data, Binary):
        try:
            text = json_text(data)
        except NotJSON:
            raise ClientError(Error.BAD_REQUEST, "data is not valid JSON") from None
    if data_format == "json_object" and not bytes(text).lstrip(b" \t\r\n").startswith(b"{"):
        raise ClientError(Error.BAD_REQUEST, "data is not a JSON object")
