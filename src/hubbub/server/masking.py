"""Refuse unmasked client frames (RFC 6455 5.1), which aiohttp's reader accepts.

Rule: a thin protocol sits between the socket and aiohttp for each WebSocket
connection, installed (with the public ``transport.set_protocol``) before the
101 response, when every later byte from a well-behaved client is a frame. It
follows frame boundaries by reading only headers (payload bytes are skipped
by count, never copied or parsed) and closes the connection with 1002 on the
first frame whose mask bit is 0. Everything else is passed on unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

#: Close frame 1002 (protocol error), as the server sends it: unmasked.
CLOSE_PROTOCOL_ERROR = b"\x88\x02\x03\xea"


class MaskCheck(asyncio.Protocol):
    """Wraps the connection's protocol; checks each client frame header's mask bit."""

    def __init__(self, inner: asyncio.Protocol, transport: asyncio.Transport) -> None:
        self._inner = inner
        self._transport = transport
        self._skip = 0  # payload bytes of the current frame still to pass
        self._header = b""  # a frame header split across reads
        self._refused = False

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._frames_masked(data):
            self._refused = True
            self._transport.write(CLOSE_PROTOCOL_ERROR)
            self._transport.close()
            return
        self._inner.data_received(data)

    def _frames_masked(self, data: bytes) -> bool:
        """Advance over ``data``; False at an unmasked frame header."""
        position = 0
        size = len(data)
        while True:
            if self._skip:
                step = min(self._skip, size - position)
                self._skip -= step
                position += step
            if position >= size:
                return True
            header = self._header + data[position : position + 14]
            if len(header) < 2:
                self._header = header
                return True
            if not header[1] & 0x80:
                return False
            length = header[1] & 0x7F
            extra = 2 if length == 126 else 8 if length == 127 else 0
            needed = 2 + extra + 4
            if len(header) < needed:
                self._header = header
                return True
            if extra:
                length = int.from_bytes(header[2 : 2 + extra], "big")
            consumed = needed - len(self._header)
            self._header = b""
            position += consumed
            self._skip = length

    # --- everything else goes to aiohttp's protocol unchanged --------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def check_client_masking(transport: asyncio.BaseTransport | None) -> None:
    """Install ``MaskCheck`` on a connection before its WebSocket upgrade."""
    # uvloop's transports are not asyncio.Transport subclasses: test for the ability.
    if transport is None or not hasattr(transport, "set_protocol"):
        return
    socket = cast(asyncio.Transport, transport)
    inner = socket.get_protocol()
    if isinstance(inner, asyncio.Protocol) and not isinstance(inner, MaskCheck):
        socket.set_protocol(MaskCheck(inner, socket))
