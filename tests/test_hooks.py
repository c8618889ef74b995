"""Application hooks: allow, deny with a code, rewrite; notifications on unsubscribe and
disconnect; and embedding the hub in an existing aiohttp application."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hubbub.codes import Error
from hubbub.errors import ClientError
from hubbub.hub.hooks import (
    ConnectDecision,
    ConnectEvent,
    DisconnectEvent,
    PublishDecision,
    PublishEvent,
    SubscribeDecision,
    SubscribeEvent,
    UnsubscribeEvent,
)
from hubbub.hub.hub import Hub
from hubbub.server.app import attach
from tests.conftest import RunningServer, ServerFactory

TIMEOUT = 5.0


async def exchange(ws: aiohttp.ClientWebSocketResponse, *commands: dict[str, Any]) -> list[Any]:
    """Send commands in one frame; return the replies (by id), skipping pushes."""
    await ws.send_str("\n".join(json.dumps(c) for c in commands))
    wanted = {c["id"] for c in commands if "id" in c}
    replies: dict[int, Any] = {}
    while len(replies) < len(wanted):
        message = await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert message.type is aiohttp.WSMsgType.TEXT, message
        for line in message.data.split("\n"):
            reply = json.loads(line)
            if reply.get("id") in wanted:
                replies[reply["id"]] = reply
    return [replies[c["id"]] for c in commands if "id" in c]


async def open_ws(session: aiohttp.ClientSession, server: RunningServer) -> Any:
    return await session.ws_connect(server.ws_url)


async def test_connect_hook_rewrites_user_info_data_and_channels(
    start_server: ServerFactory,
) -> None:
    seen: list[ConnectEvent] = []

    def setup(hub: Hub) -> None:
        @hub.on_connect
        async def connect(event: ConnectEvent) -> ConnectDecision:
            seen.append(event)
            return ConnectDecision(
                user="user-from-hook",
                info={"role": "admin"},
                data={"welcome": True},
                channels=["chat:server-side"],
            )

    server = await start_server(setup=setup)
    async with aiohttp.ClientSession() as http, await open_ws(http, server) as ws:
        (connect,) = await exchange(ws, {"id": 1, "connect": {"data": {"hello": 1}, "name": "t"}})
        result = connect["connect"]
        assert result["data"] == {"welcome": True}
        assert "chat:server-side" in result["subs"]
        assert result["subs"]["chat:server-side"]["recoverable"] is True
        (presence,) = await exchange(ws, {"id": 2, "presence": {"channel": "chat:server-side"}})
        (info,) = presence["presence"]["presence"].values()
        assert info["user"] == "user-from-hook"
        assert info["conn_info"] == {"role": "admin"}
    assert seen[0].data == {"hello": 1} and seen[0].name == "t"


async def test_connect_hook_denies_with_application_code(start_server: ServerFactory) -> None:
    def setup(hub: Hub) -> None:
        @hub.on_connect
        async def connect(event: ConnectEvent) -> None:
            raise ClientError.custom(4001, "closed for maintenance")

    server = await start_server(setup=setup)
    async with aiohttp.ClientSession() as http, await open_ws(http, server) as ws:
        (reply,) = await exchange(ws, {"id": 1, "connect": {}})
        assert reply["error"] == {"code": 4001, "message": "closed for maintenance"}


async def test_subscribe_hook_decides_instead_of_allow_options(
    start_server: ServerFactory,
) -> None:
    def setup(hub: Hub) -> None:
        @hub.on_subscribe
        async def subscribe(event: SubscribeEvent) -> SubscribeDecision:
            if event.channel.endswith("secret"):
                raise ClientError(Error.PERMISSION_DENIED)
            return SubscribeDecision(info={"seat": 7}, data={"topic": event.channel})

    server = await start_server(
        {"channel": {"namespaces": [{"name": "room", "presence": True}]}}, setup=setup
    )
    async with aiohttp.ClientSession() as http, await open_ws(http, server) as ws:
        await exchange(ws, {"id": 1, "connect": {}})
        ok, denied = await exchange(
            ws,
            {"id": 2, "subscribe": {"channel": "room:lobby"}},
            {"id": 3, "subscribe": {"channel": "room:secret"}},
        )
        assert ok["subscribe"]["data"] == {"topic": "room:lobby"}
        assert denied["error"]["code"] == Error.PERMISSION_DENIED.code
        (presence,) = await exchange(ws, {"id": 4, "presence": {"channel": "room:lobby"}})
        # allow_presence_* is off in "room": the hook governs subscribe only.
        assert presence["error"]["code"] == Error.PERMISSION_DENIED.code


async def test_publish_hook_rewrites_data(start_server: ServerFactory) -> None:
    def setup(hub: Hub) -> None:
        @hub.on_publish
        async def publish(event: PublishEvent) -> PublishDecision:
            return PublishDecision(data={"clean": str(event.data["text"]).upper()})

    server = await start_server(setup=setup)
    async with aiohttp.ClientSession() as http, await open_ws(http, server) as ws:
        await exchange(ws, {"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "chat:x"}})
        await exchange(ws, {"id": 3, "publish": {"channel": "chat:x", "data": {"text": "hi"}}})
        page = await server.hub.history("chat:x", limit=-1)
        assert [bytes(p.data) for p in page.publications] == [b'{"clean":"HI"}']


async def test_unsubscribe_and_disconnect_hooks_are_called(start_server: ServerFactory) -> None:
    unsubscribed: asyncio.Queue[UnsubscribeEvent] = asyncio.Queue()
    disconnected: asyncio.Queue[DisconnectEvent] = asyncio.Queue()

    def setup(hub: Hub) -> None:
        @hub.on_unsubscribe
        async def on_unsubscribe(event: UnsubscribeEvent) -> None:
            await unsubscribed.put(event)

        @hub.on_disconnect
        async def on_disconnect(event: DisconnectEvent) -> None:
            await disconnected.put(event)

    server = await start_server(setup=setup)
    async with aiohttp.ClientSession() as http:
        ws = await open_ws(http, server)
        await exchange(
            ws,
            {"id": 1, "connect": {}},
            {"id": 2, "subscribe": {"channel": "chat:a"}},
            {"id": 3, "subscribe": {"channel": "chat:b"}},
        )
        await exchange(ws, {"id": 4, "unsubscribe": {"channel": "chat:a"}})
        first = await asyncio.wait_for(unsubscribed.get(), TIMEOUT)
        assert (first.channel, first.server_side) == ("chat:a", False)
        await ws.close()
        second = await asyncio.wait_for(unsubscribed.get(), TIMEOUT)
        assert (second.channel, second.server_side) == ("chat:b", True)
        gone = await asyncio.wait_for(disconnected.get(), TIMEOUT)
        assert gone.code == 1000


async def test_hook_that_raises_answers_100_and_connection_survives(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def setup(hub: Hub) -> None:
        @hub.on_publish
        async def publish(event: PublishEvent) -> None:
            raise RuntimeError("bug in application hook")

    server = await start_server(setup=setup)
    async with aiohttp.ClientSession() as http, await open_ws(http, server) as ws:
        await exchange(
            ws,
            {"id": 1, "connect": {"token": server.token("erin")}},
            {"id": 2, "subscribe": {"channel": "chat:x"}},
        )
        (reply,) = await exchange(ws, {"id": 3, "publish": {"channel": "chat:x", "data": 1}})
        assert reply["error"] == {
            "code": 100,
            "message": "internal server error",
            "temporary": True,
        }
        (history,) = await exchange(ws, {"id": 4, "history": {"channel": "chat:x", "limit": 1}})
        assert "error" not in history
    assert "bug in application hook" in caplog.text


async def test_embedded_in_existing_aiohttp_app_publishing_from_app_code() -> None:
    """A user's aiohttp app serves its own routes and hubbub under /rt."""
    from hubbub.config.loader import load_config
    from tests.conftest import DEFAULT_CONFIG

    hub = Hub(load_config(None, env={}, base=DEFAULT_CONFIG).config)
    app = web.Application()

    async def announce(request: web.Request) -> web.Response:
        position = await hub.publish("chat:news", {"headline": request.query["h"]})
        return web.json_response({"offset": position.offset})

    app.router.add_get("/announce", announce)
    attach(app, hub, prefix="/rt", demo=False)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"ws://127.0.0.1:{port}/rt/connection/websocket")
            await exchange(
                ws, {"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "chat:news"}}
            )
            async with http.get(f"http://127.0.0.1:{port}/announce?h=launch") as response:
                assert await response.json() == {"offset": 1}
            message = await asyncio.wait_for(ws.receive(), TIMEOUT)
            push = json.loads(message.data)["push"]
            assert push["channel"] == "chat:news"
            assert push["pub"] == {"data": {"headline": "launch"}, "offset": 1}
            await ws.close()
    finally:
        await runner.cleanup()


async def test_serve_inside_a_plain_asyncio_program() -> None:
    """``hubbub.serve`` runs the server in the caller's loop until ``stop`` is set."""
    from hubbub import serve
    from hubbub.config.loader import load_config
    from tests.conftest import DEFAULT_CONFIG

    ports: asyncio.Queue[int] = asyncio.Queue()
    stop = asyncio.Event()
    async with Hub(load_config(None, env={}, base=DEFAULT_CONFIG).config) as hub:
        task = asyncio.create_task(
            serve(hub, host="127.0.0.1", port=0, ready=ports.put_nowait, stop=stop)
        )
        port = await asyncio.wait_for(ports.get(), TIMEOUT)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/health") as response:
                assert response.status == 200
            ws = await http.ws_connect(f"ws://127.0.0.1:{port}/connection/websocket")
            (reply,) = await exchange(ws, {"id": 1, "connect": {}})
            assert reply["connect"]["client"] in hub.sessions
            stop.set()
            await asyncio.wait_for(task, TIMEOUT)
            closing = await asyncio.wait_for(ws.receive(), TIMEOUT)
            assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 3001
