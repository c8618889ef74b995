"""The event proxy end to end: hubbub asks a real backend (aiohttp, FastAPI, gRPC).

Every test runs against the three backends of ``tests/proxy_backends`` (one
process per backend kind for the module), with every event proxied (see
``proxy_fixtures.proxy_config``). Clients are centrifuge-python and the raw
test client (for exact replies and close codes); the JS SDK has its own module.
What is proved: a connection without a JWT gets the backend's user, info,
data and meta; the backend's disconnect and error reach the client; a token
connection is not proxied; subscribe is allowed (with info, data, options)
or denied with the backend's code; a publication rewritten by the backend
reaches subscribers with its tags; RPC returns the backend's result; the
server refreshes connections and subscriptions at expiry (client told
``expires: false``); the requests carry Centrifugo's fields and headers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    DisconnectedContext,
    PublicationContext,
    SubscriptionEventHandler,
)

from tests.conftest import RunningServer, ServerFactory
from tests.proxy_fixtures import KINDS, Backend, proxy, proxy_config, start_backend
from tests.wsclient import open_client

TIMEOUT = 5.0


@pytest.fixture(scope="module", params=KINDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    running = start_backend(request.param)
    yield running
    running.stop()


@pytest.fixture
async def server(start_server: ServerFactory, backend: Backend) -> RunningServer:
    return await start_server(proxy_config(backend))


def cookie(user: str) -> dict[str, str]:
    return {"Cookie": f"user={user}", "X-Test": "from-client"}


class Events(ClientEventHandler):
    def __init__(self) -> None:
        self.connected: asyncio.Queue[ConnectedContext] = asyncio.Queue()
        self.disconnected: asyncio.Queue[DisconnectedContext] = asyncio.Queue()

    async def on_connected(self, ctx: ConnectedContext) -> None:
        await self.connected.put(ctx)

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        await self.disconnected.put(ctx)


class Publications(SubscriptionEventHandler):
    def __init__(self) -> None:
        self.received: asyncio.Queue[PublicationContext] = asyncio.Queue()

    async def on_publication(self, ctx: PublicationContext) -> None:
        await self.received.put(ctx)


def sdk_client(server: RunningServer, user: str, **kwargs: Any) -> tuple[Client, Events]:
    events = Events()
    client = Client(server.ws_url, events=events, headers=cookie(user), proxy=None, **kwargs)
    return client, events


# --- connect -----------------------------------------------------------------------


async def test_connect_without_token_gets_the_backends_user(
    server: RunningServer, backend: Backend
) -> None:
    client, events = sdk_client(server, "alice", name="py-proxy")
    await client.connect()
    try:
        connected = await asyncio.wait_for(events.connected.get(), TIMEOUT)
        assert connected.data == {"welcome": "alice"}
        whoami = await client.rpc("whoami", {}, timeout=TIMEOUT)
        # The backend's meta is kept with the connection and sent to proxies asking for it.
        assert whoami.data == {"user": "alice", "meta": {"plan": "gold"}}
    finally:
        await client.disconnect()
    [entry] = [
        e for e in await backend.requests("connect") if e["request"]["client"] == connected.client
    ]
    request = entry["request"]
    assert request["transport"] == "websocket"
    assert request["protocol"] == "json"
    assert request["encoding"] == "json"
    assert request["name"] == "py-proxy"
    assert "user" not in request  # connect is the one request without a user
    headers = entry["headers"]
    assert headers["cookie"] == "user=alice"
    assert headers["x-test"] == "from-client"  # forwarded headers win over static ones
    if backend.kind != "grpc":  # static headers are HTTP only
        assert headers["x-static"] == "from-config"
        assert headers["content-type"] == "application/json"
    else:  # per-call credentials are gRPC metadata
        assert headers["x-proxy-key"] == "k1"


async def test_requests_name_the_clients_transport(
    start_server: ServerFactory, backend: Backend
) -> None:
    """Not "websocket" for everyone: a uni_http_stream client's connect says so."""
    server = await start_server({**proxy_config(backend), "uni_http_stream": {"enabled": True}})
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.http_url}/connection/uni_http_stream", json={}, headers=cookie("uma")
        ) as stream,
    ):
        connect = json.loads(await asyncio.wait_for(stream.content.readline(), TIMEOUT))
        client_id = connect["connect"]["client"]
    [entry] = [e for e in await backend.requests("connect") if e["request"]["client"] == client_id]
    assert (entry["request"]["transport"], entry["request"]["protocol"]) == (
        "uni_http_stream",
        "json",
    )


