"""HTTP streaming, SSE, /emulation and the uni transports through a FastAPI mount (uvicorn).

The same scenarios as on hubbub's own listener, against ``create_asgi_app``
mounted at ``/rt`` in a FastAPI application under uvicorn (the rules are one
implementation, server/streamgate.py):

* centrifuge-js (Node) with only ``http_stream`` (JSON and Protobuf) and with
  only ``sse``: the whole SDK-mode scenario of test_sdk_modes.py (token connect,
  recoverable subscribe, publications from ``cent``, centrifuge-python and
  itself, presence, history, a server-side disconnect and exact recovery);
* uni_http_stream and uni_sse read with aiohttp, uni_websocket with
  ``websockets`` (test_uni.py's scenarios), and the same refusals (400, 413,
  403, /emulation's 204 and 404);
* a stream whose client never reads is closed as slow (3008) and its session
  ends; a client that drops its stream ends its session; while the stream
  runs, an ordinary FastAPI route keeps answering.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import aiohttp
import pytest

from hubbub.auth.tokens import make_token
from hubbub.hub.hooks import DisconnectEvent
from hubbub.hub.hub import Hub
from tests.conftest import API_KEY, SECRET
from tests.test_asgi import HOST, MOUNT, FastApiServer, fastapi_server, get
from tests.test_sdk_js import js_dependencies  # noqa: F401 (fixture)
from tests.test_sdk_modes import STREAMS, js_client, run_scenario
from tests.test_uni import (
    CHANNEL,
    CONFIG,
    REFUSALS_CONFIG,
    check_refusals,
    check_uni_streams,
    check_uni_websocket,
)


class Mounted:
    """What the shared scenarios need of a server, for the ASGI mount at ``/rt``."""

    def __init__(self, server: FastApiServer) -> None:
        self.hub: Hub = server.hub
        self.http_url = f"{server.url}{MOUNT}"
        self.api_url = f"{self.http_url}/api"
        self.api_key = API_KEY
        self.ws_url = server.ws_url
        self.tls = None

    def token(self, user: str, *, ttl: float | None = 3600, **claims: Any) -> str:
        return make_token(SECRET, user, ttl=ttl, extra=claims or None)


@pytest.mark.parametrize("mode", ["http_stream", "sse", "http_stream+protobuf"])
async def test_js_sdk_scenario_through_the_asgi_mount(mode: str) -> None:
    async with fastapi_server(STREAMS) as server:
        mounted = Mounted(server)
        channel = f"chat:asgi-{mode.replace('+', '-')}"
        async with js_client(mounted, mode, channel, mounted.token("alice")) as js:  # type: ignore[arg-type]
            await run_scenario(mounted, js, channel, mode)  # type: ignore[arg-type]
            assert await get(f"{server.url}/hello") == (200, {"hello": "from fastapi"})
            sessions = [s for s in server.hub.sessions.values() if s.user == "alice"]
            assert [s.emulation for s in sessions] == [True]
            assert [s.transport.transport_name for s in sessions] == [mode.partition("+")[0]]  # type: ignore[attr-defined]


async def test_uni_transports_through_the_asgi_mount() -> None:
    async with fastapi_server(CONFIG) as server:
        mounted = Mounted(server)
        await check_uni_streams(mounted)  # type: ignore[arg-type]
        await check_uni_websocket(mounted)  # type: ignore[arg-type]


async def test_refusals_through_the_asgi_mount() -> None:
    async with fastapi_server(REFUSALS_CONFIG) as server:
        await check_refusals(Mounted(server))  # type: ignore[arg-type]
        headers = {
            "Origin": f"http://{HOST}:{server.port}",
            "Access-Control-Request-Method": "POST",
        }
        async with (
            aiohttp.ClientSession() as http,
            http.options(f"{server.url}{MOUNT}/emulation", headers=headers) as response,
        ):
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == headers["Origin"]


async def test_a_stream_nobody_reads_is_closed_as_slow_and_a_dropped_one_ends() -> None:
    async with fastapi_server({**CONFIG, "client": {"queue_max_size": 65536}}) as server:
        hub = server.hub
        codes: list[int] = []

        @hub.on_disconnect
        async def gone(event: DisconnectEvent) -> None:
            codes.append(event.code)

        connect = json.dumps({"token": make_token(SECRET, "slow", extra={"channels": [CHANNEL]})})
        request = (
            f"POST {MOUNT}/connection/uni_http_stream HTTP/1.1\r\nHost: {HOST}:{server.port}\r\n"
            f"Content-Length: {len(connect)}\r\n\r\n{connect}"
        ).encode()
        _, writer = await asyncio.open_connection(HOST, server.port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            writer.write(request)
            await wait_for(lambda: any(s.user == "slow" for s in hub.sessions.values()))
            for n in range(400):  # never read: kernel buffers fill, then ours; then 3008
                await hub.publish(CHANNEL, {"n": n, "pad": "x" * 20_000})
                await asyncio.sleep(0)
                if not hub.sessions:
                    break
            assert not hub.sessions, "never closed as slow"
            await hub.wait_idle()
            assert codes == [3008]
        finally:
            writer.transport.abort()
        # A client that drops its stream: its session ends.
        async with aiohttp.ClientSession() as http:
            connect = json.dumps({"token": make_token(SECRET, "leaver")})
            response = await http.post(
                f"{server.url}{MOUNT}/connection/uni_http_stream", data=connect
            )
            assert response.status == 200
            assert "connect" in json.loads(await response.content.readline())
            assert [s.user for s in hub.sessions.values()] == ["leaver"]
            response.close()  # drops the connection
        await wait_for(lambda: not hub.sessions)
        await hub.wait_idle()
        assert codes == [3008, 3000]


async def wait_for(condition: Any, within: float = 10.0) -> None:
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {within} s")
