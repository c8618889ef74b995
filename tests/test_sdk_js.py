"""The real centrifuge-js SDK (npm ``centrifuge`` 5.x, on Node) works against hubbub.

Each test runs ``tests/js/client.mjs``, a centrifuge-js client driven over
stdin/stdout (see its header), next to a real hubbub server, and proves one
thing end to end: publications cross between the JS SDK, the Python SDK and the
HTTP API (through ``cent``); presence, presence stats and history answer with
the right content; RPC reaches a Python hook (and fails with the right codes);
a connection token identifies the user; an idle connection lives on server
pings; and after the server closes the connection (3001, or a reconnect code
through ``/api/disconnect``) the SDK reconnects and recovers exactly what it
missed: nothing lost, duplicated or reordered.

The npm packages are pinned in ``tests/js/package-lock.json``; when
``tests/js/node_modules`` is missing or stale, the module runs ``npm ci`` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cent import AsyncClient, DisconnectRequest, PublishRequest
from cent import Disconnect as CentDisconnect

from hubbub.codes import Disconnect, Error
from hubbub.errors import ClientError
from hubbub.hub.hooks import RPCEvent, RPCResponse
from hubbub.hub.hub import Hub
from tests.conftest import CHAT_NAMESPACE, RunningServer, ServerFactory
from tests.sdk_helpers import (
    DeliveryReport,
    Event,
    EventProcess,
    PythonSubscriber,
    install_js_dependencies,
)

JS_DIR = Path(__file__).parent / "js"
CLIENT_SCRIPT = JS_DIR / "client.mjs"
#: Reconnect delay (min == max: exact) for the recovery tests: the client stays
#: away this long, so publications made meanwhile can only reach it by recovery.
RECONNECT_DELAY_MS = 1500


# --- the Node side -------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def js_dependencies() -> None:
    install_js_dependencies()


@contextlib.asynccontextmanager
async def js_client(
    server: RunningServer,
    *,
    channel: str | None = None,
    token: str | None = None,
    reconnect_delay_ms: int | None = None,
    label: str = "js",
    token_urls: tuple[str, str] | None = None,
) -> AsyncIterator[EventProcess]:
    """A centrifuge-js client of ``server`` (subscribing to ``channel`` if given).

    ``token_urls``: (connection, subscription) URLs its getToken functions fetch.
    """
    scenario: dict[str, Any] = {"url": server.ws_url, "name": label}
    if token_urls is not None:
        scenario["tokenUrl"], scenario["subTokenUrl"] = token_urls
    if channel is not None:
        scenario["channel"] = channel
    if token is not None:
        scenario["token"] = token
    if reconnect_delay_ms is not None:
        scenario["minReconnectDelay"] = reconnect_delay_ms
        scenario["maxReconnectDelay"] = reconnect_delay_ms
    process = await EventProcess.start(
        "node", str(CLIENT_SCRIPT), json.dumps(scenario), cwd=JS_DIR, label=label
    )
    try:
        yield process
    finally:
        await process.close({"cmd": "exit"})


async def ready(js: EventProcess) -> tuple[Event, Event]:
    """Wait until ``js`` is connected and subscribed: (connected, subscribed) events."""
    connected = await js.next("connected")
    subscribed = await js.next("subscribed")
    return connected, subscribed


def ok(reply: Event) -> Event:
    """A command result that must not be an error."""
    assert "error" not in reply, reply
    return reply


def seqs(events: list[Event]) -> list[int]:
    return [e["data"]["seq"] for e in events if e["event"] == "publication"]


# --- publications across SDKs and the HTTP API ---------------------------------------


async def test_js_receives_publication_from_python_sdk(server: RunningServer) -> None:
    channel = "chat:py-to-js"
    async with js_client(server, channel=channel) as js:
        await ready(js)
        async with PythonSubscriber(server.ws_url, channel) as py:
            await py.publish({"text": "hello from python"})
            publication = await js.next("publication")
    assert publication["channel"] == channel
    assert publication["data"] == {"text": "hello from python"}
    assert publication["offset"] == 1
    assert publication["info"]["client"]  # published by a client: its info is attached


async def test_python_sdk_receives_publication_from_js(server: RunningServer) -> None:
    channel = "chat:js-to-py"
    async with (
        PythonSubscriber(server.ws_url, channel) as py,
        js_client(server, channel=channel) as js,
    ):
        connected, _ = await ready(js)
        ok(await js.request("publish", data={"text": "hello from js", "n": 1}))
        context = await py.next_publication()
    assert context.pub.data == {"text": "hello from js", "n": 1}
    assert context.pub.offset == 1
    assert context.pub.info is not None
    assert context.pub.info.client == connected["client"]


async def test_js_receives_publication_from_http_api_via_cent(server: RunningServer) -> None:
    channel = "chat:api-to-js"
    async with js_client(server, channel=channel) as js:
        await ready(js)
        api = AsyncClient(server.api_url, server.api_key)
        try:
            result = await api.publish(
                PublishRequest(channel=channel, data={"text": "from the api"}, tags={"k": "v"})
            )
        finally:
            await api.close()
        publication = await js.next("publication")
    assert publication["data"] == {"text": "from the api"}
    assert publication["offset"] == result.offset == 1
    assert publication["tags"] == {"k": "v"}
    assert publication["info"] is None  # server-side publications have no client info


async def test_anonymous_publisher_info_has_empty_user(server: RunningServer) -> None:
    channel = "chat:anonymous-info"
    async with js_client(server, channel=channel) as js:
        await ready(js)
        ok(await js.request("publish", data={"text": "anonymous"}))
        publication = await js.next("publication")
    assert publication["info"].get("user", "<absent>") == ""


# --- presence and history ------------------------------------------------------------


async def test_presence_presence_stats_and_history_from_js(server: RunningServer) -> None:
    channel = "chat:presence-history"
    count = 4
    async with (
        PythonSubscriber(server.ws_url, channel, token=server.token("bob")),
        js_client(server, channel=channel, token=server.token("alice")) as js,
    ):
        connected, _ = await ready(js)
        for n in range(1, count + 1):
            await server.hub.publish(channel, {"seq": n})
        for n in range(1, count + 1):  # all delivered: history is complete too
            assert (await js.next("publication"))["data"] == {"seq": n}

        presence = ok(await js.request("presence"))
        users = {info["user"] for info in presence["clients"].values()}
        assert len(presence["clients"]) == 2
        assert users == {"alice", "bob"}
        assert presence["clients"][connected["client"]]["user"] == "alice"

        stats = ok(await js.request("presence_stats"))
        assert (stats["numClients"], stats["numUsers"]) == (2, 2)

        history = ok(await js.request("history", limit=10))
        assert [p["data"] for p in history["publications"]] == [
            {"seq": n} for n in range(1, count + 1)
        ]
        assert [p["offset"] for p in history["publications"]] == list(range(1, count + 1))
        assert history["offset"] == count
        assert history["epoch"]

        newest = ok(await js.request("history", limit=2, reverse=True))
        assert [p["data"]["seq"] for p in newest["publications"]] == [count, count - 1]


# --- RPC -----------------------------------------------------------------------------


def echo_rpc(hub: Hub) -> None:
    @hub.on_rpc
    async def rpc(event: RPCEvent) -> Any:
        if event.method == "echo":
            return RPCResponse(data={"echo": event.data, "user": event.user})
        if event.method == "plain":
            return {"plain": event.data}  # a plain value is the reply data too
        raise ClientError(Error.METHOD_NOT_FOUND)


async def test_rpc_reaches_python_hook(start_server: ServerFactory) -> None:
    server = await start_server(setup=echo_rpc)
    async with js_client(server, token=server.token("carol")) as js:
        await js.next("connected")
        echo = ok(await js.request("rpc", method="echo", data={"text": "ping", "n": [1, 2]}))
        assert echo["data"] == {"echo": {"text": "ping", "n": [1, 2]}, "user": "carol"}
        plain = ok(await js.request("rpc", method="plain", data=42))
        assert plain["data"] == {"plain": 42}
        unknown = await js.request("rpc", method="nope", data={})
        assert unknown["error"]["code"] == Error.METHOD_NOT_FOUND.code


async def test_rpc_without_hook_is_error_108(server: RunningServer) -> None:
    async with js_client(server) as js:
        await js.next("connected")
        reply = await js.request("rpc", method="echo", data={"text": "anyone?"})
    assert reply["error"]["code"] == Error.NOT_AVAILABLE.code == 108


async def test_rpc_hook_raising_is_error_100(start_server: ServerFactory) -> None:
    def failing_rpc(hub: Hub) -> None:
        @hub.on_rpc
        async def rpc(event: RPCEvent) -> Any:
            raise RuntimeError(f"the hook failed on {event.method}")

    server = await start_server(setup=failing_rpc)
    async with js_client(server) as js:
        await js.next("connected")
        reply = await js.request("rpc", method="boom", data=None)
        assert reply["error"]["code"] == Error.INTERNAL.code == 100
        # The connection survives the failed call.
        again = await js.request("rpc", method="boom-again", data=1)
        assert again["error"]["code"] == 100


# --- connection token ----------------------------------------------------------------


async def test_connection_token_identifies_the_user(start_server: ServerFactory) -> None:
    server = await start_server({"client": {"allow_anonymous_connect_without_token": False}})
    channel = "chat:members"
    async with js_client(server, label="anonymous-js") as anonymous:
        disconnected = await anonymous.next("disconnected")
        assert not anonymous.pending("connected")
        print(f"anonymous connect refused: {disconnected}")
    async with js_client(server, channel=channel, token=server.token("alice")) as js:
        connected, _ = await ready(js)
        presence = ok(await js.request("presence"))
    assert presence["clients"] == {
        connected["client"]: {
            "client": connected["client"],
            "user": "alice",
            "connInfo": None,
            "chanInfo": None,
        }
    }


# --- heartbeat -----------------------------------------------------------------------


async def test_idle_connection_survives_server_pings(start_server: ServerFactory) -> None:
    server = await start_server({"client": {"ping_interval": "1s", "pong_timeout": "500ms"}})
    async with js_client(server) as js:
        connected = await js.next("connected")
        frames_before = server.hub.delivery.stats_frames
        # Idle on purpose: several ping intervals go by, each ping answered by the SDK.
        await asyncio.sleep(4)
        pings = server.hub.delivery.stats_frames - frames_before  # nothing else was sent
        drops = [e for e in js.events if e["event"] in ("connecting", "disconnected") and e["code"]]
        assert drops == [], f"the idle connection was dropped: {drops}"
        assert list(server.hub.sessions) == [connected["client"]]
        assert pings >= 2


# --- recovery after a server-side disconnect -----------------------------------------


async def assert_recovers_after_disconnect(
    server: RunningServer,
    js: EventProcess,
    channel: str,
    disconnect: Callable[[], Awaitable[None]],
    expected: tuple[int, str],
) -> None:
    """3 publications live, ``disconnect``, 5 while away, recovery, then 1 live again."""
    sent: list[int] = []

    async def publish(n: int) -> None:
        await server.hub.publish(channel, {"seq": n})
        sent.append(n)

    _, subscribed = await ready(js)
    assert subscribed["recoverable"] and not subscribed["wasRecovering"]
    for n in (1, 2, 3):
        await publish(n)
    assert [(await js.next("publication"))["data"]["seq"] for _ in range(3)] == [1, 2, 3]

    await disconnect()
    closed_at = time.monotonic()
    assert not server.hub.sessions  # the client is gone: what follows it can only recover
    for n in (4, 5, 6, 7, 8):
        await publish(n)

    connecting = await js.next("connecting", where=lambda e: e["code"] == expected[0])
    assert (connecting["code"], connecting["reason"]) == expected
    assert not js.pending("publication")
    await js.next("connected", within=RECONNECT_DELAY_MS / 1000 + 5)
    away = time.monotonic() - closed_at
    resubscribed = await js.next("subscribed")
    assert resubscribed["wasRecovering"] is True
    assert resubscribed["recovered"] is True
    recovered = [await js.next("publication") for _ in range(5)]
    assert [p["data"]["seq"] for p in recovered] == [4, 5, 6, 7, 8]
    assert [p["offset"] for p in recovered] == [4, 5, 6, 7, 8]

    await publish(9)
    live = await js.next("publication")
    assert (live["data"]["seq"], live["offset"]) == (9, 9)
    # A round trip: whatever the server sent before its reply has reached the SDK.
    ok(await js.request("presence_stats"))

    report = DeliveryReport.compare(sent, seqs(js.events))
    print(f"recovery after {expected}: away {away:.2f}s, {report}")
    assert away >= RECONNECT_DELAY_MS / 1000 * 0.9
    assert report.received == report.sent == 9
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.out_of_order == 0
    assert report.unexpected == 0


async def test_recovery_after_server_closes_with_3001(start_server: ServerFactory) -> None:
    # The client is anonymous: let it ask for presence stats (the closing round trip).
    chat = {**CHAT_NAMESPACE, "allow_presence_for_anonymous": True}
    server = await start_server({"channel": {"namespaces": [chat]}})
    channel = "chat:recovery-3001"

    async def shutdown() -> None:
        for session in list(server.hub.sessions.values()):
            session.close(Disconnect.SHUTDOWN)

    async with js_client(server, channel=channel, reconnect_delay_ms=RECONNECT_DELAY_MS) as js:
        await assert_recovers_after_disconnect(
            server, js, channel, shutdown, (Disconnect.SHUTDOWN.code, Disconnect.SHUTDOWN.reason)
        )


async def test_recovery_after_api_disconnect_via_cent(server: RunningServer) -> None:
    channel = "chat:recovery-api"
    code, reason = 4000, "maintenance"

    async def api_disconnect() -> None:
        api = AsyncClient(server.api_url, server.api_key)
        try:
            await api.disconnect(
                DisconnectRequest(user="dave", disconnect=CentDisconnect(code=code, reason=reason))
            )
        finally:
            await api.close()

    token = server.token("dave")
    async with js_client(
        server, channel=channel, token=token, reconnect_delay_ms=RECONNECT_DELAY_MS
    ) as js:
        await assert_recovers_after_disconnect(server, js, channel, api_disconnect, (code, reason))


async def test_js_get_token_refresh_keeps_connection_and_private_subscription(
    start_server: ServerFactory,
) -> None:
    """Tokens live 2 s (grace 1 s): centrifuge-js must refresh both through getToken
    and stay connected and subscribed for several lifetimes."""
    server = await start_server(
        {
            "client": {"expired_close_delay": "1s", "allow_anonymous_connect_without_token": False},
            "channel": {"without_namespace": {"allow_subscribe_for_client": False}},
        }
    )

    async def connection_token(_: web.Request) -> web.Response:
        return web.Response(text=server.token("jo", ttl=2))

    async def subscription_token(request: web.Request) -> web.Response:
        return web.Response(text=server.token("jo", ttl=2, channel=request.query["channel"]))

    app = web.Application()
    app.router.add_get("/token", connection_token)
    app.router.add_get("/sub-token", subscription_token)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with js_client(
            server, channel="$private", token_urls=(f"{base}/token", f"{base}/sub-token")
        ) as js:
            await ready(js)
            await asyncio.sleep(7)
            await server.hub.publish("$private", {"still": "here"})
            publication = await js.next("publication")
            assert publication["data"] == {"still": "here"}
            tokens = js.pending("token")
            kinds = [t["kind"] for t in tokens]
            assert kinds.count("connection") >= 3 and kinds.count("subscription") >= 3, kinds
            assert not js.pending("disconnected") and not js.pending("unsubscribed")
            assert len(js.pending("subscribed")) == 0  # no resubscription happened
            assert [e for e in js.pending("connecting") if e.get("code", 0) >= 3000] == []
    finally:
        await runner.cleanup()
