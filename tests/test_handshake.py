"""RFC 6455 conformance of the opening handshake and of frame rules, on every door.

Every case runs against ``hubbub serve``'s listener ("serve"), an aiohttp
application embedding hubbub with ``attach`` ("attach"), the listener over TLS
("tls") and the aiohttp application on a TLS site ("attach-tls"): one WebSocket
implementation serves them all, so each must give the same answer. The judge
itself (``check_upgrade``) is also tested without sockets. These cases failed
before issue 10 on one door or more: version 12 got 400 without
``Sec-WebSocket-Version``, HTTP/1.0, a missing Host and a non-base64 key were
accepted, close code 1014 was refused, 1006 in a close frame was echoed, a
message of exactly ``websocket.message_size_limit`` bytes got 1009, a ping with
RSV1 was answered, an unmasked frame in the upgrade's packet was processed, and
TLS was not served at all.
"""

from __future__ import annotations

import base64
import json
import os
import struct

import pytest

from hubbub.websocket.handshake import Refusal, check_upgrade, parse_head
from tests.conftest import RunningServer
from tests.doors import Door
from tests.rawws import (
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    RawWS,
    build_frame,
    handshake_request,
    read_http_head,
    text,
)

HOST = "127.0.0.1"
CONNECT = {"id": 1, "connect": {}}


def request_with(port: int, changes: dict[str, str | None], *, version: str = "HTTP/1.1") -> bytes:
    """An upgrade request with headers replaced (None: removed) and the HTTP version set."""
    lines = handshake_request(HOST, port)
    for name, value in changes.items():
        lines = [line for line in lines if not line.lower().startswith(name.lower().encode())]
        if value is not None:
            lines.insert(1, f"{name}: {value}\r\n".encode())
    lines[0] = lines[0].replace(b"HTTP/1.1", version.encode())
    return b"".join(lines)


# --- the judge, without sockets ----------------------------------------------------------


def head_of(request: bytes) -> object:
    head = parse_head(request)
    assert head is not None
    return check_upgrade(head)


def test_a_valid_request_yields_its_key() -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    request = b"".join(handshake_request(HOST, 80, key=key))
    assert head_of(request) == key


@pytest.mark.parametrize(
    ("changes", "version", "status"),
    [
        ({"Sec-WebSocket-Version": "12"}, "HTTP/1.1", 426),
        ({"Sec-WebSocket-Version": None}, "HTTP/1.1", 426),
        ({}, "HTTP/1.0", 400),
        ({"Host": None}, "HTTP/1.1", 400),
        ({"Sec-WebSocket-Key": "not base64 at all!!!!!!="}, "HTTP/1.1", 400),
        ({"Sec-WebSocket-Key": base64.b64encode(b"x" * 15).decode()}, "HTTP/1.1", 400),
        ({"Upgrade": None}, "HTTP/1.1", 426),
        ({"Upgrade": "h2c"}, "HTTP/1.1", 426),
        ({"Connection": "keep-alive"}, "HTTP/1.1", 400),
        ({"Content-Length": "5"}, "HTTP/1.1", 400),
    ],
    ids=[
        "version-12",
        "no-version",
        "http-1.0",
        "no-host",
        "non-base64-key",
        "15-byte-key",
        "no-upgrade",
        "upgrade-h2c",
        "no-connection-upgrade",
        "body",
    ],
)
def test_the_judge_refuses(changes: dict[str, str | None], version: str, status: int) -> None:
    refusal = head_of(request_with(80, changes, version=version))
    assert isinstance(refusal, Refusal) and refusal.status == status, refusal
    if status == 426:
        assert ("Upgrade", "websocket") in refusal.headers


def test_another_method_gets_405() -> None:
    request = b"".join(handshake_request(HOST, 80)).replace(b"GET ", b"POST ", 1)
    refusal = head_of(request)
    assert isinstance(refusal, Refusal) and refusal.status == 405
    assert ("Allow", "GET") in refusal.headers


# --- over sockets, on every door -----------------------------------------------------------


async def test_version_12_gets_426_naming_version_13(door: Door) -> None:
    server = await door.start()
    reply = await door.exchange(server, request_with(server.port, {"Sec-WebSocket-Version": "12"}))
    assert reply.status == 426, reply
    assert reply.headers.get("sec-websocket-version") == "13", reply.headers


@pytest.mark.parametrize(
    ("changes", "version"),
    [
        ({}, "HTTP/1.0"),
        ({"Host": None}, "HTTP/1.1"),
        ({"Sec-WebSocket-Key": "!!!!not-base64!!!!!!!!=="}, "HTTP/1.1"),
        ({"Sec-WebSocket-Key": base64.b64encode(b"x" * 20).decode()}, "HTTP/1.1"),
    ],
    ids=["http-1.0", "no-host", "non-base64-key", "20-byte-key"],
)
async def test_malformed_upgrades_get_400(
    door: Door, changes: dict[str, str | None], version: str
) -> None:
    server = await door.start()
    reply = await door.exchange(server, request_with(server.port, changes, version=version))
    assert reply.status == 400, reply
    assert "sec-websocket-accept" not in reply.headers
    ws = await door.connected(server)  # everyone else is still served
    ws.abort()


async def test_close_code_1014_is_accepted_and_echoed(door: Door) -> None:
    server = await door.start()
    ws = await door.connected(server)
    try:
        await ws.send(build_frame(struct.pack("!H", 1014), opcode=OP_CLOSE))
        assert await ws.read_close_code() == 1014
    finally:
        ws.abort()


