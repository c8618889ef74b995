"""The admin UI's server side: login, the admin API, where it is served, live traces.

Shapes follow Centrifugo's admin: ``POST /admin/auth`` with form field
``password`` answers ``{"token": T}`` (400 when wrong), ``POST /admin/api``
takes ``{"method", "params"}`` with ``Authorization: token T`` (401 without).
The UI itself is driven in Chromium by tests/test_admin_browser.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from hubbub.auth.admin_tokens import ADMIN_TOKEN_TTL, admin_token_valid, make_admin_token
from hubbub.config.loader import load_config
from hubbub.engines.factory import engine_from_config
from hubbub.errors import ConfigError
from hubbub.hub.hub import Hub
from hubbub.hub.tracing import QUEUE_LIMIT, Watch
from hubbub.server.run import start
from tests.conftest import API_KEY, DEFAULT_CONFIG, RunningServer, ServerFactory, merge
from tests.redis_fixtures import RedisProcess, free_port, own_redis  # noqa: F401 (fixture)
from tests.wsclient import connected_client

PASSWORD = "correct horse battery staple"
SECRET = "admin-secret-of-enough-length-0123456789"
ADMIN = {"admin": {"enabled": True, "password": PASSWORD, "secret": SECRET}}
TIMEOUT = 10.0


async def login(http: aiohttp.ClientSession, base: str, password: str = PASSWORD) -> str:
    async with http.post(f"{base}/admin/auth", data={"password": password}) as response:
        assert response.status == 200, await response.text()
        token: str = (await response.json())["token"]
        return token


async def admin_api(
    http: aiohttp.ClientSession, base: str, token: str, method: str, params: dict[str, Any]
) -> tuple[int, Any]:
    async with http.post(
        f"{base}/admin/api",
        json={"method": method, "params": params},
        headers={"Authorization": f"token {token}"} if token else {},
    ) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, body


@pytest.fixture
async def admin_server(start_server: ServerFactory) -> RunningServer:
    return await start_server({**ADMIN, "demo": {"enabled": False}})


# --- login and the admin API -------------------------------------------------------


async def test_login_then_the_admin_api(admin_server: RunningServer) -> None:
    base = admin_server.http_url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/admin/init") as response:
            assert await response.json() == {
                "insecure": False,
                "authenticated": False,
                "edition": "hubbub",
            }
        async with http.post(f"{base}/admin/auth", data={"password": "guess"}) as response:
            assert response.status == 400
        token = await login(http, base)
        assert admin_token_valid(SECRET, token)
        async with http.get(f"{base}/admin/init", headers={"Authorization": f"token {token}"}) as r:
            assert (await r.json())["authenticated"] is True

        status, body = await admin_api(http, base, token, "info", {})
        assert status == 200
        assert body["result"]["nodes"][0]["uid"] == admin_server.hub.node_id
        assert (await admin_api(http, base, "", "info", {}))[0] == 401
        assert (await admin_api(http, base, "1.1.forged", "info", {}))[0] == 401
        other = make_admin_token("another-secret-of-enough-length!")
        assert (await admin_api(http, base, other, "info", {}))[0] == 401
        async with http.post(  # the token may also come as ?token= (EventSource cannot set headers)
            f"{base}/admin/api?token={token}", json={"method": "channels", "params": {}}
        ) as response:
            assert await response.json() == {"result": {"channels": {}}}
        assert (await admin_api(http, base, token, "frobnicate", {}))[0] == 404
        async with http.post(
            f"{base}/admin/api", data=b"{not json", headers={"Authorization": f"token {token}"}
        ) as response:
            assert response.status == 400
        # A refused action is the server API's own error reply.
        status, body = await admin_api(http, base, token, "publish", {"channel": "chat:x"})
        assert (status, body["error"]["code"]) == (200, 107)


async def test_actions_reach_clients(admin_server: RunningServer) -> None:
    base = admin_server.http_url
    async with (
        aiohttp.ClientSession() as http,
        connected_client(
            admin_server.ws_url, admin_server.token("victim"), channels=("chat:admin",)
        ) as client,
    ):
        token = await login(http, base)
        status, body = await admin_api(
            http, base, token, "publish", {"channel": "chat:admin", "data": {"from": "admin"}}
        )
        assert status == 200 and body["result"]["offset"] == 1
        assert (await client.push("chat:admin", "pub"))["data"] == {"from": "admin"}
        _, body = await admin_api(http, base, token, "connections", {"user": "victim"})
        (entry,) = body["result"]["connections"].values()
        assert entry["channels"] == ["chat:admin"] and entry["addr"] == "127.0.0.1"
        _, body = await admin_api(http, base, token, "disconnect", {"user": "victim"})
        assert body == {"result": {}}
        assert await client.wait_closed() == 3503


async def test_wrong_passwords_are_slowed_down(admin_server: RunningServer) -> None:
    base = admin_server.http_url
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(12):
            async with http.post(f"{base}/admin/auth", data={"password": "guess"}) as response:
                statuses.append(response.status)
        assert statuses == [400] * 10 + [429] * 2
        async with http.post(f"{base}/admin/auth", data={"password": PASSWORD}) as response:
            assert response.status == 429  # even the right one, until the minute is over


def test_admin_tokens_expire_and_need_the_secret() -> None:
    now = time.time()
    token = make_admin_token(SECRET, now=now)
    assert admin_token_valid(SECRET, token, now=now + ADMIN_TOKEN_TTL - 1)
    assert not admin_token_valid(SECRET, token, now=now + ADMIN_TOKEN_TTL + 1)
    assert not admin_token_valid(SECRET + "x", token, now=now)
    assert not admin_token_valid("", token, now=now)
    version, issued, mac = token.split(".")
    assert not admin_token_valid(SECRET, f"{version}.{int(issued) + 1}.{mac}", now=now)
    with pytest.raises(ValueError):
        make_admin_token("")


# --- configuration and where it is served ------------------------------------------


def test_insecure_admin_combinations_are_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(None, env={}, base={"admin": {"enabled": True}})
    assert [p.key for p in refused.value.problems] == ["admin.password", "admin.secret"]
    with pytest.raises(ConfigError) as refused:
        load_config(
            None,
            env={},
            base={"http_server": {"address": ""}, "admin": {"enabled": True, "insecure": True}},
        )
    assert refused.value.key == "admin.insecure"
    # On an internal loopback port the public address does not matter.
    base = {
        "http_server": {"address": "", "internal_port": 9999},
        "admin": {"enabled": True, "insecure": True},
        "http_api": {"key": "k"},
    }
    assert load_config(None, env={}, base=base).config.admin.insecure
    short = {
        "admin": {"enabled": True, "password": "p", "secret": "short"},
        "http_api": {"key": "k"},
    }
    (warning,) = load_config(None, env={}, base=short).warnings
    assert warning.startswith("admin.secret is shorter than 16 characters")


async def test_the_ui_is_at_root_without_demo_and_at_admin_always(
    start_server: ServerFactory,
) -> None:
    alone = await start_server({**ADMIN, "demo": {"enabled": False}})
    with_demo = await start_server({**ADMIN, "demo": {"enabled": True}})
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{alone.http_url}/") as response:
            page = await response.text()
            assert '<base href="admin/">' in page and "admin.js" in page
        async with http.get(f"{alone.http_url}/admin/") as response:
            assert "<!--base-->" in await response.text()
        async with http.get(f"{alone.http_url}/admin/admin.js") as response:
            assert response.status == 200 and "EventSource" in await response.text()
        async with http.get(f"{with_demo.http_url}/") as response:
            assert "chat:lobby" in await response.text()  # the demo keeps /
        async with http.get(f"{with_demo.http_url}/admin/") as response:
            assert response.status == 200 and "hubbub admin" in await response.text()


async def test_admin_goes_to_the_internal_port_unless_external(
    start_server: ServerFactory,
) -> None:
    async def status(url: str) -> int:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return response.status

    internal = free_port()
    server = await start_server({**ADMIN, "http_server": {"internal_port": internal}})
    assert await status(f"{server.http_url}/admin/") == 404
    assert await status(f"http://127.0.0.1:{internal}/admin/") == 200
    await server.stop()
    internal = free_port()
    external = {"admin": {**ADMIN["admin"], "external": True}}
    server = await start_server({**external, "http_server": {"internal_port": internal}})
    assert await status(f"{server.http_url}/admin/") == 200
    assert await status(f"http://127.0.0.1:{internal}/admin/") == 404


async def test_insecure_admin_needs_no_token(start_server: ServerFactory) -> None:
    server = await start_server({"admin": {"enabled": True, "insecure": True}})
    async with aiohttp.ClientSession() as http:
        status, body = await admin_api(http, server.http_url, "", "info", {})
        assert status == 200 and body["result"]["nodes"]


# --- live traces -------------------------------------------------------------------


class TraceEvents:
    """The events of one trace stream; ``next(kind)`` takes the oldest of a kind."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def add(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.arrived.set()

    async def next(self, kind: str) -> dict[str, Any]:
        async with asyncio.timeout(TIMEOUT):
            while True:
                for event in self.events:
                    if event["kind"] == kind:
                        self.events.remove(event)
                        return event
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def trace_stream(base: str, token: str, **target: str) -> AsyncIterator[TraceEvents]:
    """The events of ``GET /admin/trace`` as they arrive."""
    events = TraceEvents()
    async with aiohttp.ClientSession() as http:
        response = await http.get(f"{base}/admin/trace", params={**target, "token": token})
        assert response.status == 200 and response.content_type == "text/event-stream"

        async def read() -> None:
            async for line in response.content:
                if line.startswith(b"data: "):
                    events.add(json.loads(line[6:]))

        reader = asyncio.create_task(read())
        try:
            assert (await events.next("tracing"))["node"]
            yield events
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            response.close()


