"""Hostile clients: protocol violations (unknown, malformed or out-of-order commands,
binary frames on a JSON connection) and sizes and depth (huge strings, payloads
at the size limit, deeply nested data).

Each socket case runs against a real server (``start_server``) while a
"bystander" client stays connected throughout (tests/hostile_helpers.py); after
the case it must still publish and receive within a second, and every
publication the server acknowledged during the test must be in history. No case
may make hubbub log a traceback, and a hostile connection is at most one log
line. Every loop is bounded in count and time.
"""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import RunningServer, ServerFactory
from tests.hostile_helpers import (
    BYSTANDER_CHANNEL,
    bystander,
    no_hubbub_tracebacks,  # noqa: F401 (autouse fixture)
    raw_connected,
)
from tests.rawws import build_frame
from tests.wsclient import open_client

# --- protocol violations -------------------------------------------------------------

PRESENCE_STATS = json.dumps({"id": 7, "presence_stats": {"channel": BYSTANDER_CHANNEL}})


@pytest.mark.parametrize(
    ("connect_first", "frame"),
    [
        (False, PRESENCE_STATS),  # a command before connect
        (True, json.dumps({"id": 7, "connect": {}})),  # a second connect
        (True, json.dumps({"id": 7, "frobnicate": {}})),  # an unknown method
        (True, "{}"),  # a pong without a pending ping
        (True, json.dumps({"presence_stats": {"channel": BYSTANDER_CHANNEL}})),  # no id
        (True, "{not json"),  # invalid JSON
        (True, '{"id": 7, "presence_stats": {"channel": "a"}'),  # truncated JSON
        (True, "[1, 2, 3]"),  # JSON, not an object
        (True, "42"),
        (True, '"a string"'),
        (True, "null"),
        (True, json.dumps({"id": "7", "presence_stats": {"channel": "a"}})),  # id a string
        (True, json.dumps({"id": 7, "presence_stats": []})),  # params a list
        (True, json.dumps({"id": 7, "publish": {"channel": 5, "data": {}}})),  # channel a number
        (True, json.dumps({"id": -1, "presence_stats": {"channel": "a"}})),  # negative id
        (True, json.dumps({"id": 2**32, "presence_stats": {"channel": "a"}})),  # id > uint32
        (True, json.dumps({"id": 7, "publish": {"channel": "a"}, "history": {"channel": "a"}})),
    ],
    ids=[
        "before-connect",
        "second-connect",
        "unknown-method",
        "empty-object",
        "id-less",
        "invalid-json",
        "truncated-json",
        "array",
        "number",
        "string",
        "null",
        "string-id",
        "list-params",
        "numeric-channel",
        "negative-id",
        "id-overflow",
        "two-methods",
    ],
)
async def test_protocol_violation_closes_3501(
    server: RunningServer, connect_first: bool, frame: str
) -> None:
    async with bystander(server), open_client(server.ws_url) as client:
        if connect_first:
            assert "connect" in await client.connect(server.token("hostile"))
        await client.send_text(frame)
        assert await client.wait_closed(within=2) == 3501


async def test_binary_frame_closes_3506(server: RunningServer) -> None:
    async with bystander(server), open_client(server.ws_url) as client:
        assert "connect" in await client.connect(server.token("hostile"))
        await client.send_bytes(PRESENCE_STATS.encode())
        assert await client.wait_closed() == 3506


# --- sizes and depth -----------------------------------------------------------------


async def test_ten_megabyte_string_closes_1009(server: RunningServer) -> None:
    async with bystander(server):
        ws = await raw_connected(server)
        try:
            payload = json.dumps({"id": 2, "publish": {"channel": "chat:big", "data": "x" * 10**7}})
            ws.writer.write(build_frame(payload))  # no drain: the server stops reading early
            assert await ws.read_close_code() == 1009
            assert await ws.eof(), "TCP still open after the 1009 close"
        finally:
            ws.abort()


async def test_publish_just_under_the_size_limit(server: RunningServer) -> None:
    limit = server.hub.config.websocket.message_size_limit
    async with bystander(server) as watcher, open_client(server.ws_url) as client:
        assert "connect" in await client.connect(server.token("hostile"))
        skeleton = json.dumps({"id": 1, "publish": {"channel": "chat:big", "data": {"s": ""}}})
        data = {"s": "x" * (limit - len(skeleton) - 16)}
        reply = await client.call("publish", {"channel": "chat:big", "data": data})
        if "error" in reply:
            assert reply["error"]["code"] == 107, reply
        else:
            assert "publish" in reply, reply  # observed: accepted
            watcher.acked.append(("chat:big", data))
        await client.no_close(0.2)


async def test_deeply_nested_data_is_refused_without_traceback(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """50 000 nested arrays in ``data`` (100 KB, under a raised frame limit)."""
    server = await start_server({"websocket": {"message_size_limit": 262144}})
    depth = 50_000
    async with bystander(server):
        ws = await raw_connected(server)
        try:
            frame = (
                b'{"id":2,"publish":{"channel":"chat:deep","data":'
                + b"[" * depth
                + b"]" * depth
                + b"}}"
            )
            await ws.send(build_frame(frame))
            try:
                reply = await ws.reply(2)
            except AssertionError as closed:  # RawWS.messages saw the close frame
                assert "closed 3501" in str(closed), closed
            else:
                assert reply.get("error", {}).get("code") == 107, reply
        finally:
            ws.abort()
    tracebacks = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