async def test_connect_result_shapes_the_connection(server: RunningServer) -> None:
    async with open_client(server.ws_url, headers=cookie("bob")) as client:
        reply = await client.connect(data={"channels": ["proxied:srv"], "subs": ["proxied:opt"]})
        result = reply["connect"]
        assert result["data"] == {"welcome": "bob"}
        assert "expires" not in result  # no expire_at from the backend
        assert set(result["subs"]) == {"proxied:srv", "proxied:opt"}
        assert result["subs"]["proxied:opt"]["data"] == {"hello": "proxied:opt"}
        presence = await client.result("presence", {"channel": "proxied:opt"})
    [info] = presence["presence"].values()
    assert info["user"] == "bob"
    assert info["conn_info"] == {"name": "bob", "via": "proxy"}
    assert info["chan_info"] == {"seat": 1}  # from the connect result's subs options


async def test_backend_disconnect_closes_the_client_with_its_code(server: RunningServer) -> None:
    async with open_client(server.ws_url) as client:
        await client.send_frame({"id": 1, "connect": {"data": {"deny": True}}})
        assert await client.wait_closed() == 4501
        assert client.close_reason == "unauthorized"


async def test_backend_error_is_the_connect_error(server: RunningServer) -> None:
    async with open_client(server.ws_url) as client:
        reply = await client.connect(data={"fail": True})
        assert reply["error"] == {"code": 1001, "message": "no such user"}


async def test_token_connections_are_not_proxied(server: RunningServer, backend: Backend) -> None:
    before = len(await backend.requests("connect"))
    async with open_client(server.ws_url) as client:
        reply = await client.connect(server.token("carol"))
        assert "connect" in reply, reply
        whoami = await client.result("rpc", {"method": "whoami", "data": {}})
    assert whoami["data"]["user"] == "carol"
    assert len(await backend.requests("connect")) == before


# --- channels ----------------------------------------------------------------------


async def test_subscribe_allowed_with_the_backends_info_and_data(
    server: RunningServer, backend: Backend
) -> None:
    async with open_client(server.ws_url, headers=cookie("dave")) as client:
        await client.connect()
        result = await client.result("subscribe", {"channel": "proxied:room", "data": {"x": 1}})
        assert result["data"] == {"welcome": "proxied:room"}
        presence = await client.result("presence", {"channel": "proxied:room"})
    [info] = presence["presence"].values()
    assert info["chan_info"] == {"sub_by": "dave"}
    entry = (await backend.requests("subscribe"))[-1]
    request = entry["request"]
    assert request["channel"] == "proxied:room"
    assert request["user"] == "dave"
    assert request["data"] == {"x": 1}
    assert request["meta"] == {"plan": "gold"}  # include_connection_meta
    assert entry["headers"]["cookie"] == "user=dave"


async def test_subscribe_denied_with_the_backends_code(server: RunningServer) -> None:
    async with open_client(server.ws_url, headers=cookie("erin")) as client:
        await client.connect()
        error = await client.error("subscribe", {"channel": "proxied:deny-1"})
        assert error == {"code": 4403, "message": "forbidden"}
        # The connection is fine: another channel still works.
        await client.result("subscribe", {"channel": "proxied:open"})
        await client.send_frame({"id": 99, "subscribe": {"channel": "proxied:kick"}})
        assert await client.wait_closed() == 4505


async def test_publish_rewritten_by_the_backend_reaches_subscribers(
    server: RunningServer,
) -> None:
    channel = "proxied:chat"
    reader, _ = sdk_client(server, "frank")
    writer, _ = sdk_client(server, "gina")
    handler = Publications()
    reader_sub = reader.new_subscription(channel, handler)
    writer_sub = writer.new_subscription(channel)
    await reader.connect()
    await writer.connect()
    try:
        await reader_sub.subscribe()
        await writer_sub.subscribe()
        await reader_sub.ready(timeout=TIMEOUT)
        await writer_sub.ready(timeout=TIMEOUT)
        await writer_sub.publish({"text": "hello", "n": 1}, timeout=TIMEOUT)
        received = await asyncio.wait_for(handler.received.get(), TIMEOUT)
    finally:
        await reader.disconnect()
        await writer.disconnect()
    assert received.pub.data == {"text": "HELLO", "by": "gina", "rewritten": True}
    assert received.pub.tags == {"by": "gina"}
    assert received.pub.info is not None and received.pub.info.user == "gina"


async def test_publish_denied_by_the_backend(server: RunningServer) -> None:
    async with open_client(server.ws_url, headers=cookie("hank")) as client:
        await client.connect()
        error = await client.error("publish", {"channel": "proxied:readonly", "data": {}})
    assert error == {"code": 4030, "message": "read only"}


