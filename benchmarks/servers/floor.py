"""The floor: the least a Python broadcast server can do. No protocol, no JSON, no library.

A connection that sends a message becomes a publisher. Messages received during
one event-loop turn are joined with ``\\n`` into ONE pre-built frame at the end of
the turn, and that same bytes object is written once to every other connection
(coalesced: one write per connection per turn). Raw asyncio protocol on uvloop.
Usage: python floor.py --port 9000   (127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import struct

import uvloop

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes, opcode: int = 1) -> bytes:
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def unmask(data: bytes, mask: bytes) -> bytes:
    if mask == b"\x00\x00\x00\x00":  # the bench masks with zeros: nothing to do
        return data
    key = int.from_bytes((mask * (len(data) // 4 + 1))[: len(data)], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(len(data), "big")


class Hub:
    def __init__(self) -> None:
        self.subscribers: set[Conn] = set()
        self.pending: list[bytes] = []
        self.scheduled = False

    def publish(self, message: bytes) -> None:
        self.pending.append(message)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        data = frame(b"\n".join(self.pending))
        self.pending.clear()
        for conn in self.subscribers:
            conn.transport.write(data)


class Conn(asyncio.Protocol):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.buffer = bytearray()
        self.open = False
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.hub.subscribers.discard(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            key = b""
            for line in bytes(buf[:end]).split(b"\r\n"):
                if line.lower().startswith(b"sec-websocket-key:"):
                    key = line.split(b":", 1)[1].strip()
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            del buf[: end + 4]
            self.open = True
            self.hub.subscribers.add(self)
        while len(buf) >= 6:
            opcode = buf[0] & 0x0F
            length = buf[1] & 0x7F
            head = 2
            if length == 126:
                length = int.from_bytes(buf[2:4], "big")
                head = 4
            elif length == 127:
                length = int.from_bytes(buf[2:10], "big")
                head = 10
            if len(buf) < head + 4 + length:
                return
            mask = bytes(buf[head : head + 4])
            payload = unmask(bytes(buf[head + 4 : head + 4 + length]), mask)
            del buf[: head + 4 + length]
            if opcode == 1:
                self.hub.subscribers.discard(self)  # publishers do not receive
                self.hub.publish(payload)
            elif opcode == 8:
                self.transport.write(frame(payload[:2], 8))
                self.transport.close()
                return
            elif opcode == 9:
                self.transport.write(frame(payload, 10))


async def main(port: int) -> None:
    hub = Hub()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(hub), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9000)
    uvloop.run(main(parser.parse_args().port))
