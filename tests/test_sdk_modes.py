"""Every mode of the real SDKs runs one and the same scenario against hubbub.

The scenario (``run_scenario``): connect with a token, subscribe with recovery,
receive publications from the HTTP API (through ``cent``) and from another
client (centrifuge-python), publish to it, read presence and history, get
disconnected by the server (``/api/disconnect``, a reconnect code) while
publications go on, and recover exactly what was missed: nothing lost,
duplicated or reordered.

Modes: centrifuge-js (Node) over ``http_stream`` and over ``sse`` only (the
bidirectional emulation, commands through ``/emulation``), and its Protobuf
build over ``http_stream``; the WebSocket modes of both SDKs are in the same
table once the WebSocket door negotiates Protobuf.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cent import AsyncClient, DisconnectRequest, PublishRequest
from cent import Disconnect as CentDisconnect

from tests.conftest import RunningServer, ServerFactory
from tests.sdk_helpers import DeliveryReport, EventProcess, PythonSubscriber
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


@contextlib.asynccontextmanager
async def js_client(
    server: RunningServer, mode: str, channel: str, token: str, *, delta: str | None = None
) -> AsyncIterator[EventProcess]:
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
    process = await EventProcess.start(
        "node", str(CLIENT_SCRIPT), json.dumps(scenario), cwd=JS_DIR, label=f"js-{mode}"
    )
    try:
        yield process
    finally:
        await process.close({"cmd": "exit"})


async def run_scenario(server: RunningServer, js: EventProcess, channel: str, mode: str) -> None:
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


@pytest.mark.parametrize("mode", ["http_stream", "sse", "http_stream+protobuf"])
async def test_js_sdk_scenario(start_server: ServerFactory, mode: str) -> None:
    server = await start_server(STREAMS)
    channel = f"chat:mode-{mode.replace('+', '-')}"
    async with js_client(server, mode, channel, server.token("alice")) as js:
        await run_scenario(server, js, channel, mode)
        # The session the SDK used was an emulation session, and it is gone after exit.
        assert all(s.emulation for s in server.hub.sessions.values() if s.user == "alice")
