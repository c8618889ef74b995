"""The event proxy driven by the real centrifuge-js SDK (Node), against real backends.

The JS client connects without a JWT, sending a cookie on the WebSocket upgrade
as a browser does; the backend (aiohttp, then gRPC) authenticates it, allows
or denies its subscriptions, rewrites its publications and answers its RPC;
its disconnect closes the SDK with the backend's code; the server refreshes
the connection at expiry without the SDK's involvement.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.conftest import RunningServer, ServerFactory
from tests.proxy_fixtures import Backend, proxy_config, start_backend
from tests.sdk_helpers import EventProcess
from tests.test_sdk_js import CLIENT_SCRIPT, JS_DIR, js_dependencies  # noqa: F401 (fixture)


@pytest.fixture(scope="module", params=["aiohttp", "grpc"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    running = start_backend(request.param)
    yield running
    running.stop()


@pytest.fixture
async def server(start_server: ServerFactory, backend: Backend) -> RunningServer:
    return await start_server(proxy_config(backend))


@contextlib.asynccontextmanager
async def js(
    server: RunningServer, user: str, *, channel: str | None = None, data: Any = None
) -> AsyncIterator[EventProcess]:
    scenario: dict[str, Any] = {
        "url": server.ws_url,
        "name": f"js-{user}",
        "headers": {"Cookie": f"user={user}"},
        # A disconnect with a reconnect code would make the SDK come back at once.
        "minReconnectDelay": 5000,
        "maxReconnectDelay": 5000,
    }
    if channel is not None:
        scenario["channel"] = channel
    if data is not None:
        scenario["data"] = data
    process = await EventProcess.start(
        "node", str(CLIENT_SCRIPT), json.dumps(scenario), cwd=JS_DIR, label=f"js-{user}"
    )
    try:
        yield process
    finally:
        await process.close({"cmd": "exit"})


async def test_js_connects_without_jwt_as_the_backends_user(server: RunningServer) -> None:
    async with js(server, "ann") as client:
        connected = await client.next("connected")
        assert connected["data"] == {"welcome": "ann"}
        whoami = await client.request("rpc", method="whoami", data={})
    assert whoami["data"] == {"user": "ann", "meta": {"plan": "gold"}}


async def test_js_subscribe_allowed_and_denied_with_the_backends_code(
    server: RunningServer,
) -> None:
    async with js(server, "ben", channel="proxied:deny-js") as denied:
        unsubscribed = await denied.next("unsubscribed")
        assert unsubscribed["code"] == 4403
        assert unsubscribed["reason"] == "forbidden"
    async with js(server, "ben", channel="proxied:js-room") as allowed:
        await allowed.next("subscribed")
        presence = await allowed.request("presence")
    [info] = presence["clients"].values()
    assert info["user"] == "ben"
    assert info["chanInfo"] == {"sub_by": "ben"}


async def test_js_publication_rewritten_by_the_backend_reaches_subscribers(
    server: RunningServer,
) -> None:
    channel = "proxied:js-chat"
    async with (
        js(server, "cleo", channel=channel) as reader,
        js(server, "dan", channel=channel) as writer,
    ):
        await reader.next("subscribed")
        await writer.next("subscribed")
        result = await writer.request("publish", data={"text": "hi there"})
        assert "error" not in result, result
        publication = await reader.next("publication")
    assert publication["data"] == {"text": "HI THERE", "by": "dan", "rewritten": True}
    assert publication["tags"] == {"by": "dan"}
    assert publication["info"]["user"] == "dan"


async def test_js_rpc_returns_the_backends_result(server: RunningServer) -> None:
    async with js(server, "eve") as client:
        await client.next("connected")
        result = await client.request("rpc", method="sum", data={"a": 20, "b": 22})
        failed = await client.request("rpc", method="unknown", data={})
    assert result["data"] == {"sum": 42}
    assert failed["error"] == {"code": 404, "message": "unknown method"}


async def test_js_backend_disconnect_closes_with_its_code(server: RunningServer) -> None:
    async with js(server, "fay", data={"deny": True}) as client:
        disconnected = await client.next("disconnected")
    assert disconnected["code"] == 4501
    assert disconnected["reason"] == "unauthorized"


async def test_js_connection_refreshed_by_the_server(
    server: RunningServer, backend: Backend
) -> None:
    async with js(server, "gus", data={"ttl": 1}) as client:
        connected = await client.next("connected")
        refreshes = await backend.wait_requests("refresh", 1)
        assert any(r["request"]["client"] == connected["client"] for r in refreshes)
        # Still connected and served after the first expiry (each refresh extends 3 s).
        result = await client.request("rpc", method="whoami", data={})
        assert result["data"]["user"] == "gus"
        assert not client.pending("disconnected")
