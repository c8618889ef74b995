"""What the frame codec tests share: limits, sizes on both sides of each length
encoding, valid close codes, and helpers that feed a ``FrameReader`` and read
what it returns or raises. No sockets.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest

from hubbub.websocket.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    Message,
)

LIMIT = 1 << 20
KEY = b"\x37\xfa\x21\x3d"
#: Payload sizes on both sides of each length encoding (7-bit, 16-bit, 64-bit).
BOUNDARY_SIZES = (0, 1, 125, 126, 127, 65535, 65536, 65537)
#: Close codes a client may legitimately send.
VALID_CLOSE_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999)


# --- helpers -------------------------------------------------------------------------


def feed_in_pieces(reader: FrameReader, data: bytes, sizes: Iterable[int]) -> list[Message]:
    """Feed ``data`` in consecutive pieces whose sizes cycle through ``sizes``."""
    messages: list[Message] = []
    position = 0
    for size in itertools.cycle(sizes):
        if position >= len(data):
            break
        messages.extend(reader.feed(data[position : position + size]))
        position += size
    return messages


def error_of(data: bytes, *, limit: int = LIMIT, prefix: bytes = b"") -> FrameError:
    """The ``FrameError`` a fresh reader raises on ``prefix`` then ``data`` (fails if none)."""
    reader = FrameReader(limit)
    if prefix:
        reader.feed(prefix)
    with pytest.raises(FrameError) as caught:
        reader.feed(data)
    return caught.value


def assert_kinds(messages: list[Message]) -> None:
    """Text messages carry ``str``; binary, ping, pong and close carry ``bytes``."""
    for message in messages:
        if message.opcode == OP_TEXT:
            assert isinstance(message.data, str), message
        else:
            assert message.opcode in (OP_BINARY, OP_PING, OP_PONG, OP_CLOSE), message
            assert isinstance(message.data, bytes), message


def header_length(header: bytes) -> tuple[int, int]:
    """(payload length, header size) of an unmasked server frame header, read per RFC 6455."""
    assert not header[1] & 0x80, "server frames are never masked"
    short = header[1] & 0x7F
    if short < 126:
        return short, 2
    if short == 126:
        return (header[2] << 8) | header[3], 4
    assert short == 127
    value = 0
    for byte in header[2:10]:
        value = (value << 8) | byte
    return value, 10
