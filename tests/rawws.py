"""A raw-socket WebSocket client for hostile tests: asyncio streams, every byte by hand.

Unlike ``tests/wsclient.py`` (aiohttp's client, which only ever sends valid
frames), this client builds each frame itself, so a test can send what no
conforming client would: unmasked frames, reserved bits, reserved opcodes,
fragmented or oversized control frames, invalid UTF-8, a declared length that
is not the payload's, or a handshake dribbled one header line at a time.
Every read has a timeout.

    ws = await RawWS.open("127.0.0.1", port)
    await ws.send(build_frame(b'{"id":1,"connect":{}}'))
    frame = await ws.read_frame()
    code = await ws.read_close_code()     # None: TCP closed without a close frame
    await ws.abort()
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from hubbub.websocket.frames import (  # the codec's builder; reading stays by hand below
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    build_frame,
)

TIMEOUT = 5.0
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PATH = "/connection/websocket"

__all__ = ["OP_BINARY", "OP_CONTINUATION", "OP_PING", "OP_PONG", "build_frame"]


def apply_mask(key: bytes, data: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``key``: written apart from the codec's ``unmask``,
    so that tests can check one against the other."""
    if not data:
        return b""
    n = len(data)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")


def text(obj: Any) -> bytes:
    """A masked final text frame carrying ``obj`` (JSON-encoded unless str/bytes)."""
    if isinstance(obj, bytes | str):
        return build_frame(obj)
    return build_frame(json.dumps(obj, separators=(",", ":")))


def close_frame(code: int = 1000, reason: bytes = b"") -> bytes:
    return build_frame(struct.pack("!H", code) + reason, opcode=OP_CLOSE)


def handshake_request(
    host: str, port: int, path: str = PATH, *, key: str = "", extra: list[str] | None = None
) -> list[bytes]:
    """The lines of an HTTP/1.1 upgrade request (each ends with CRLF; last is the blank)."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key or base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
        *(extra or []),
    ]
    return [line.encode("latin-1") + b"\r\n" for line in lines] + [b"\r\n"]


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    rsv1: bool = False  # set on the first frame of a compressed message (permessage-deflate)

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE:
            return None
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else 1005

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode("utf-8", "replace")


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


async def read_http_head(reader: asyncio.StreamReader, *, within: float = TIMEOUT) -> HttpReply:
    """Status line and headers of an HTTP response (names lower-cased)."""
    async with asyncio.timeout(within):
        head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return HttpReply(status, headers)


async def open_stream(
    host: str, port: int, *, rcvbuf: int = 0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection; ``rcvbuf`` > 0 shrinks the receive buffer (set before connect)."""
    if not rcvbuf:
        return await asyncio.open_connection(host, port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def http_exchange(
    host: str,
    port: int,
    request: bytes,
    *,
    within: float = TIMEOUT,
    eof_within: float | None = None,
) -> tuple[HttpReply | None, bool]:
    """Send a raw request; the response head (None if closed without one) and
    whether the server then closed the connection within ``eof_within`` seconds
    (default ``within``)."""
    reader, writer = await open_stream(host, port)
    try:
        writer.write(request)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        reply: HttpReply | None
        try:
            reply = await read_http_head(reader, within=within)
        except (asyncio.IncompleteReadError, ConnectionError):
            reply = None
        closed = await wait_eof(reader, within=within if eof_within is None else eof_within)
        return reply, closed
    finally:
        writer.transport.abort()


async def wait_eof(reader: asyncio.StreamReader, *, within: float = TIMEOUT) -> bool:
    """Read and discard until EOF; True if the peer closed within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


class RawWS:
    """One WebSocket connection handled byte by byte."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handshake: HttpReply
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.handshake = handshake
        self._next_id = 0

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        path: str = PATH,
        *,
        headers: list[str] | None = None,
        rcvbuf: int = 0,
        within: float = TIMEOUT,
    ) -> RawWS:
        """Open TCP and do the upgrade handshake; AssertionError unless 101 and a valid accept."""
        reader, writer = await open_stream(host, port, rcvbuf=rcvbuf)
        return await cls.handshake(reader, writer, host, port, path, headers=headers, within=within)

    @classmethod
    async def handshake(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        port: int,
        path: str = PATH,
        *,
        headers: list[str] | None = None,
        within: float = TIMEOUT,
    ) -> RawWS:
        """The upgrade handshake on an open stream (plain or TLS)."""
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(b"".join(handshake_request(host, port, path, key=key, extra=headers)))
            reply = await read_http_head(reader, within=within)
            assert reply.status == 101, f"handshake answered {reply.status}"
            assert reply.headers.get("sec-websocket-accept") == accept_for(key), reply.headers
        except BaseException:
            writer.transport.abort()
            raise
        return cls(reader, writer, reply)

    # --- writing ---------------------------------------------------------------------

    async def send(self, *frames: bytes) -> None:
        """Write raw bytes (frames built with ``build_frame``) and drain."""
        self.writer.write(b"".join(frames))
        await self.writer.drain()

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def command(self, method: str, params: dict[str, Any] | None = None) -> int:
        """Send one protocol command in its own text frame; its id."""
        command_id = self.new_id()
        await self.send(text({"id": command_id, method: params or {}}))
        return command_id

    # --- reading ---------------------------------------------------------------------

    async def read_frame(self, *, within: float = TIMEOUT) -> Frame:
        """The next frame from the server (IncompleteReadError if TCP closes)."""
        async with asyncio.timeout(within):
            head = await self.reader.readexactly(2)
            fin = bool(head[0] & 0x80)
            rsv1 = bool(head[0] & 0x40)
            opcode = head[0] & 0x0F
            masked = bool(head[1] & 0x80)
            length = head[1] & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            key = await self.reader.readexactly(4) if masked else b""
            payload = await self.reader.readexactly(length)
        return Frame(fin, opcode, apply_mask(key, payload) if masked else payload, rsv1)

    async def messages(self, *, within: float = TIMEOUT) -> list[dict[str, Any]]:
        """The JSON messages of the next text frame (split on newlines)."""
        while True:
            frame = await self.read_frame(within=within)
            if frame.opcode == OP_TEXT:
                return [json.loads(line) for line in frame.payload.split(b"\n") if line.strip()]
            if frame.opcode == OP_CLOSE:
                raise AssertionError(f"closed {frame.close_code} {frame.close_reason!r}")

    async def reply(self, command_id: int, *, within: float = TIMEOUT) -> dict[str, Any]:
        """The reply to ``command_id`` (other messages are dropped)."""
        async with asyncio.timeout(within):
            while True:
                for message in await self.messages(within=within):
                    if message.get("id") == command_id:
                        return message

    async def read_close(self, *, within: float = TIMEOUT) -> Frame | None:
        """Skip frames until a close frame; None if TCP closed (or reset) without one.

        TimeoutError if neither happened within ``within`` seconds.
        """
        async with asyncio.timeout(within):
            while True:
                try:
                    frame = await self.read_frame(within=within)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return None
                if frame.opcode == OP_CLOSE:
                    return frame

    async def read_close_code(self, *, within: float = TIMEOUT) -> int | None:
        frame = await self.read_close(within=within)
        return None if frame is None else frame.close_code

    async def eof(self, *, within: float = TIMEOUT) -> bool:
        """Whether the server closed TCP within ``within`` seconds (the rest is discarded)."""
        return await wait_eof(self.reader, within=within)

    async def close(self, code: int = 1000) -> None:
        """Send a close frame (ignoring a dead socket), then drop the connection."""
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.writer.write(close_frame(code))
        self.abort()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def __aenter__(self) -> RawWS:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.abort()
