"""hubbub mounted in a FastAPI application under uvicorn (``hubbub.asgi``).

Proven over real sockets: centrifuge-python and centrifuge-js connect to the
mounted endpoint and exchange publications with each other and with the HTTP
API (``cent``) served by the same mount; an ordinary FastAPI route in the same
application keeps answering; merely mounted (no lifespan passed down), the hub
starts on first use; with the parent's lifespan, shutdown closes clients with
3001; the slow-client rule (3008), the message size limit (1009), binary
frames (3506) and the origin check (403) hold under ASGI as on hubbub's own
connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import uvicorn
from cent import AsyncClient, PublishRequest
from centrifuge import Client, PublicationContext, SubscriptionEventHandler
from fastapi import FastAPI

from hubbub.asgi import HubAsgiApp, create_asgi_app
from hubbub.config.loader import load_config
from hubbub.hub.hooks import DisconnectEvent
from hubbub.hub.hub import Hub
from tests.conftest import API_KEY, DEFAULT_CONFIG, merge
from tests.rawws import RawWS, build_frame, handshake_request, http_exchange, text
from tests.sdk_helpers import EventProcess, PythonSubscriber
from tests.test_sdk_js import CLIENT_SCRIPT, JS_DIR, js_dependencies  # noqa: F401

HOST = "127.0.0.1"
MOUNT = "/rt"
TIMEOUT = 10.0
WS_PATH = f"{MOUNT}/connection/websocket"


@dataclass
class FastApiServer:
    hub: Hub
    realtime: HubAsgiApp
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}{WS_PATH}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


@contextlib.asynccontextmanager
async def fastapi_server(
    extra: dict[str, Any] | None = None, *, lifespan: bool = False
) -> AsyncIterator[FastApiServer]:
    """FastAPI with hubbub mounted at /rt and a route of its own, under uvicorn."""
    config = load_config(None, env={}, base=merge(DEFAULT_CONFIG, extra or {})).config
    hub = Hub(config)
    realtime = create_asgi_app(hub)
    app = FastAPI(lifespan=realtime.lifespan if lifespan else None)

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "from fastapi"}

    app.mount(MOUNT, realtime)
    server = uvicorn.Server(
        uvicorn.Config(app, host=HOST, port=0, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        await started(server, task)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield FastApiServer(hub, realtime, port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)
        if not lifespan:
            await realtime.close()


async def started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    """Wait until uvicorn listens (it offers a flag, not an event)."""
    async with asyncio.timeout(TIMEOUT):
        while not server.started:
            if task.done():
                task.result()  # it failed to start: raise why
            await asyncio.sleep(0.02)


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.json(content_type=None)


async def test_the_sdks_and_the_api_meet_through_a_fastapi_mount() -> None:
    async with fastapi_server() as server:
        assert server.hub._delivery is None  # merely mounted: nothing started it yet
        assert await get(f"{server.url}/hello") == (200, {"hello": "from fastapi"})
        assert await get(f"{server.url}{MOUNT}/health") == (200, {})
        assert server.hub._delivery is not None  # started on first use
        assert await get(f"{server.url}{MOUNT}/ready") == (200, {})
        channel = "chat:asgi"
        scenario = {"url": server.ws_url, "name": "js-asgi", "channel": channel}
        js = await EventProcess.start(
            "node", str(CLIENT_SCRIPT), json.dumps(scenario), cwd=JS_DIR, label="js-asgi"
        )
        try:
            await js.next("connected", within=TIMEOUT)
            await js.next("subscribed", within=TIMEOUT)
            async with PythonSubscriber(server.ws_url, channel) as py:
                api = AsyncClient(f"{server.url}{MOUNT}/api", API_KEY)
                try:
                    result = await api.publish(PublishRequest(channel=channel, data={"n": 1}))
                finally:
                    await api.close()
                assert (await py.next_publication()).pub.data == {"n": 1}
                publication = await js.next("publication", within=TIMEOUT)
                assert publication["data"] == {"n": 1} and publication["offset"] == result.offset
                reply = await js.request("publish", data={"from": "js"}, within=TIMEOUT)
                assert "error" not in reply, reply
                assert (await py.next_publication()).pub.data == {"from": "js"}
                await py.publish({"from": "python"})
                from_python = await js.next(
                    "publication", where=lambda e: e["data"] == {"from": "python"}, within=TIMEOUT
                )
                assert from_python["channel"] == channel
        finally:
            await js.close({"cmd": "exit"})
        assert await get(f"{server.url}/hello") == (200, {"hello": "from fastapi"})


async def test_the_api_refuses_a_wrong_key_and_unknown_paths() -> None:
    async with fastapi_server() as server, aiohttp.ClientSession() as http:
        url = f"{server.url}{MOUNT}/api/publish"
        body = {"channel": "chat:x", "data": {}}
        async with http.post(url, json=body, headers={"X-API-Key": "wrong"}) as response:
            assert response.status == 401
        async with http.post(url, data=b"{not json", headers={"X-API-Key": API_KEY}) as response:
            assert response.status == 400
        async with http.get(f"{server.url}{MOUNT}/nothing") as response:
            assert response.status == 404


async def test_the_parent_lifespan_starts_and_stops_the_hub() -> None:
    async with fastapi_server(lifespan=True) as server:
        assert server.hub._delivery is not None  # started by the lifespan
        ws = await RawWS.open(HOST, server.port, WS_PATH)
        await ws.send(text({"id": 1, "connect": {}}))
        assert "connect" in await ws.reply(1)
    try:
        # uvicorn closes its WebSockets (1012, service restart) before it runs the
        # lifespan's shutdown; the SDKs reconnect on 1012 as on hubbub's 3001.
        assert await ws.read_close_code() == 1012
    finally:
        ws.abort()
    assert server.hub.closing and not server.hub.sessions  # closed by the lifespan


async def test_as_the_root_application_the_asgi_lifespan_runs_the_hub() -> None:
    hub = Hub(load_config(None, env={}, base=DEFAULT_CONFIG).config)
    server = uvicorn.Server(
        uvicorn.Config(create_asgi_app(hub), host=HOST, port=0, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        await started(server, task)
        assert hub._delivery is not None  # lifespan.startup started it
        port = server.servers[0].sockets[0].getsockname()[1]
        ws = await RawWS.open(HOST, port)
        await ws.send(text({"id": 1, "connect": {}}))
        assert "connect" in await ws.reply(1)
        ws.abort()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)
    assert hub.closing  # lifespan.shutdown closed it


async def connected(server: FastApiServer, **kwargs: Any) -> RawWS:
    ws = await RawWS.open(HOST, server.port, WS_PATH, **kwargs)
    await ws.send(text({"id": 1, "connect": {}}))
    assert "connect" in await ws.reply(1)
    return ws


async def test_a_client_that_never_reads_is_closed_as_slow() -> None:
    async with fastapi_server({"client": {"queue_max_size": 65536}}) as server:
        codes: list[int] = []

        @server.hub.on_disconnect
        async def gone(event: DisconnectEvent) -> None:
            codes.append(event.code)

        stuck = await connected(server, rcvbuf=4096)
        try:
            await stuck.send(text({"id": 2, "subscribe": {"channel": "chat:flood"}}))
            await asyncio.sleep(0.2)
            for n in range(400):  # never read: kernel buffers fill, then ours; then 3008
                await server.hub.publish("chat:flood", {"n": n, "pad": "x" * 20_000})
                await asyncio.sleep(0)
                if not server.hub.sessions:
                    break
            assert not server.hub.sessions, "never closed as slow"
            await server.hub.wait_idle()  # the disconnect hook runs in the background
            assert codes == [3008]
        finally:
            stuck.abort()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (build_frame(json.dumps({"id": 2, "rpc": {"data": "x" * 70_000}})), 1009),
        (build_frame(b'{"id":2,"rpc":{}}', opcode=0x2), 3506),
    ],
    ids=["over-the-size-limit", "binary"],
)
async def test_limits_hold_under_asgi(frame: bytes, code: int) -> None:
    async with fastapi_server() as server:
        ws = await connected(server)
        try:
            await ws.send(frame)
            assert await ws.read_close_code() == code
        finally:
            ws.abort()


async def test_a_foreign_origin_is_refused() -> None:
    async with fastapi_server() as server:
        request = b"".join(
            handshake_request(HOST, server.port, WS_PATH, extra=["Origin: https://evil.example"])
        )
        reply, _ = await http_exchange(HOST, server.port, request, eof_within=0.5)
        assert reply is not None and reply.status == 403, reply
        assert not server.hub.sessions


async def test_a_hub_that_cannot_start_refuses_with_503_and_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from hubbub.engines.memory import MemoryEngine

    class DownEngine(MemoryEngine):
        """An application's engine whose backend is down."""

        async def start(self, hub: Any) -> None:
            raise ConnectionRefusedError("backend down")

    config = load_config(None, env={}, base=DEFAULT_CONFIG).config
    hub = Hub(config, engine=DownEngine())
    app = FastAPI()
    app.mount(MOUNT, create_asgi_app(hub))
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        await started(server, task)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.get(f"http://{HOST}:{port}{MOUNT}/health") as response:
                    assert response.status == 503
                    assert "not running" in await response.text()
        request = b"".join(handshake_request(HOST, port, WS_PATH))
        reply, _ = await http_exchange(HOST, port, request, eof_within=0.5)
        assert reply is not None and reply.status != 101, reply
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "did not start" in errors[0].getMessage(), errors
    assert not any(r.exc_info for r in errors)


