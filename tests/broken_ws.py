"""Deliberately broken WebSocket servers: each fault breaks one rule the audit checks.

``BrokenServer(faults)`` is an echo server on 127.0.0.1 (port 0). Without a
fault it reads with the codec's ``FrameReader`` (strict, as a server must) and
answers with ``build_frame``; each fault breaks one thing:

* ``corrupt_big``: messages over 1000 bytes come back with their first byte changed;
* ``no_pong``: pings are ignored;
* ``masked_replies``: its frames are masked (servers MUST NOT mask);
* ``no_close_reply``: a close frame is not answered and the TCP connection stays open;
* ``drop_big``: a message over 64 KiB makes it drop the connection, without a close;
* ``truncate_big``: messages over 60000 bytes come back cut to 60000;
* ``lenient``: no check at all (reserved bits, opcodes, UTF-8, mask bit, control
  frame sizes): frames are split by hand, unknown opcodes ignored;
* ``no_reassembly``: (lenient) each data frame is echoed as a message of its own;
* ``bad_deflate_answer``: a permessage-deflate offer is answered with a parameter
  nobody offered (RFC 7692 7.1: the client must fail the connection);
* ``deflate_not_inflated``: (lenient) permessage-deflate is agreed, but messages are
  echoed as they came, still compressed, without RSV1.

``FakeCentrifugo`` answers every Centrifugo command with an empty result and
nothing more: no pushes, no errors, no pings, no disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from hubbub.websocket.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    build_frame,
    close_frame,
    unmask,
)
from hubbub.websocket.handshake import HEAD_END, accept_response, parse_head

LENIENT = {"lenient", "no_reassembly", "deflate_not_inflated"}


class BrokenServer:
    def __init__(self, *faults: str) -> None:
        self.faults = set(faults)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def __aenter__(self) -> BrokenServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        # The handlers end on the aborted connections (one may sleep: no_close_reply).
        for task in self.handlers:
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            raw = await reader.readuntil(HEAD_END)
            head = parse_head(raw)
            key = head.get("sec-websocket-key") if head else None
            if key is None:
                writer.close()
                return
            extensions = None
            if head is not None and head.get("sec-websocket-extensions"):
                if "bad_deflate_answer" in self.faults:
                    extensions = "permessage-deflate; x_not_offered"
                elif "deflate_not_inflated" in self.faults:
                    extensions = "permessage-deflate"
            writer.write(accept_response(key, extensions=extensions))
            await self.serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass  # the server is shutting down: end quietly
        finally:
            writer.transport.abort()

    def frame(self, payload: bytes | str, opcode: int) -> bytes:
        return build_frame(payload, opcode=opcode, mask="masked_replies" in self.faults)

    def echo(self, opcode: int, data: bytes | str) -> bytes | None:
        raw = data.encode() if isinstance(data, str) else data
        if "drop_big" in self.faults and len(raw) > 65536:
            return None
        if "corrupt_big" in self.faults and len(raw) > 1000:
            raw = b"#" + raw[1:]
        if "truncate_big" in self.faults and len(raw) > 60000:
            raw = raw[:60000]
        return self.frame(raw, opcode)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.faults & LENIENT:
            await self._serve_lenient(reader, writer)
            return
        frames = FrameReader(1 << 26)
        while data := await reader.read(65536):
            try:
                messages = frames.feed(data)
            except FrameError as exc:
                writer.write(close_frame(exc.code))
                return
            for opcode, payload in messages:
                if opcode in (OP_TEXT, OP_BINARY):
                    reply = self.echo(opcode, payload)
                    if reply is None:
                        return
                    writer.write(reply)
                elif opcode == OP_PING and "no_pong" not in self.faults:
                    assert isinstance(payload, bytes)
                    writer.write(self.frame(payload, OP_PONG))
                elif opcode == OP_CLOSE:
                    if "no_close_reply" in self.faults:
                        await asyncio.sleep(30)
                        return
                    assert isinstance(payload, bytes)
                    writer.write(self.frame(payload[:2], OP_CLOSE))
                    await writer.drain()
                    return
            await writer.drain()

    async def _serve_lenient(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Frames split by hand, nothing checked: what a careless server does."""
        buffer = b""
        message: list[bytes] = []
        first_opcode = OP_TEXT
        while data := await reader.read(65536):
            buffer += data
            while (split := _split(buffer)) is not None:
                fin, opcode, payload, used = split
                buffer = buffer[used:]
                if opcode == OP_PING:
                    writer.write(self.frame(payload, OP_PONG))
                elif opcode == OP_CLOSE:
                    writer.write(self.frame(payload[:2], OP_CLOSE))
                    await writer.drain()
                    return
                elif opcode in (OP_TEXT, OP_BINARY, OP_CONTINUATION):
                    if "no_reassembly" in self.faults:
                        writer.write(self.frame(payload, OP_BINARY if opcode == 2 else OP_TEXT))
                        continue
                    if opcode != OP_CONTINUATION:
                        first_opcode, message = opcode, []
                    message.append(payload)
                    if fin:
                        writer.write(self.frame(b"".join(message), first_opcode))
            await writer.drain()


def _split(buffer: bytes) -> tuple[bool, int, bytes, int] | None:
    """(fin, opcode, unmasked payload, bytes used) of the first whole frame, or None."""
    if len(buffer) < 2:
        return None
    length, at = buffer[1] & 0x7F, 2
    if length == 126:
        length, at = int.from_bytes(buffer[2:4], "big"), 4
    elif length == 127:
        length, at = int.from_bytes(buffer[2:10], "big"), 10
    masked = bool(buffer[1] & 0x80)
    key_end = at + (4 if masked else 0)
    if len(buffer) < key_end + length:
        return None
    payload = buffer[key_end : key_end + length]
    if masked:
        payload = unmask(payload, buffer[at:key_end])
    return bool(buffer[0] & 0x80), buffer[0] & 0x0F, payload, key_end + length


class FakeCentrifugo(BrokenServer):
    """Answers connect, then every command with an empty result; nothing else."""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader(1 << 20)
        while data := await reader.read(65536):
            with contextlib.suppress(FrameError):
                for opcode, payload in frames.feed(data):
                    if opcode == OP_CLOSE:
                        writer.write(close_frame(1000))
                        return
                    if opcode != OP_TEXT:
                        continue
                    for line in str(payload).split("\n"):
                        with contextlib.suppress(ValueError, AttributeError, StopIteration):
                            command = json.loads(line)
                            method = next(k for k in command if k != "id")
                            result = {"client": "fake"} if method == "connect" else {}
                            reply = {"id": command.get("id", 0), method: result}
                            writer.write(build_frame(json.dumps(reply), mask=False))
            await writer.drain()
