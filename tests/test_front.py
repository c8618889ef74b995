"""The public listener: hubbub's own upgrade path, the hand-off to aiohttp, and shutdown.

What is proven here, over real sockets:
- tests run on uvloop (the loop ``hubbub serve`` uses);
- every upgrade is served by ``WebSocketConnection``, whether hubbub's listener
  or an aiohttp application (``attach``) accepted it: idle clients hold no task
  on either door (aiohttp's own WebSocket handler held one per client);
- bytes sent right behind the handshake head are not lost; a keep-alive HTTP
  request followed by an upgrade on the same connection is taken over from
  aiohttp;
- permessage-deflate is agreed with aiohttp's client; refused handshakes get
  the status RFC 6455 asks for;
- hooks see the handshake headers and the peer address;
- closes: the server answers a client's close frame and drops TCP; shutdown
  sends 3001 and is bounded even when a client never answers.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import uvloop

from hubbub.hub.hooks import ConnectEvent, DisconnectEvent, RPCEvent, RPCResponse
from hubbub.hub.hub import Hub
from hubbub.server import run as run_module
from hubbub.server import wsconn
from hubbub.server.run import start
from tests.conftest import DEFAULT_CONFIG, RunningServer, ServerFactory, merge
from tests.doors import Door
from tests.rawws import (
    OP_CLOSE,
    RawWS,
    build_frame,
    close_frame,
    handshake_request,
    http_exchange,
    open_stream,
    read_http_head,
    text,
)

HOST = "127.0.0.1"
CONNECT = {"id": 1, "connect": {}}


async def connected(server: RunningServer, **kwargs: Any) -> RawWS:
    ws = await RawWS.open(HOST, server.port, **kwargs)
    await ws.send(text(CONNECT))
    reply = await ws.reply(1)
    assert "connect" in reply, reply
    return ws


async def test_the_running_loop_is_uvloop() -> None:
    # The tests' loop is uvloop's Loop (conftest.ClosingLoop adds a guard on close).
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)


@pytest.mark.parametrize("embedded", [False, True], ids=["serve", "attach"])
async def test_idle_connections_hold_no_task(start_server: ServerFactory, embedded: bool) -> None:
    server = await start_server(embedded=embedded)
    clients: list[RawWS] = []
    try:
        await asyncio.sleep(0.1)
        before = len(asyncio.all_tasks())
        for _ in range(30):
            ws = await connected(server)
            command_id = await ws.command("subscribe", {"channel": "chat:idle"})
            assert "subscribe" in await ws.reply(command_id)
            clients.append(ws)
        await asyncio.sleep(0.2)  # let command tasks end
        extra = len(asyncio.all_tasks()) - before
        assert extra <= 2, extra  # hubbub's connection: no task while idle, on both doors
    finally:
        for ws in clients:
            ws.abort()


async def test_frames_behind_the_head_are_read(server: RunningServer) -> None:
    reader, writer = await open_stream(HOST, server.port)
    try:
        head = b"".join(handshake_request(HOST, server.port))
        commands = text(CONNECT) + text({"id": 2, "subscribe": {"channel": "chat:x"}})
        writer.write(head + commands)  # one write: head and two frames together
        reply = await read_http_head(reader)
        assert reply.status == 101
        ws = RawWS(reader, writer, reply)
        replies: dict[int, Any] = {}
        while len(replies) < 2:  # both replies may come in one frame
            replies.update((m["id"], m) for m in await ws.messages() if "id" in m)
        assert "connect" in replies[1]
        assert "subscribe" in replies[2], replies[2]
    finally:
        writer.transport.abort()


async def test_http_then_upgrade_on_one_keep_alive_connection(server: RunningServer) -> None:
    reader, writer = await open_stream(HOST, server.port)
    try:
        writer.write(f"GET /health HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        reply = await read_http_head(reader)
        assert reply.status == 200
        body = await reader.readexactly(int(reply.headers["content-length"]))
        assert json.loads(body) == {}
        writer.write(b"".join(handshake_request(HOST, server.port)))
        upgrade = await read_http_head(reader)
        assert upgrade.status == 101  # taken over from aiohttp by the endpoint
        ws = RawWS(reader, writer, upgrade)
        await ws.send(text(CONNECT))
        assert "connect" in await ws.reply(1)
    finally:
        writer.transport.abort()


async def test_deflate_is_agreed_with_aiohttps_client(start_server: ServerFactory) -> None:
    server = await start_server({"websocket": {"compression": True}})
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(server.ws_url, compress=15) as ws,
    ):
        assert ws.compress == 15  # permessage-deflate agreed
        await ws.send_str(json.dumps(CONNECT))
        assert "connect" in json.loads((await ws.receive(timeout=5)).data)
        await ws.send_str(json.dumps({"id": 2, "subscribe": {"channel": "chat:z"}}))
        lines = (await ws.receive(timeout=5)).data.split("\n")  # reply (+ own join push)
        assert "subscribe" in json.loads(lines[0])
        await server.hub.publish("chat:z", {"text": "squeezed"})
        pushes: list[Any] = []
        while not any("pub" in p for p in pushes):
            frame = await ws.receive(timeout=5)
            pushes += [json.loads(line)["push"] for line in frame.data.split("\n")]
        (pub,) = [p["pub"] for p in pushes if "pub" in p]
        assert pub["data"] == {"text": "squeezed"}


async def test_without_compression_an_offer_is_ignored(server: RunningServer) -> None:
    ws = await RawWS.open(
        HOST, server.port, headers=["Sec-WebSocket-Extensions: permessage-deflate"]
    )
    try:
        assert "sec-websocket-extensions" not in ws.handshake.headers
        await ws.send(text(CONNECT))
        assert "connect" in await ws.reply(1)
    finally:
        ws.abort()


@pytest.mark.parametrize(
    ("lines", "statuses"),
    [
        pytest.param({"Sec-WebSocket-Version": "99"}, (426,), id="version-99"),
        pytest.param({"Sec-WebSocket-Key": "short"}, (400,), id="bad-key"),
        pytest.param({"Sec-WebSocket-Key": None}, (400,), id="no-key"),
        pytest.param({"Upgrade": None}, (426,), id="no-upgrade"),
        pytest.param({"Origin": "https://evil.example"}, (403,), id="foreign-origin"),
    ],
)
async def test_unusual_handshakes_are_refused(
    server: RunningServer, lines: dict[str, str | None], statuses: tuple[int, ...]
) -> None:
    request = handshake_request(HOST, server.port)
    for name, value in lines.items():
        request = [line for line in request if not line.lower().startswith(name.lower().encode())]
        if value is not None:
            request.insert(1, f"{name}: {value}\r\n".encode())
    reply, _ = await http_exchange(HOST, server.port, b"".join(request), eof_within=0.1)
    assert reply is not None and reply.status in statuses, reply
    ws = await connected(server)  # the server still serves everyone else
    ws.abort()


async def test_connect_hook_sees_headers_and_peer(start_server: ServerFactory) -> None:
    seen: list[ConnectEvent] = []

    def setup(hub: Hub) -> None:
        @hub.on_connect
        async def connect(event: ConnectEvent) -> None:
            seen.append(event)

    server = await start_server(setup=setup)
    ws = await connected(server, headers=["X-Tenant: acme", "User-Agent: front-test/1"])
    ws.abort()
    (event,) = seen
    assert event.headers["x-tenant"] == "acme"
    assert event.headers["user-agent"] == "front-test/1"
    assert event.headers["upgrade"] == "websocket"
    assert event.remote == HOST


async def test_client_close_is_answered_and_reported(start_server: ServerFactory) -> None:
    gone: asyncio.Queue[DisconnectEvent] = asyncio.Queue()

    def setup(hub: Hub) -> None:
        @hub.on_disconnect
        async def disconnected(event: DisconnectEvent) -> None:
            await gone.put(event)

    server = await start_server(setup=setup)
    ws = await connected(server)
    try:
        await ws.send(close_frame(4000, b"bye"))
        frame = await ws.read_close()
        assert frame is not None and frame.close_code == 4000  # echoed
        assert await ws.eof(), "server kept TCP open after the close exchange"
        event = await asyncio.wait_for(gone.get(), 5)
        assert event.code == 4000
    finally:
        ws.abort()


async def test_many_commands_in_one_burst_are_answered_in_order(
    start_server: ServerFactory,
) -> None:
    server = await start_server({"client": {"command_rate_limit": 0}})
    ws = await connected(server)
    try:
        count = 400  # more than the inbox holds before reading pauses
        frames = [
            text({"id": 10 + i, "publish": {"channel": "chat:burst", "data": {"n": i}}})
            for i in range(count)
        ]
        await ws.send(b"".join(frames))
        ids: list[int] = []
        while len(ids) < count:
            ids += [m["id"] for m in await ws.messages() if "id" in m]
        assert ids == list(range(10, 10 + count))
        page = await server.hub.history("chat:burst", limit=-1)
        assert [bytes(p.data) for p in page.publications][-3:] == [
            b'{"n":397}',
            b'{"n":398}',
            b'{"n":399}',
        ]
    finally:
        ws.abort()


async def test_ping_frames_get_pongs(server: RunningServer) -> None:
    ws = await connected(server)
    try:
        await ws.send(build_frame(b"are you there", opcode=0x9))
        frame = await ws.read_frame()
        assert (frame.opcode, frame.payload) == (0xA, b"are you there")
    finally:
        ws.abort()


async def test_shutdown_is_bounded_when_a_client_never_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wsconn, "CLOSE_TIMEOUT", 0.5)
    monkeypatch.setattr(run_module, "CLOSE_TIMEOUT", 0.5)
    from hubbub.config.loader import load_config

    config = load_config(None, env={}, base=merge(DEFAULT_CONFIG, {})).config
    serving = await start(Hub(config), host=HOST, port=0)
    silent = await RawWS.open(HOST, serving.port)
    await silent.send(text(CONNECT))
    assert "connect" in await silent.reply(1)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await serving.stop()
    assert loop.time() - began < 3.0
    frame = await silent.read_close()
    assert frame is not None and frame.opcode == OP_CLOSE and frame.close_code == 3001
    assert await silent.eof()
    silent.abort()


@pytest.mark.parametrize("embedded", [False, True], ids=["serve", "attach"])
async def test_both_doors_refuse_unmasked_frames_and_deliver(
    start_server: ServerFactory, embedded: bool
) -> None:
    server = await start_server(embedded=embedded)
    listener = await connected(server)
    offender = await connected(server)
    try:
        command_id = await listener.command("subscribe", {"channel": "chat:both"})
        assert "subscribe" in await listener.reply(command_id)
        await offender.send(build_frame(b'{"id":5,"rpc":{}}', mask=False))
        assert await offender.read_close_code() == 1002
        await server.hub.publish("chat:both", {"n": 1})
        pushes = [m["push"] for m in await listener.messages() if "push" in m]
        assert pushes and pushes[-1]["pub"]["data"] == {"n": 1}
    finally:
        listener.abort()
        offender.abort()


async def started(**config: Any) -> Any:
    from hubbub.config.loader import load_config

    loaded = load_config(None, env={}, base=merge(DEFAULT_CONFIG, config)).config
    return await start(Hub(loaded), host=HOST, port=0)


async def test_a_peer_that_stops_reading_is_cut_after_the_close_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(wsconn, "CLOSE_TIMEOUT", 0.3)
    serving = await started(client={"queue_max_size": 65536})
    stuck = await RawWS.open(HOST, serving.port, rcvbuf=4096)
    try:
        await stuck.send(text(CONNECT), text({"id": 2, "subscribe": {"channel": "chat:flood"}}))
        await asyncio.sleep(0.2)
        hub = serving.listener.hub
        for n in range(400):  # never read: kernel buffers, then ours fill; 3008, then the cut
            await hub.publish("chat:flood", {"n": n, "pad": "x" * 20_000})
            await asyncio.sleep(0)
            if not hub.sessions:
                break
        assert not hub.sessions, "never closed as slow"
        for _ in range(100):  # within 5 s
            if not serving.listener.connections:
                break
            await asyncio.sleep(0.05)
        assert not serving.listener.connections, "a closed, unread connection is still held"
    finally:
        stuck.abort()
        await serving.stop()


async def test_a_ping_flood_from_a_peer_that_never_reads_is_bounded() -> None:
    serving = await started()
    flooder = await RawWS.open(HOST, serving.port, rcvbuf=4096)
    try:
        ping = build_frame(b"p" * 125, opcode=0x9)
        for _ in range(400):  # 400 x 50 KB of pings; a pong each would be ~50 MB
            flooder.writer.write(ping * 400)
            await asyncio.sleep(0)
        await asyncio.sleep(0.3)
        (connection,) = serving.listener.connections
        assert connection.buffered() < 1_000_000, connection.buffered()
    finally:
        flooder.abort()
        await serving.stop()


async def test_messages_just_before_the_close_frame_still_run(server: RunningServer) -> None:
    reader, writer = await open_stream(HOST, server.port)
    try:
        head = b"".join(handshake_request(HOST, server.port))
        publish = {"id": 2, "publish": {"channel": "chat:last", "data": {"last": "words"}}}
        writer.write(head + text(CONNECT) + text(publish) + close_frame(1000))
        assert (await read_http_head(reader)).status == 101
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while loop.time() < deadline:
            page = await server.hub.history("chat:last", limit=-1)
            if page.publications:
                break
            await asyncio.sleep(0.02)
        assert [bytes(p.data) for p in page.publications] == [b'{"last":"words"}']
    finally:
        writer.transport.abort()


@pytest.mark.parametrize("embedded", [False, True], ids=["serve", "attach"])
async def test_handler_prefix_moves_the_endpoint(
    start_server: ServerFactory, embedded: bool
) -> None:
    server = await start_server({"websocket": {"handler_prefix": "/ws"}}, embedded=embedded)
    ws = await RawWS.open(HOST, server.port, "/ws")
    ws.abort()
    request = b"".join(handshake_request(HOST, server.port))  # the default path
    reply, _ = await http_exchange(HOST, server.port, request, eof_within=0.1)
    assert reply is not None and reply.status == 404, reply


@pytest.mark.parametrize("embedded", [False, True], ids=["serve", "attach"])
async def test_websocket_disabled_serves_no_endpoint(
    start_server: ServerFactory, embedded: bool
) -> None:
    server = await start_server({"websocket": {"disabled": True}}, embedded=embedded)
    request = b"".join(handshake_request(HOST, server.port))
    reply, _ = await http_exchange(HOST, server.port, request, eof_within=0.1)
    assert reply is not None and reply.status == 404, reply
    async with aiohttp.ClientSession() as http, http.get(f"{server.http_url}/health") as resp:
        assert resp.status == 200  # the rest still works


@pytest.mark.parametrize("prefix", ["ws", "/a b", "/x?y", ""])
def test_a_handler_prefix_that_is_not_a_path_is_refused(prefix: str) -> None:
    from hubbub.config.loader import load_config
    from hubbub.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_config(
            None, env={}, base=merge(DEFAULT_CONFIG, {"websocket": {"handler_prefix": prefix}})
        )
    assert caught.value.key == "websocket.handler_prefix"


async def test_commands_before_a_bad_frame_are_answered_then_the_connection_fails(
    door: Door,
) -> None:
    """Each command gets its reply: the ones that came before a framing error in the same
    read are answered (an RPC hook that awaits, a ping), then the close 1002 (audit 3.x)."""

    def setup(hub: Hub) -> None:
        @hub.on_rpc
        async def slow_echo(event: RPCEvent) -> RPCResponse:
            await asyncio.sleep(0.1)  # the bad frame is read long before the reply is ready
            return RPCResponse(data=event.data)

    server = await door.start(setup=setup)
    ws = await door.connected(server)
    try:
        rpc = text({"id": 2, "rpc": {"method": "m", "data": {"n": 1}}})
        ping = build_frame(b"p", opcode=0x9)
        bad = build_frame(b'{"id":3,"rpc":{}}', rsv=2)  # RSV2: no extension defines it
        after = build_frame(b"q", opcode=0x9)  # after the bad frame: never answered
        await ws.send(rpc + ping + bad + after)
        frames = []
        while True:
            frame = await ws.read_frame()
            frames.append(frame)
            if frame.opcode == OP_CLOSE:
                break
        assert frames[0].opcode == 0xA and frames[0].payload == b"p"  # the pong, at once
        replies = [json.loads(f.payload) for f in frames if f.opcode == 0x1]
        assert replies == [{"id": 2, "rpc": {"data": {"n": 1}}}]
        assert frames[-1].close_code == 1002
        assert [f.opcode for f in frames].count(0xA) == 1
        assert await ws.eof()
    finally:
        ws.abort()