async def test_protobuf_sdks_through_a_fastapi_mount() -> None:
    """centrifuge-js's Protobuf build and centrifuge-python with use_protobuf=True,
    and a JSON client, on one channel through the ASGI door (issue 11)."""
    async with fastapi_server() as server:
        channel = "chat:asgi-protobuf"
        scenario = {"url": server.ws_url, "name": "js-pb", "channel": channel, "protobuf": True}
        js = await EventProcess.start(
            "node", str(CLIENT_SCRIPT), json.dumps(scenario), cwd=JS_DIR, label="js-asgi-pb"
        )
        received: asyncio.Queue[Any] = asyncio.Queue()

        class Handler(SubscriptionEventHandler):
            async def on_publication(self, ctx: PublicationContext) -> None:
                await received.put(json.loads(ctx.pub.data))

        client = Client(server.ws_url, use_protobuf=True)
        sub = client.new_subscription(channel, Handler())
        try:
            await js.next("subscribed", within=TIMEOUT)
            await client.connect()
            await sub.subscribe()
            await sub.ready(timeout=TIMEOUT)
            assert {s.codec.name for s in server.hub.sessions.values()} == {"protobuf"}
            async with PythonSubscriber(server.ws_url, channel) as py:
                await py.publish({"from": "json"})
                await sub.publish(json.dumps({"from": "python-protobuf"}).encode())
                reply = await js.request("publish", data={"from": "js-protobuf"}, within=TIMEOUT)
                assert "error" not in reply, reply
                sent = [{"from": "json"}, {"from": "python-protobuf"}, {"from": "js-protobuf"}]
                assert [(await py.next_publication()).pub.data for _ in range(3)] == sent
                assert [await asyncio.wait_for(received.get(), TIMEOUT) for _ in range(3)] == sent
                got = [(await js.next("publication", within=TIMEOUT))["data"] for _ in range(3)]
                assert got == sent
        finally:
            await client.disconnect()
            await js.close({"cmd": "exit"})
