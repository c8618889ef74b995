"""Application payloads between Python values and the wire (protocol/payload.py).

Rule: hooks see and return Python values; the wire and the proxies carry raw
JSON or binary payloads. ``data`` payloads: a binary one reaches a hook as
``bytes``, and a hook's ``bytes`` (or bytearray, memoryview) is taken as a
Protobuf client's would be (one line of JSON stays JSON, anything else is a
binary payload, delivered byte for byte to Protobuf clients); any other value
is encoded as JSON. ``info`` and ``meta`` are JSON only (``to_raw``,
``from_raw``). A value that is already a payload passes through unchanged.
``check_data`` is the one check of ``publication_data_format``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from hubbub.codes import Error
from hubbub.errors import ClientError
from hubbub.protocol.payload import Binary, NotJSON, Payload, from_wire, json_text

if TYPE_CHECKING:
    from hubbub.config.model import ChannelOptions, Config


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


def data_format(config: Config, options: ChannelOptions) -> str:
    """A namespace's ``publication_data_format``, else ``channel.publication_data_format``."""
    return options.publication_data_format or config.channel.publication_data_format


def check_data(fmt: str, data: Payload | bytes | None) -> None:
    """Refuse (107) data that ``publication_data_format`` ``fmt`` does not allow:
    anything but JSON for "json" (a binary payload, a Protobuf client's bytes,
    must be UTF-8 JSON text), anything but a JSON object for "json_object".
    Empty data is refused whatever the format: "binary" would allow it in
    Centrifugo, but a publication has no empty payload on hubbub's JSON wire."""
    if not data:
        raise ClientError(Error.BAD_REQUEST)
    if fmt in ("json", "json_object"):
        try:
            text = json_text(data) if isinstance(data, Binary) else data
            value = msgspec.json.decode(text)
        except (NotJSON, msgspec.DecodeError):
            raise ClientError(Error.BAD_REQUEST) from None
        if fmt == "json_object" and not isinstance(value, dict):
            raise ClientError(Error.BAD_REQUEST)