async def test_channel_trace(admin_server: RunningServer) -> None:
    base, hub = admin_server.http_url, admin_server.hub
    async with aiohttp.ClientSession() as http:
        token = await login(http, base)
    async with trace_stream(base, token, channel="chat:traced") as events:
        assert hub.observers.traced_channels == {"chat:traced": 1}
        async with connected_client(
            admin_server.ws_url, admin_server.token("tom"), channels=("chat:traced",)
        ) as client:
            subscribed = await events.next("command")
            assert subscribed["method"] == "subscribe" and subscribed["user"] == "tom"
            join = await events.next("join")
            assert join["message"]["push"]["join"]["info"]["user"] == "tom"
            await client.result("publish", {"channel": "chat:traced", "data": {"n": 1}})
            publication = await events.next("publication")
            assert publication["message"]["push"]["pub"]["data"] == {"n": 1}
        leave = await events.next("leave")
        assert leave["channel"] == "chat:traced"
    async with asyncio.timeout(TIMEOUT):  # the stream's end is noticed: nothing traced
        while True:
            if not hub.observers.traced_channels:
                break
            await asyncio.sleep(0.05)


async def test_user_trace(admin_server: RunningServer) -> None:
    base = admin_server.http_url
    async with aiohttp.ClientSession() as http:
        token = await login(http, base)
    async with trace_stream(base, token, user="ursula") as events:
        async with connected_client(
            admin_server.ws_url, admin_server.token("ursula"), channels=("chat:u",)
        ) as client:
            connect = await events.next("connect")
            assert connect["client"] == client.client_id and connect["addr"] == "127.0.0.1"
            command = await events.next("command")
            assert command["method"] == "connect"
            command = await events.next("command")
            assert command["method"] == "subscribe"
            assert command["command"]["subscribe"] == {"channel": "chat:u"}
            error = await client.error("publish", {"channel": "nowhere:x", "data": {}})
            refused = await events.next("command")
            assert refused["method"] == "publish" and refused["error"] == error["code"]
        gone = await events.next("disconnect")
        assert gone["by"] == "client" and gone["client"] == client.client_id