async def test_subscribe_override_switches_presence_off(server: RunningServer) -> None:
    async with open_client(server.ws_url, headers=cookie("iris")) as client:
        await client.connect()
        await client.result("subscribe", {"channel": "proxied:room:nopresence"})
        presence = await client.result("presence", {"channel": "proxied:room:nopresence"})
    assert presence.get("presence", {}) == {}


# --- rpc ---------------------------------------------------------------------------


async def test_rpc_returns_the_backends_result(server: RunningServer, backend: Backend) -> None:
    client, _ = sdk_client(server, "jack")
    await client.connect()
    try:
        result = await client.rpc("sum", {"a": 2, "b": 3}, timeout=TIMEOUT)
    finally:
        await client.disconnect()
    assert result.data == {"sum": 5}
    request = (await backend.requests("rpc"))[-1]["request"]
    assert request["method"] == "sum" and request["user"] == "jack"


async def test_rpc_error_and_disconnect_from_the_backend(server: RunningServer) -> None:
    async with open_client(server.ws_url, headers=cookie("kate")) as client:
        await client.connect()
        error = await client.error("rpc", {"method": "nope", "data": {}})
        assert error == {"code": 404, "message": "unknown method"}
        await client.send_frame({"id": 50, "rpc": {"method": "kick", "data": {}}})
        assert await client.wait_closed() == 4000


# --- refresh -----------------------------------------------------------------------


async def test_server_refreshes_at_expiry_through_the_backend(
    server: RunningServer, backend: Backend
) -> None:
    async with open_client(server.ws_url, headers=cookie("liam")) as client:
        reply = await client.connect(data={"ttl": 1})
        assert "expires" not in reply["connect"]  # the server refreshes, not the client
        started = time.monotonic()
        refreshes = await backend.wait_requests("refresh", 1)
        mine = [r for r in refreshes if r["request"]["client"] == client.client_id]
        assert mine, refreshes
        assert mine[0]["request"]["user"] == "liam"
        assert mine[0]["request"]["meta"] == {"plan": "gold"}
        # Each refresh extends by 3 s: the connection outlives its first expiry.
        await client.no_close(max(0.0, 2.5 - (time.monotonic() - started)))
        whoami = await client.result("rpc", {"method": "whoami", "data": {}})
        assert whoami["data"]["user"] == "liam"


async def test_backend_can_let_a_connection_expire(server: RunningServer) -> None:
    async with open_client(server.ws_url, headers=cookie("expire-me")) as client:
        await client.connect(data={"ttl": 1})
        assert await client.wait_closed() == 3005


async def test_server_refreshes_subscriptions_through_the_backend(
    server: RunningServer, backend: Backend
) -> None:
    async with open_client(server.ws_url, headers=cookie("mia")) as client:
        await client.connect()
        result = await client.result("subscribe", {"channel": "proxied:a:short"})
        assert "expires" not in result  # sub_refresh proxy: the server refreshes it
        expiring = await client.result("subscribe", {"channel": "proxied:b:short:expire"})
        assert "expires" not in expiring
        push = await client.push("proxied:b:short:expire", "unsubscribe", within=6.0)
        assert push["code"] == 2501
        requests = await backend.wait_requests("sub_refresh", 2)
        channels = {r["request"]["channel"] for r in requests}
        assert {"proxied:a:short", "proxied:b:short:expire"} <= channels
        # The extended subscription is still there.
        presence = await client.result("presence", {"channel": "proxied:a:short"})
        assert client.client_id in presence["presence"]


async def test_binary_encoding_sends_and_accepts_base64(
    start_server: ServerFactory, backend: Backend
) -> None:
    config = proxy_config(backend)
    config["proxies"] = [{"name": "bin", "binary_encoding": True, **proxy(backend, "publish")}]
    config["channel"]["namespaces"].append(
        {
            "name": "binary",
            "publish_proxy_enabled": True,
            "publish_proxy_name": "bin",
            "allow_subscribe_for_client": True,
        }
    )
    server = await start_server(config)
    async with open_client(server.ws_url, headers=cookie("bea")) as client:
        await client.connect()
        await client.result("subscribe", {"channel": "binary:room"})
        await client.result("publish", {"channel": "binary:room", "data": {"text": "bytes"}})
        publication = await client.push("binary:room", "pub")
    # The HTTP backends answer base64 (b64data) to a binary request: decoded by hubbub.
    assert publication["data"] == {"text": "BYTES", "by": "bea", "rewritten": True}
    request = (await backend.requests("publish"))[-1]["request"]
    assert request["encoding"] == "binary"
    if backend.kind != "grpc":  # gRPC carries bytes as they are
        assert request.get("_came_as_b64data") is True
