"""Unidirectional transports (uni_websocket, uni_sse, uni_http_stream) with no SDK.

Clients written here (``websockets``, aiohttp) and Debian's ``curl`` connect
with a token whose ``channels`` claim subscribes them server-side, read the
``connect`` push, publications as bare pushes, ``{}`` pings, and the
``disconnect`` push that ends a stream; a reconnect that names its position in
``subs`` recovers what it missed. Also the HTTP answers to bad requests and
the emulation endpoint's refusals.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import websockets

from hubbub.codes import Disconnect
from tests.conftest import RunningServer, ServerFactory

CONFIG: dict[str, Any] = {
    "client": {"ping_interval": "1s", "pong_timeout": "500ms"},
    "uni_websocket": {"enabled": True},
    "uni_sse": {"enabled": True},
    "uni_http_stream": {"enabled": True},
    "http_stream": {"enabled": True},
    "sse": {"enabled": True},
}
CHANNEL = "chat:uni"


async def sse_messages(response: aiohttp.ClientResponse) -> AsyncIterator[Any]:
    """The ``data:`` events of a Server-Sent Events body, as JSON."""
    async for line in response.content:
        text = line.decode().rstrip("\n")
        if text.startswith("data: "):
            yield json.loads(text[len("data: ") :])


async def json_lines(response: aiohttp.ClientResponse) -> AsyncIterator[Any]:
    async for line in response.content:
        if line.strip():
            yield json.loads(line)


async def run_uni(server: RunningServer, messages: AsyncIterator[Any]) -> dict[str, Any]:
    """The common script: connect push, a publication, a ping, the disconnect push."""
    connect = (await anext(messages))["connect"]
    assert connect["client"] and connect["session"] and "pong" not in connect
    sub = connect["subs"][CHANNEL]
    assert sub["recoverable"] is True
    position = await server.hub.publish(CHANNEL, {"text": "hello"})
    message = await anext(messages)
    while "pub" not in message:  # join pushes of the channel may come first
        message = await anext(messages)
    assert message == {
        "channel": CHANNEL,
        "pub": {"data": {"text": "hello"}, "offset": position.offset},
    }
    assert await anext(messages) == {}  # the server's ping
    [session] = [s for s in server.hub.sessions.values() if s.user == "uni"]
    assert session.unidirectional and not session.protocol.ping_outstanding
    session.close(Disconnect.FORCE_RECONNECT)
    message = await anext(messages)
    while "disconnect" not in message:
        message = await anext(messages)
    assert message["disconnect"] == {
        "code": Disconnect.FORCE_RECONNECT.code,
        "reason": Disconnect.FORCE_RECONNECT.reason,
        "reconnect": True,
    }
    return {"client": connect["client"], "epoch": sub["epoch"], "offset": position.offset}


async def test_uni_http_stream_and_uni_sse_with_aiohttp(start_server: ServerFactory) -> None:
    await check_uni_streams(await start_server(CONFIG))


async def check_uni_streams(server: RunningServer) -> None:
    """uni_http_stream and uni_sse read with aiohttp, then a recovering reconnect."""
    connect = {"token": server.token("uni", channels=[CHANNEL])}
    async with aiohttp.ClientSession() as http:
        url = f"{server.http_url}/connection/uni_http_stream"
        async with http.post(url, data=json.dumps(connect)) as response:
            assert response.status == 200
            position = await run_uni(server, json_lines(response))
            rest = await response.content.read()
            assert rest == b""  # the stream ended after the disconnect push
        url = f"{server.http_url}/connection/uni_sse"
        async with http.post(url, data=json.dumps(connect)) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            await run_uni(server, sse_messages(response))
        # Back with the position: what was published meanwhile comes with the connect push.
        missed = [await server.hub.publish(CHANNEL, {"n": n}) for n in range(2)]
        resume = {
            **connect,
            "subs": {
                CHANNEL: {
                    "recover": True,
                    "offset": position["offset"] + 1,
                    "epoch": position["epoch"],
                }
            },
        }
        query = urllib.parse.urlencode({"cf_connect": json.dumps(resume)})
        async with http.get(f"{server.http_url}/connection/uni_sse?{query}") as response:
            first = await anext(sse_messages(response))
            sub = first["connect"]["subs"][CHANNEL]
            assert sub["recovered"] is True and sub["was_recovering"] is True
            assert [p["offset"] for p in sub["publications"]] == [m.offset for m in missed]


@pytest.mark.parametrize("embedded", [False, True], ids=["listener", "aiohttp-door"])
async def test_uni_websocket(start_server: ServerFactory, embedded: bool) -> None:
    await check_uni_websocket(await start_server(CONFIG, embedded=embedded))


async def check_uni_websocket(server: RunningServer) -> None:
    """uni_websocket read with ``websockets``, and a first message that is no connect."""
    url = server.ws_url.replace("/connection/websocket", "/connection/uni_websocket")
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"token": server.token("uni", channels=[CHANNEL])}))

        async def frames() -> AsyncIterator[Any]:
            while True:
                try:
                    yield json.loads(await asyncio.wait_for(ws.recv(), 5))  # one message a frame
                except websockets.ConnectionClosed as closed:
                    # A WebSocket ends with a close frame carrying the code, not a push.
                    assert closed.rcvd is not None
                    code, reason = closed.rcvd.code, closed.rcvd.reason
                    yield {"disconnect": {"code": code, "reason": reason, "reconnect": True}}
                    return

        await run_uni(server, frames())
    async with websockets.connect(url) as ws:
        await ws.send("not a connect request")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == Disconnect.BAD_REQUEST.code


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs Debian's curl")
async def test_curl_reads_uni_http_stream_and_uni_sse(start_server: ServerFactory) -> None:
    server = await start_server(CONFIG)
    connect = json.dumps({"token": server.token("uni", channels=[CHANNEL])})
    for path, argv in (
        ("uni_http_stream", ["-X", "POST", "-d", connect]),
        ("uni_sse", ["-G", "--data-urlencode", f"cf_connect={connect}"]),
    ):
        curl = await asyncio.create_subprocess_exec(
            "curl",
            "-sN",
            "-m",
            "10",
            *argv,
            f"{server.http_url}/connection/{path}",
            stdout=asyncio.subprocess.PIPE,
        )
        assert curl.stdout is not None

        async def lines(stdout: asyncio.StreamReader = curl.stdout) -> AsyncIterator[Any]:
            while True:
                line = (await asyncio.wait_for(stdout.readline(), 5)).decode().strip()
                if line.startswith("data: "):
                    line = line[len("data: ") :]
                if line:
                    yield json.loads(line)

        await run_uni(server, lines())
        assert await asyncio.wait_for(curl.wait(), 10) == 0  # the stream ended: curl exits


REFUSALS_CONFIG = {**CONFIG, "uni_http_stream": {"enabled": True, "max_request_body_size": 100}}


async def test_refusals(start_server: ServerFactory) -> None:
    server = await start_server(REFUSALS_CONFIG)
    await check_refusals(server)


async def check_refusals(server: RunningServer) -> None:
    """The HTTP answers to bad stream and emulation requests (REFUSALS_CONFIG)."""
    base = server.http_url
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/connection/uni_http_stream", data="{nope") as response:
            assert response.status == 400
        async with http.post(f"{base}/connection/uni_http_stream", data="x" * 200) as response:
            assert response.status == 413
        headers = {"Origin": "https://evil.example"}
        async with http.post(f"{base}/connection/http_stream", data="{}", headers=headers) as r:
            assert r.status == 403
        async with http.post(f"{base}/emulation", data="[]") as response:
            assert response.status == 400
        body = {"session": "nope", "node": server.hub.node_id, "data": "{}"}
        async with http.post(f"{base}/emulation", json=body) as response:
            assert response.status == 204  # a session of this node that has ended
        body["node"] = "another-node"
        async with http.post(f"{base}/emulation", json=body) as response:
            assert response.status == 404  # the SDK reconnects
        # A token refused on a unidirectional stream: the stream ends with 3004.
        bad = json.dumps({"token": "not-a-token"})
        async with http.post(f"{base}/connection/uni_http_stream", data=bad) as response:
            pushes = [json.loads(line) async for line in response.content if line.strip()]
        assert pushes[-1]["disconnect"]["code"] in (Disconnect.INVALID_TOKEN.code, 3004)
    assert not server.hub.sessions