@pytest.mark.parametrize("code", [1004, 1005, 1006, 1015, 999, 2000, 5000])
async def test_reserved_close_codes_in_a_close_frame_get_1002(door: Door, code: int) -> None:
    server = await door.start()
    ws = await door.connected(server)
    try:
        await ws.send(build_frame(struct.pack("!H", code), opcode=OP_CLOSE))
        assert await ws.read_close_code() == 1002
    finally:
        ws.abort()


async def test_a_message_of_exactly_the_size_limit_is_accepted(door: Door) -> None:
    server = await door.start()
    limit = server.hub.config.websocket.message_size_limit
    ws = await door.connected(server)
    try:
        command = json.dumps({"id": 2, "publish": {"channel": "chat:size", "data": {}}})
        exact = command.ljust(limit).encode()  # trailing spaces: still valid JSON
        assert len(exact) == limit
        await ws.send(build_frame(exact))
        reply = await ws.reply(2)
        assert "publish" in reply, reply
        await ws.send(build_frame(exact + b" "))
        assert await ws.read_close_code() == 1009
    finally:
        ws.abort()


@pytest.mark.parametrize(
    "frame",
    [
        build_frame(b"x", opcode=OP_PING, rsv=4),
        build_frame(b"x", opcode=OP_PING, rsv=2),
        build_frame(b"x", opcode=OP_PING, rsv=1),
        build_frame(b"x", opcode=OP_PONG, rsv=4),
        build_frame(struct.pack("!H", 1000), opcode=OP_CLOSE, rsv=4),
    ],
    ids=["ping-rsv1", "ping-rsv2", "ping-rsv3", "pong-rsv1", "close-rsv1"],
)
async def test_reserved_bits_on_control_frames_get_1002(door: Door, frame: bytes) -> None:
    server = await door.start()
    ws = await door.connected(server)
    try:
        await ws.send(frame)
        close = await ws.read_close()  # no pong first
        assert close is not None and close.close_code == 1002, close
    finally:
        ws.abort()


async def test_an_unmasked_frame_in_the_upgrade_packet_gets_1002(door: Door) -> None:
    server = await door.start()
    reader, writer = await door.open_stream(server)
    try:
        head = b"".join(handshake_request(HOST, server.port))
        writer.write(head + build_frame(json.dumps(CONNECT), mask=False))  # one packet
        reply = await read_http_head(reader)
        assert reply.status == 101
        ws = RawWS(reader, writer, reply)
        assert await ws.read_close_code() == 1002
        assert not server.hub.sessions or all(s.closed for s in server.hub.sessions.values())
    finally:
        writer.transport.abort()


async def test_commands_behind_the_head_in_one_packet_are_answered(door: Door) -> None:
    server: RunningServer = await door.start()
    reader, writer = await door.open_stream(server)
    try:
        head = b"".join(handshake_request(HOST, server.port))
        writer.write(head + text(CONNECT))
        reply = await read_http_head(reader)
        assert reply.status == 101
        assert "connect" in await RawWS(reader, writer, reply).reply(1)
    finally:
        writer.transport.abort()


# --- frame rules, Autobahn-style, on every door ------------------------------------------

PUBLISH = json.dumps({"id": 2, "publish": {"channel": "chat:frames", "data": {}}}).encode()


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (build_frame(b"x", opcode=0x3), 1002),
        (build_frame(b"x", opcode=0xB), 1002),
        (build_frame(b"x", opcode=OP_PING, fin=False), 1002),
        (build_frame(b"x" * 126, opcode=OP_PING), 1002),
        (build_frame(b"x", opcode=0x0), 1002),  # continuation without a message
        (build_frame(b"{", fin=False) + build_frame(b"}"), 1002),  # new text inside a text
        (build_frame(b'"\xff"'), 1007),
        (build_frame(struct.pack("!H", 1000) + b"\xff", opcode=OP_CLOSE), 1007),
        (build_frame(b"x", opcode=OP_CLOSE), 1002),  # a one-byte close payload
        (build_frame(b"abc", length=2**62), 1009),
    ],
    ids=[
        "opcode-3",
        "opcode-B",
        "fragmented-ping",
        "ping-126-bytes",
        "orphan-continuation",
        "text-inside-text",
        "invalid-utf8",
        "close-reason-not-utf8",
        "close-one-byte",
        "length-2^62",
    ],
)
async def test_frames_the_rfc_forbids_are_refused(door: Door, frames: bytes, code: int) -> None:
    server = await door.start()
    ws = await door.connected(server)
    try:
        await ws.send(frames)
        assert await ws.read_close_code() == code
    finally:
        ws.abort()


async def test_fragments_with_a_ping_between_are_answered_in_order(door: Door) -> None:
    server = await door.start()
    ws = await door.connected(server)
    try:
        third = len(PUBLISH) // 3
        await ws.send(
            build_frame(PUBLISH[:third], fin=False),
            build_frame(b"between", opcode=OP_PING),
            build_frame(PUBLISH[third : 2 * third], opcode=0x0, fin=False),
            build_frame(PUBLISH[2 * third :], opcode=0x0),
        )
        pong = await ws.read_frame()
        assert (pong.opcode, pong.payload) == (OP_PONG, b"between")  # before the message ends
        assert "publish" in await ws.reply(2)
    finally:
        ws.abort()


async def test_invalid_utf8_fails_before_the_message_ends(door: Door) -> None:
    server = await door.start()
    ws = await door.connected(server)
    try:
        await ws.send(
            build_frame("κόσμε".encode(), fin=False),
            build_frame(b"\xf4\x90\x80\x80", opcode=0x0, fin=False),  # no final fragment
        )
        assert await ws.read_close_code() == 1007
    finally:
        ws.abort()
