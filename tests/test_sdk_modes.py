"""Every mode of the real SDKs runs one and the same scenario against hubbub.

The scenario (``run_scenario``): connect with a token, subscribe with recovery,
receive publications from the HTTP API (through ``cent``) and from another
client (centrifuge-python), publish to it, read presence and history, get
disconnected by the server (``/api/disconnect``, a reconnect code) while
publications go on, and recover exactly what was missed: nothing lost,
duplicated or reordered.

Modes: centrifuge-js (Node) over ``http_stream`` and over ``sse`` only (the
bidirectional emulation, commands through ``/emulation``), and its Protobuf
build over ``http_stream``, and the WebSocket modes of both SDKs (JSON and
Protobuf). The same scenario runs in headless Chromium in test_browser_sdk.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cent import AsyncClient, DisconnectRequest, PublishRequest
from cent import Disconnect as CentDisconnect
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectingContext,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
)

from tests.conftest import RunningServer, ServerFactory
from tests.sdk_helpers import DeliveryReport, EventProcess, PythonSubscriber, ScenarioEvents
from tests.test_sdk_js import CLIENT_SCRIPT, JS_DIR, js_dependencies, ok

__all__ = ["js_dependencies"]  # the module fixture that installs tests/js

#: The reconnect delay (ms, exact) while the server keeps publishing.
RECONNECT_DELAY_MS = 1500
STREAMS = {
    "http_stream": {"enabled": True},
    "sse": {"enabled": True},
    "uni_sse": {"enabled": True},
    "uni_http_stream": {"enabled": True},
}


def js_transports(server: RunningServer, mode: str) -> dict[str, Any]:
    """The scenario fields that make centrifuge-js use ``mode``."""
    base = server.http_url
    if mode == "websocket":
        return {"url": server.ws_url}
    if mode == "websocket+protobuf":
        return {"url": server.ws_url, "protobuf": True}
    transport, _, codec = mode.partition("+")
    return {
        "transports": [{"transport": transport, "endpoint": f"{base}/connection/{transport}"}],
        "emulationEndpoint": f"{base}/emulation",
        "protobuf": codec == "protobuf",
    }


def js_scenario(
    server: RunningServer, mode: str, channel: str, token: str, *, delta: str | None = None
) -> dict[str, Any]:
    """The scenario (tests/js/client.mjs's fields) of one mode, for Node or a browser."""
    scenario: dict[str, Any] = {
        **js_transports(server, mode),
        "name": f"js-{mode}",
        "channel": channel,
        "token": token,
        "minReconnectDelay": RECONNECT_DELAY_MS,
        "maxReconnectDelay": RECONNECT_DELAY_MS,
    }
    if delta is not None:
        scenario["delta"] = delta
    return scenario


@contextlib.asynccontextmanager
async def js_client(
    server: RunningServer, mode: str, channel: str, token: str, *, delta: str | None = None
) -> AsyncIterator[EventProcess]:
    scenario = js_scenario(server, mode, channel, token, delta=delta)
    process = await EventProcess.start(
        "node", str(CLIENT_SCRIPT), json.dumps(scenario), cwd=JS_DIR, label=f"js-{mode}"
    )
    try:
        yield process
    finally:
        await process.close({"cmd": "exit"})


async def run_scenario(server: RunningServer, js: ScenarioEvents, channel: str, mode: str) -> None:
    connected = await js.next("connected", within=10)
    expected_transport = mode.partition("+")[0]
    assert connected["transport"] == expected_transport
    subscribed = await js.next("subscribed")
    assert subscribed["recoverable"] and not subscribed["wasRecovering"]
    api = AsyncClient(server.api_url, server.api_key)
    sent: list[int] = []
    try:
        async with PythonSubscriber(server.ws_url, channel, token=server.token("bob")) as py:
            # From the API (with tags), from the Python SDK, from the JS SDK itself.
            result = await api.publish(
                PublishRequest(channel=channel, data={"seq": 1, "from": "api"}, tags={"k": "v"})
            )
            sent.append(1)
            first = await js.next("publication")
            assert (first["data"], first["offset"], first["tags"]) == (
                {"seq": 1, "from": "api"},
                result.offset,
                {"k": "v"},
            )
            await py.publish({"seq": 2, "from": "python"})
            sent.append(2)
            second = await js.next("publication")
            assert second["data"] == {"seq": 2, "from": "python"}
            assert second["info"]["user"] == "bob"
            ok(await js.request("publish", data={"seq": 3, "from": mode}))
            sent.append(3)
            mine = await js.next("publication")
            assert mine["data"] == {"seq": 3, "from": mode}
            assert mine["info"]["client"] == connected["client"]
            assert mine["info"]["user"] == "alice"
            # The Python subscriber got the same three, in the same order.
            from_py = [(await py.next_publication()).pub.data for _ in range(3)]
            assert from_py == [p["data"] for p in (first, second, mine)]

            presence = ok(await js.request("presence"))
            assert {i["user"] for i in presence["clients"].values()} == {"alice", "bob"}
            stats = ok(await js.request("presence_stats"))
            assert (stats["numClients"], stats["numUsers"]) == (2, 2)
            history = ok(await js.request("history", limit=-1))
            assert [p["data"]["seq"] for p in history["publications"]] == [1, 2, 3]

        # The server disconnects alice (a reconnect code); publications go on meanwhile.
        await api.disconnect(
            DisconnectRequest(user="alice", disconnect=CentDisconnect(code=4000, reason="moved"))
        )
        connecting = await js.next("connecting", where=lambda e: e["code"] == 4000)
        assert connecting["reason"] == "moved"
        for n in (4, 5, 6):
            await server.hub.publish(channel, {"seq": n})
            sent.append(n)
        await js.next("connected", within=RECONNECT_DELAY_MS / 1000 + 10)
        again = await js.next("subscribed")
        assert again["wasRecovering"] is True and again["recovered"] is True
        recovered = [await js.next("publication") for _ in range(3)]
        assert [p["offset"] for p in recovered] == [4, 5, 6]
        await server.hub.publish(channel, {"seq": 7})
        sent.append(7)
        live = await js.next("publication")
        assert (live["data"]["seq"], live["offset"]) == (7, 7)
        ok(await js.request("presence_stats"))  # a round trip: nothing else is on its way
    finally:
        await api.close()
    received = [e["data"]["seq"] for e in js.events if e["event"] == "publication"]
    report = DeliveryReport.compare(sent, received)
    print(f"{mode}: {report}")
    assert (report.lost, report.duplicated, report.out_of_order, report.unexpected) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "mode", ["websocket", "websocket+protobuf", "http_stream", "sse", "http_stream+protobuf"]
)
async def test_js_sdk_scenario(start_server: ServerFactory, mode: str) -> None:
    server = await start_server(STREAMS)
    channel = f"chat:mode-{mode.replace('+', '-')}"
    async with js_client(server, mode, channel, server.token("alice")) as js:
        await run_scenario(server, js, channel, mode)
        sessions = [s for s in server.hub.sessions.values() if s.user == "alice"]
        assert [s.emulation for s in sessions] == [not mode.startswith("websocket")]
        assert [s.codec.name for s in sessions] == ["protobuf" if "protobuf" in mode else "json"]