async def test_trace_needs_a_token_and_one_target(admin_server: RunningServer) -> None:
    base = admin_server.http_url
    async with aiohttp.ClientSession() as http:
        token = await login(http, base)
        async with http.get(f"{base}/admin/trace", params={"channel": "x"}) as response:
            assert response.status == 401
        async with http.get(
            f"{base}/admin/trace", params={"channel": "x", "user": "u", "token": token}
        ) as response:
            assert response.status == 400


def test_a_slow_watcher_drops_and_counts() -> None:
    async def scenario() -> list[dict[str, Any]]:
        watch = Watch(channel="c")
        for n in range(QUEUE_LIMIT + 10):
            watch.put({"kind": "publication", "n": n})
        assert watch.queue.qsize() == QUEUE_LIMIT and watch.dropped == 10
        for _ in range(5):
            watch.queue.get_nowait()
        watch.put({"kind": "publication", "n": -1})
        return [json.loads(watch.queue.get_nowait()) for _ in range(watch.queue.qsize())]

    events = asyncio.run(scenario())
    assert events[-2]["kind"] == "dropped" and events[-2]["count"] == 10
    assert events[-1]["n"] == -1


async def test_a_traced_channel_reaches_a_node_without_subscribers(
    own_redis: RedisProcess,  # noqa: F811
) -> None:
    """With Redis a node only hears the channels it subscribed: tracing subscribes it."""
    data = merge(
        DEFAULT_CONFIG,
        {
            **ADMIN,
            "engine": {"type": "redis", "redis": {"address": [own_redis.address], "prefix": "tr"}},
        },
    )
    config = load_config(None, env={}, base=data).config
    admin_node, other = (Hub(config, engine=engine_from_config(config)) for _ in range(2))
    servings = [await start(hub, host="127.0.0.1", port=0) for hub in (admin_node, other)]
    base = f"http://127.0.0.1:{servings[0].port}"
    try:
        async with aiohttp.ClientSession() as http:
            token = await login(http, base)
            async with trace_stream(base, token, channel="chat:far") as events:
                async with http.post(
                    f"http://127.0.0.1:{servings[1].port}/api/publish",
                    json={"channel": "chat:far", "data": {"far": True}},
                    headers={"X-API-Key": API_KEY},
                ) as response:
                    assert (await response.json())["result"]["offset"] == 1
                publication = await events.next("publication")
                assert publication["message"]["push"]["pub"]["data"] == {"far": True}
    finally:
        for serving in servings:
            await serving.stop()
