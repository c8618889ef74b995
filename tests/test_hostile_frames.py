"""Hostile clients: WebSocket frames the server must refuse (bad opcodes, RSV bits,
unmasked, fragmented control frames...), heavy fragmentation, fragmented
messages above the size limit; and the raw test client's own frame builder.

Each socket case runs against a real server (``start_server``) while a
"bystander" client stays connected throughout (tests/hostile_helpers.py); after
the case it must still publish and receive within a second, and every
publication the server acknowledged during the test must be in history. No case
may make hubbub log a traceback, and a hostile connection is at most one log
line. Every loop is bounded in count and time.
"""

from __future__ import annotations

import json
import struct

import pytest

from tests.conftest import RunningServer
from tests.hostile_helpers import (
    BYSTANDER_CHANNEL,
    bystander,
    no_hubbub_tracebacks,  # noqa: F401 (autouse fixture)
    raw_connected,
)
from tests.rawws import OP_BINARY, OP_CONTINUATION, OP_PING, OP_TEXT, build_frame

# --- frames the WebSocket layer must refuse ------------------------------------------

STATS_FRAME = json.dumps({"id": 2, "presence_stats": {"channel": BYSTANDER_CHANNEL}}).encode()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(build_frame(STATS_FRAME, mask=False), 1002, id="unmasked"),
        pytest.param(build_frame(STATS_FRAME, rsv=4), 1002, id="rsv1-without-deflate"),
        pytest.param(build_frame(STATS_FRAME, rsv=2), 1002, id="rsv2"),
        pytest.param(build_frame(STATS_FRAME, rsv=1), 1002, id="rsv3"),
        pytest.param(build_frame(b"x", opcode=0x3), 1002, id="opcode-3"),
        pytest.param(build_frame(b"x", opcode=0xB), 1002, id="opcode-0xB"),
        pytest.param(build_frame(b"x", opcode=OP_PING, fin=False), 1002, id="ping-without-fin"),
        pytest.param(build_frame(b"x" * 126, opcode=OP_PING), 1002, id="ping-126-bytes"),
        pytest.param(build_frame(b"x", opcode=OP_CONTINUATION), 1002, id="orphan-continuation"),
        pytest.param(
            build_frame(b'{"id":2,', fin=False) + build_frame(b"1}", opcode=OP_TEXT),
            1002,
            id="text-inside-fragmented-text",
        ),
        pytest.param(
            build_frame(b'{"id":2,"presence_stats":{"channel":"\xff\xfe"}}'),
            1007,
            id="invalid-utf8",
        ),
        pytest.param(
            build_frame(b"\xed\xa0\x80"), 1007, id="utf8-surrogate"
        ),  # CESU surrogate: invalid UTF-8
        pytest.param(build_frame(b"abc", length=2**62), 1009, id="length-2^62"),
        pytest.param(build_frame(b"abc", length=2**63 + 1), 1002, id="length-above-2^63"),
    ],
)
async def test_invalid_frames_are_refused(server: RunningServer, frame: bytes, code: int) -> None:
    async with bystander(server):
        ws = await raw_connected(server)
        try:
            await ws.send(frame)
            assert await ws.read_close_code(within=2) == code
            assert await ws.eof(), "TCP still open after the close frame"
        finally:
            ws.abort()


async def test_text_in_5000_one_byte_fragments_is_reassembled(server: RunningServer) -> None:
    """Observed behaviour: aiohttp reassembles the fragments; the command is answered."""
    message = STATS_FRAME.ljust(5000)  # trailing whitespace is valid JSON
    frames = [build_frame(message[:1], fin=False)]
    frames += [
        build_frame(message[i : i + 1], opcode=OP_CONTINUATION, fin=False)
        for i in range(1, len(message) - 1)
    ]
    frames.append(build_frame(message[-1:], opcode=OP_CONTINUATION))
    assert len(frames) == 5000
    async with bystander(server):
        ws = await raw_connected(server)
        try:
            await ws.send(*frames)
            reply = await ws.reply(2, within=5)
            assert reply["presence_stats"]["num_clients"] >= 1, reply
        finally:
            ws.abort()


async def test_fragmented_message_above_the_limit_closes_1009(server: RunningServer) -> None:
    """The size limit counts the reassembled message, not each fragment."""
    limit = server.hub.config.websocket.message_size_limit
    chunk = b" " * 8192
    frames = [build_frame(chunk, fin=False)]
    frames += [
        build_frame(chunk, opcode=OP_CONTINUATION, fin=False) for _ in range(limit // 8192 + 1)
    ]
    async with bystander(server):
        ws = await raw_connected(server)
        try:
            ws.writer.write(b"".join(frames))
            assert await ws.read_close_code() == 1009
        finally:
            ws.abort()


def test_rawws_frame_builder() -> None:
    """The raw client's own frames decode as specified (checked against the RFC layout)."""
    frame = build_frame(b"hi", opcode=OP_BINARY, fin=False, rsv=5, mask=False)
    assert frame == bytes((0x50 | OP_BINARY, 2)) + b"hi"
    frame = build_frame(b"abc", length=2**62, mask=False)
    assert frame[:2] == bytes((0x81, 127)) and struct.unpack("!Q", frame[2:10])[0] == 2**62
    frame = build_frame(b"x" * 200, mask_key=b"\x00\x00\x00\x00")
    assert frame[:4] == bytes((0x81, 0x80 | 126, 0, 200)) and frame[8:] == b"x" * 200
