"""A minimal, cheap WebSocket client for load generation, in three dialects.

Rule: the receive path counts, it does not decode. Every text frame is scanned
once for the publication marker ``@`` (one C-level ``bytes.count``); only
sampled connections parse the ``@<sent_us>,<publisher>,<seq>,`` prefix of each
message (latency and sequence checks), and only replies that someone awaits are
decoded as JSON. Dialects:

* ``centrifugo``: JSON client protocol v2 (``{}`` pings answered, replies by id);
* ``text``: a bare WebSocket, every text frame is a message;
* ``socketio``: Engine.IO v4 / Socket.IO v5 over WebSocket (``2`` ping -> ``3``,
  ``42["m","..."]`` events);
* ``protobuf``: the Protobuf client protocol (binary frames; ``format=protobuf``
  in the query), for subscribers: publications are counted by the ``"@`` that
  starts their JSON data (a lone ``@`` byte may be a length in binary framing).

``Target(..., compress=True)`` offers permessage-deflate (the codec of
``hubbub.websocket.deflate``, client role); compressed frames are inflated
before they are counted. Every connection counts the bytes it received on the
wire (``wire_bytes``), so runs with and without compression compare.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import struct
import time
from typing import Any, cast
from urllib.parse import urlsplit

from hubbub.protocol.protobuf import PROTOBUF, decode_replies, encode_command
from hubbub.tools.histogram import Histogram
from hubbub.websocket.deflate import (
    ClientOffer,
    NegotiationError,
    PerMessageDeflate,
    accept_response,
)
from hubbub.websocket.frames import FrameError, build_frame

MARK = b"@"
SAMPLE_RE = re.compile(rb"@(\d+),(\d+),(\d+),")
DIALECTS = ("centrifugo", "text", "socketio", "protobuf")
#: What starts a publication's data in a binary (Protobuf) frame.
BINARY_MARK = b'"@'


def now_us() -> int:
    """CLOCK_MONOTONIC in microseconds: one clock for every process on the machine."""
    return time.monotonic_ns() // 1000


ZERO_KEY = b"\x00\x00\x00\x00"


def client_frame(payload: bytes, opcode: int = 1, *, mask_key: bytes = ZERO_KEY) -> bytes:
    """A masked frame from the codec (clients must mask); the default all-zero key
    keeps masking free for the load generator (``mask_key=None``: a random one)."""
    return build_frame(payload, opcode=opcode, mask_key=mask_key)


class SeqTracker:
    """Per-publisher sequence accounting at one subscriber: unique, duplicates, reorders."""

    __slots__ = ("duplicates", "highest", "unique")

    def __init__(self) -> None:
        self.unique: dict[int, int] = {}
        self.highest: dict[int, int] = {}
        self.duplicates = 0

    def reset(self) -> None:
        self.unique.clear()
        self.highest.clear()
        self.duplicates = 0

    def see(self, publisher: int, seq: int) -> None:
        top = self.highest.get(publisher, -1)
        if seq > top:
            self.highest[publisher] = seq
            self.unique[publisher] = self.unique.get(publisher, 0) + 1
        else:
            self.duplicates += 1


class Target:
    """Where to connect: host, port, path (with query) and the dialect."""

    def __init__(self, url: str, dialect: str, *, compress: bool = False) -> None:
        self.compress = compress  # offer permessage-deflate
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "http"):
            raise ValueError(f"only ws:// URLs are supported, got {url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        path = parts.path or "/"
        if dialect == "socketio" and path in ("", "/"):
            path = "/socket.io/"
        if dialect == "socketio" and "EIO=" not in parts.query:
            query = "EIO=4&transport=websocket" + (f"&{parts.query}" if parts.query else "")
        elif dialect == "protobuf":
            query = "format=protobuf" + (f"&{parts.query}" if parts.query else "")
        else:
            query = parts.query
        self.path = path + (f"?{query}" if query else "")
        self.dialect = dialect
        self.url = url


class BenchConnection(asyncio.Protocol):
    """One client connection: handshake, framing, counters; no per-message Python work
    unless ``sampler`` is set."""

    def __init__(
        self,
        target: Target,
        *,
        latency: Histogram | None = None,
        seqs: SeqTracker | None = None,
    ) -> None:
        self.target = target
        self.dialect = target.dialect
        self.latency = latency
        self.seqs = seqs
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshaken = False
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int] = loop.create_future()
        self.marks = 0  # publications seen (one '@' each)
        self.frames = 0  # text frames received
        self.replies = 0  # protocol replies seen (centrifugo dialect)
        self.reply_errors = 0
        self.rate_limited = 0  # of which error 111 (too many requests)
        self.first_error: bytes | None = None  # the first error reply, for the report
        # A publisher that also subscribes gets its replies in frames with publications:
        # only such a connection looks for replies there (subscribers never do).
        self.replies_with_pushes = False
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.waiter: asyncio.Future[bytes] | None = None  # next text frame (plain echo)
        self.listeners: list[asyncio.Event] = []  # woken on every received chunk
        self.close_code: int | None = None
        self._next_id = 1
        self.wire_bytes = 0  # bytes received on the wire, headers and compression included
        self.deflate: PerMessageDeflate | None = None  # agreed in the handshake

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        key = base64.b64encode(os.urandom(16)).decode()
        target = self.target
        offer = f"Sec-WebSocket-Extensions: {ClientOffer().header()}\r\n" if target.compress else ""
        self.transport.write(
            (
                f"GET {target.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost before ready: {exc}"))
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))
        self.pending.clear()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))
        if not self.closed.done():
            self.closed.set_result(self.close_code if self.close_code is not None else 1006)
        for event in self.listeners:
            event.set()

    def data_received(self, data: bytes) -> None:
        self.wire_bytes += len(data)
        buf = self.buffer
        if buf or not self.handshaken:
            buf += data
            if not self.handshaken and not self._handshake(buf):
                return
            data = bytes(buf)
            buf.clear()
        # ``data`` is scanned in place: only bytes left after its last whole frame are kept.
        pos = 0
        size = len(data)
        while size - pos >= 2:
            compressed = data[pos] & 0x40
            opcode = data[pos] & 0x0F
            length = data[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = 10
            start = pos + head
            if size - start < length:
                break
            pos = start + length
            if compressed and self.deflate is not None:
                self._inflated(opcode, data[start:pos])
            elif opcode == 1:
                self.frames += 1
                marks = data.count(MARK, start, pos)  # no copy of the payload to count
                if marks:
                    self.marks += marks
                    if self.latency is not None:
                        self._sample(data[start:pos])
                    if self.pending or self.replies_with_pushes:
                        self._replies(data[start:pos])
                    elif self.waiter is not None and not self.waiter.done():
                        self.waiter.set_result(data[start:pos])
                else:
                    self._control_text(data[start:pos])
            elif opcode == 2:  # the Protobuf protocol
                self.frames += 1
                marks = data.count(BINARY_MARK, start, pos)
                if marks:
                    self.marks += marks
                    if self.latency is not None:
                        self._sample(data[start:pos])
                if self.pending or not marks:
                    self._control_binary(data[start:pos])
            elif opcode == 9:  # ping -> pong
                self._write(client_frame(data[start:pos], 10))
            elif opcode == 8:
                self.close_code = (data[start] << 8 | data[start + 1]) if length >= 2 else 1005
                self._write(client_frame(data[start : start + 2], 8))
                assert self.transport is not None
                self.transport.close()
        if pos < size:
            buf += data[pos:]
        for event in self.listeners:
            event.set()

    def _inflated(self, opcode: int, payload: bytes) -> None:
        """A compressed frame (hubbub's frames are never fragmented): inflate, then count."""
        assert self.deflate is not None
        try:
            text = self.deflate.decompress(payload)
        except FrameError as exc:
            self.close_code = exc.code
            self.abort()
            return
        if opcode != 1:
            return
        self.frames += 1
        marks = text.count(MARK)
        if marks:
            self.marks += marks
            if self.latency is not None:
                self._sample(text)
            if self.pending:
                self._replies(text)
            elif self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(text)
        else:
            self._control_text(text)

    def _agree(self, head: bytes) -> bool:
        """permessage-deflate from the 101's headers; False if the answer is illegal."""
        values = [
            line.split(":", 1)[1].strip()
            for line in head.decode("latin-1").split("\r\n")[1:]
            if line.lower().startswith("sec-websocket-extensions:")
        ]
        try:
            params = accept_response(values, ClientOffer()) if self.target.compress else None
        except NegotiationError as exc:
            self.ready.set_exception(ConnectionError(f"bad permessage-deflate answer: {exc}"))
            return False
        self.deflate = PerMessageDeflate(params, server=False) if params is not None else None
        return True

    def _handshake(self, buf: bytearray) -> bool:
        """Consume the 101 response from ``buf``; False while incomplete or refused."""
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        if not buf.startswith(b"HTTP/1.1 101"):
            status = bytes(buf[: buf.find(b"\r\n")]).decode("latin-1")
            self.ready.set_exception(ConnectionError(f"handshake refused: {status}"))
            assert self.transport is not None
            self.transport.close()
            return False
        if not self._agree(bytes(buf[:end])):
            assert self.transport is not None
            self.transport.close()
            return False
        del buf[: end + 4]
        self.handshaken = True
        if self.dialect != "socketio":
            self.ready.set_result(None)
        return True

    # -- receive helpers --------------------------------------------------------------
    def _sample(self, payload: bytes) -> None:
        now = now_us()
        latency = self.latency
        seqs = self.seqs
        assert latency is not None
        for match in SAMPLE_RE.finditer(payload):
            latency.record(now - int(match[1]))
            if seqs is not None:
                seqs.see(int(match[2]), int(match[3]))

    def _control_text(self, payload: bytes) -> None:
        dialect = self.dialect
        if dialect == "centrifugo":
            if payload == b"{}":
                self._write(client_frame(b"{}"))
                return
            if payload.startswith(b'{"id"') or b'\n{"id"' in payload:
                self._replies(payload)
        elif dialect == "socketio":
            if payload == b"2":
                self._write(client_frame(b"3"))
            elif payload.startswith(b"40") and not self.ready.done():
                self.ready.set_result(None)
            elif payload.startswith(b"0{"):
                self._write(client_frame(b"40"))
            elif payload.startswith(b"44") and not self.ready.done():
                self.ready.set_exception(ConnectionError(f"socket.io refused: {payload!r}"))
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(payload)

    def _control_binary(self, payload: bytes) -> None:
        if payload == PROTOBUF.ping:
            self._write(client_frame(PROTOBUF.ping, 2))  # the pong: an empty command
            return
        for reply in decode_replies(payload):
            if "id" not in reply:
                continue
            self.replies += 1
            self.reply_errors += "error" in reply
            future = self.pending.pop(int(reply["id"]), None)
            if future is not None and not future.done():
                future.set_result(reply)

    def _replies(self, payload: bytes) -> None:
        lines = [line for line in payload.split(b"\n") if line.startswith(b'{"id"')]
        self.replies += len(lines)
        errors = payload.count(b'"error":{')
        if errors:
            self.reply_errors += errors
            self.rate_limited += payload.count(b'"code":111')
            if self.first_error is None:
                self.first_error = next((line for line in lines if b'"error":{' in line), None)
        if not self.pending:
            return
        for line in lines:
            reply = json.loads(line)
            future = self.pending.pop(int(reply["id"]), None)
            if future is not None and not future.done():
                future.set_result(reply)

    # -- send -------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_text(self, payload: bytes) -> None:
        self._write(client_frame(payload))

    def send_raw(self, data: bytes) -> None:
        """Pre-built frames (several may be concatenated)."""
        self._write(data)

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def request_frame(self, commands: list[dict[str, Any]]) -> asyncio.Future[dict[str, Any]]:
        """Send commands in one frame (ids assigned); the future gets the LAST one's reply."""
        loop = asyncio.get_running_loop()
        lines = []
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        if self.dialect == "protobuf":
            frame = b""
            for command in commands:
                command_id = self.next_id()
                frame += encode_command({"id": command_id, **command})
            self.pending[command_id] = future
            self._write(client_frame(frame, 2))
            return future
        for command in commands:
            command_id = self.next_id()
            lines.append(json.dumps({"id": command_id, **command}, separators=(",", ":")))
        self.pending[command_id] = future
        self.send_text("\n".join(lines).encode())
        return future

    async def request(self, command: dict[str, Any], limit: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.request_frame([command]), limit)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(struct.pack("!H", 1000), 8))
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def open_connection(
    target: Target,
    *,
    latency: Histogram | None = None,
    seqs: SeqTracker | None = None,
    limit: float = 10.0,
) -> BenchConnection:
    """TCP connect + WebSocket handshake (+ Socket.IO namespace connect), bounded."""
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(
            lambda: BenchConnection(target, latency=latency, seqs=seqs), target.host, target.port
        ),
        limit,
    )
    try:
        await asyncio.wait_for(asyncio.shield(conn.ready), limit)
    except BaseException:
        conn.abort()
        raise
    return conn