# --- centrifuge-python: JSON and use_protobuf=True ---------------------------------------


class _Events(ClientEventHandler, SubscriptionEventHandler):
    """Client and subscription events of one centrifuge-python client, queued."""

    def __init__(self) -> None:
        self.connecting: asyncio.Queue[ConnectingContext] = asyncio.Queue()
        self.subscribed: asyncio.Queue[SubscribedContext] = asyncio.Queue()
        self.publications: asyncio.Queue[PublicationContext] = asyncio.Queue()

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        await self.connecting.put(ctx)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:  # type: ignore[override]
        await self.subscribed.put(ctx)

    async def on_publication(self, ctx: PublicationContext) -> None:  # type: ignore[override]
        await self.publications.put(ctx)


async def _next(queue: asyncio.Queue[Any], within: float = 5.0) -> Any:
    return await asyncio.wait_for(queue.get(), within)


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_python_sdk_scenario(start_server: ServerFactory, protobuf: bool) -> None:
    server = await start_server()
    channel = f"chat:py-{'protobuf' if protobuf else 'json'}"

    def encode(value: Any) -> Any:  # the Protobuf protocol carries bytes (our JSON's)
        return json.dumps(value).encode() if protobuf else value

    def decode(data: Any) -> Any:
        return json.loads(data) if protobuf else data

    events = _Events()
    client = Client(
        server.ws_url,
        events,
        token=server.token("alice"),
        use_protobuf=protobuf,
        min_reconnect_delay=RECONNECT_DELAY_MS / 1000,
        max_reconnect_delay=RECONNECT_DELAY_MS / 1000,
    )
    sub = client.new_subscription(channel, events)
    api = AsyncClient(server.api_url, server.api_key)
    sent: list[int] = []
    received: list[int] = []

    async def publication() -> Any:
        ctx: PublicationContext = await _next(events.publications)
        data = decode(ctx.pub.data)
        received.append(data["seq"])
        return ctx.pub.offset, data, ctx.pub.info

    try:
        await client.connect()
        await sub.subscribe()
        first: SubscribedContext = await _next(events.subscribed)
        assert first.recoverable and not first.was_recovering
        [session] = server.hub.sessions_of("alice")
        assert session.codec.name == ("protobuf" if protobuf else "json")
        async with PythonSubscriber(server.ws_url, channel, token=server.token("bob")) as py:
            await api.publish(PublishRequest(channel=channel, data={"seq": 1}))
            await py.publish({"seq": 2})
            await sub.publish(encode({"seq": 3}))
            sent += [1, 2, 3]
            got = [await publication() for _ in range(3)]
            assert [(offset, data) for offset, data, _ in got] == [
                (1, {"seq": 1}),
                (2, {"seq": 2}),
                (3, {"seq": 3}),
            ]
            assert got[1][2].user == "bob" and got[2][2].user == "alice"
            # The JSON subscriber got the same data.
            assert [(await py.next_publication()).pub.data for _ in range(3)] == [
                data for _, data, _ in got
            ]
            presence = await sub.presence()
            assert {info.user for info in presence.clients.values()} == {"alice", "bob"}
            stats = await sub.presence_stats()
            assert (stats.num_clients, stats.num_users) == (2, 2)
            history = await sub.history(limit=-1)
            assert [decode(p.data)["seq"] for p in history.publications] == [1, 2, 3]

        await api.disconnect(
            DisconnectRequest(user="alice", disconnect=CentDisconnect(code=4000, reason="moved"))
        )
        connecting: ConnectingContext = await _next(events.connecting)
        if connecting.code == 0:  # "connect called", at the start
            connecting = await _next(events.connecting)
        assert (connecting.code, connecting.reason) == (4000, "moved")
        for n in (4, 5, 6):
            await server.hub.publish(channel, {"seq": n})
            sent.append(n)
        again: SubscribedContext = await _next(events.subscribed, RECONNECT_DELAY_MS / 1000 + 10)
        assert again.was_recovering and again.recovered
        assert [(await publication())[0] for _ in range(3)] == [4, 5, 6]
        await server.hub.publish(channel, {"seq": 7})
        sent.append(7)
        assert (await publication())[:2] == (7, {"seq": 7})
    finally:
        await client.disconnect()
        await api.close()
    report = DeliveryReport.compare(sent, received)
    assert (report.lost, report.duplicated, report.out_of_order, report.unexpected) == (0, 0, 0, 0)
