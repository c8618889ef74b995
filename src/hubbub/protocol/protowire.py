"""Protocol Buffers wire primitives: varints, field keys, and a table-driven reader.

Rule 1: this module knows the wire format (varint, length-delimited, fixed
32/64-bit fields), never a message: messages are described by ``Schema``
tables (field number -> name and kind) that the caller owns.
Rule 2: reading never raises anything but ``WireError``: a truncated varint,
a length past the end, a wire type that does not fit the field, a group.
Unknown fields are skipped, as protobuf requires, so newer SDKs work.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Final

import msgspec

# Wire types.
VARINT: Final = 0
FIXED64: Final = 1
LENGTH: Final = 2
FIXED32: Final = 5

_MASK64: Final = (1 << 64) - 1
#: One-byte varints, prebuilt: lengths and small numbers are the common case.
_SMALL: Final[tuple[bytes, ...]] = tuple(bytes((n,)) for n in range(128))


class WireError(Exception):
    """Bytes that are not a valid encoding of the expected message."""


def varint(value: int) -> bytes:
    """``value`` (a non-negative int below 2**64, or a negative int64) as a varint."""
    if 0 <= value < 128:
        return _SMALL[value]
    value &= _MASK64  # negative int32/int64 take ten bytes, two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def delimited(message: bytes) -> bytes:
    """``message`` with its length in front (how the client protocol frames messages)."""
    return varint(len(message)) + message


def read_varint(data: bytes | memoryview, position: int, end: int) -> tuple[int, int]:
    """The varint at ``position`` and the position after it."""
    result = 0
    shift = 0
    while True:
        if position >= end:
            raise WireError("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & _MASK64, position
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than ten bytes")


def split_delimited(data: bytes) -> list[bytes]:
    """Cut a buffer of length-prefixed messages into the messages."""
    messages: list[bytes] = []
    position = 0
    end = len(data)
    while position < end:
        size, position = read_varint(data, position, end)
        stop = position + size
        if stop > end:
            raise WireError("message length past the end of the frame")
        messages.append(data[position:stop])
        position = stop
    return messages


class Kind(enum.Enum):
    """How a field's value is read."""

    STRING = "string"
    BYTES = "bytes"
    BOOL = "bool"
    UINT32 = "uint32"
    UINT64 = "uint64"
    INT32 = "int32"
    INT64 = "int64"
    MESSAGE = "message"  # ``schema`` of the nested message
    MAP = "map"  # map<string, V>: ``schema`` is the entry (1: key, 2: value)


class Field(msgspec.Struct, frozen=True):
    name: str
    kind: Kind
    schema: Schema | None = None
    repeated: bool = False
    #: Turns a value read into what the caller wants (a JSON payload as msgspec.Raw);
    #: not applied to map fields (their entry schema converts the value).
    convert: Callable[[Any], Any] | None = None


Schema = dict[int, Field]


def read_message(data: bytes | memoryview, schema: Schema) -> dict[str, Any]:
    """Read one message (the whole of ``data``) into a dict of its known fields."""
    return _read(data, 0, len(data), schema)


def _read(data: bytes | memoryview, position: int, end: int, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    while position < end:
        tag, position = read_varint(data, position, end)
        number = tag >> 3
        wire_type = tag & 7
        field = schema.get(number)
        if wire_type == VARINT:
            value, position = read_varint(data, position, end)
            if field is None:
                continue
            decoded: Any = _scalar(field, value)
        elif wire_type == LENGTH:
            size, position = read_varint(data, position, end)
            stop = position + size
            if stop > end:
                raise WireError("field length past the end of the message")
            start, position = position, stop
            if field is None:
                continue
            decoded = _length_delimited(field, data, start, stop)
        elif wire_type in (FIXED64, FIXED32):
            position += 8 if wire_type == FIXED64 else 4
            if position > end:
                raise WireError("truncated fixed-size field")
            if field is not None:
                raise WireError(f"field {field.name}: unexpected fixed-size value")
            continue
        else:
            raise WireError(f"unsupported wire type {wire_type}")
        if field.kind is Kind.MAP:
            entry_key, entry_value = decoded
            out.setdefault(field.name, {})[entry_key] = entry_value
        elif field.repeated:
            item = decoded if field.convert is None else field.convert(decoded)
            out.setdefault(field.name, []).append(item)
        else:
            out[field.name] = decoded if field.convert is None else field.convert(decoded)
    return out


def _scalar(field: Field, value: int) -> int | bool:
    kind = field.kind
    if kind is Kind.BOOL:
        return value != 0
    if kind is Kind.UINT32:
        return value & 0xFFFFFFFF
    if kind is Kind.INT32:
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value
    if kind is Kind.INT64:
        return value - (1 << 64) if value >= 1 << 63 else value
    if kind is Kind.UINT64:
        return value
    raise WireError(f"field {field.name}: a number where a {kind.value} belongs")


def _length_delimited(field: Field, data: bytes | memoryview, start: int, stop: int) -> Any:
    kind = field.kind
    if kind is Kind.STRING:
        try:
            return bytes(data[start:stop]).decode()
        except UnicodeDecodeError as exc:
            raise WireError(f"field {field.name}: invalid UTF-8") from exc
    if kind is Kind.BYTES:
        return bytes(data[start:stop])
    if kind is Kind.MESSAGE:
        assert field.schema is not None
        return _read(data, start, stop, field.schema)
    if kind is Kind.MAP:
        assert field.schema is not None
        entry = _read(data, start, stop, field.schema)
        return entry.get("key", ""), entry.get("value", _empty(field.schema))
    raise WireError(f"field {field.name}: bytes where a {kind.value} belongs")


def _empty(entry: Schema) -> Any:
    """The value of a map entry that carries none: "" or an empty message."""
    value = entry[2]
    if value.kind is Kind.MESSAGE:
        return {}
    return "" if value.kind is Kind.STRING else b""


def write_message(values: dict[str, Any], schema: Schema) -> bytes:
    """The wire form of ``values`` (field name -> value) for ``schema``: the reverse of
    ``read_message``, for clients (the bench, tests). Payload fields take bytes."""
    numbers = {field.name: (number, field) for number, field in schema.items()}
    out = bytearray()
    for name, value in values.items():
        number, field = numbers[name]
        if field.kind is Kind.MAP:
            assert field.schema is not None
            for entry_key, entry_value in value.items():
                entry = write_message({"key": entry_key, "value": entry_value}, field.schema)
                out += key(number, LENGTH) + delimited(entry)
        elif field.repeated:
            for item in value:
                out += _write_field(number, field, item)
        else:
            out += _write_field(number, field, value)
    return bytes(out)


def _write_field(number: int, field: Field, value: Any) -> bytes:
    kind = field.kind
    if kind is Kind.MESSAGE:
        assert field.schema is not None
        return key(number, LENGTH) + delimited(write_message(value, field.schema))
    if kind is Kind.STRING:
        return key(number, LENGTH) + delimited(value.encode())
    if kind is Kind.BYTES:
        return key(number, LENGTH) + delimited(bytes(value))
    return key(number, VARINT) + varint(int(value))
