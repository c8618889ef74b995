"""Operator limits: command rate, handshake time and size, server-side channel count,
the internal API port, and the API's server-side refresh."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from hubbub.config.loader import load_config
from hubbub.hub.hub import Hub
from hubbub.hub.limits import CommandRate
from hubbub.hub.local import LocalClient
from hubbub.server.run import serve
from tests.conftest import API_KEY, DEFAULT_CONFIG, RunningServer, ServerFactory, merge

TIMEOUT = 5.0


def test_command_rate_bucket_refills() -> None:
    now = [0.0]
    rate = CommandRate(10.0, 3, clock=lambda: now[0])
    assert [rate.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.1  # one token back
    assert rate.take() and not rate.take()
    for _ in range(3):
        assert not rate.take()
    assert rate.exhausted  # burst (3) refusals in a row, and one more


async def test_flooding_commands_get_111_then_3013() -> None:
    base = merge(DEFAULT_CONFIG, {"client": {"command_rate_limit": 10, "command_rate_burst": 5}})
    async with Hub(load_config(None, env={}, base=base).config) as hub:
        client = LocalClient(hub)
        frame = "\n".join(
            [json.dumps({"id": 1, "connect": {}})]
            + [json.dumps({"id": n, "ping": {}}) for n in range(2, 30)]
        )
        await client.send(frame)
        replies = [json.loads(m) for m in await client.receive()]
        codes = [r.get("error", {}).get("code") for r in replies]
        # connect + 4 commands use the burst of 5; then 5 refusals answered 111 ...
        assert codes[:5] == [None] * 5
        assert codes[5:] == [111] * 5
        assert replies[5]["error"]["temporary"] is True
        # ... and the 6th refusal in a row closes the connection.
        assert client.close_code == 3013


async def test_commands_within_the_rate_all_pass() -> None:
    base = merge(DEFAULT_CONFIG, {"client": {"command_rate_limit": 1000, "command_rate_burst": 50}})
    async with Hub(load_config(None, env={}, base=base).config) as hub:
        client = LocalClient(hub)
        await client.send('{"id":1,"connect":{}}')
        await client.receive()
        for n in range(2, 40):
            await client.send(json.dumps({"id": n, "ping": {}}))
            await asyncio.sleep(0.002)
        hub.delivery.flush()
        replies = [json.loads(m) for m in await client.receive()]
        assert all("error" not in r for r in replies) and len(replies) == 38
        assert client.close_code is None


async def test_slow_handshake_is_closed(start_server: ServerFactory) -> None:
    server = await start_server({"http_server": {"handshake_timeout": "1s"}})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    lines_sent = 0
    try:
        writer.write(b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\n")
        for n in range(20):  # one header line per 0.5 s: 10 s to finish, the limit is 1 s
            await asyncio.sleep(0.5)
            if reader.at_eof():
                break
            writer.write(b"X-Slow-%d: y\r\n" % n)
            await writer.drain()
            lines_sent += 1
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed, no response
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    # Dropped long before the slow client could finish its handshake.
    assert lines_sent < 12


async def _status_of(server: RunningServer, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.http_url}/health", headers=headers) as response,
    ):
        return response.status


async def test_too_many_or_too_large_headers_are_refused(server: RunningServer) -> None:
    assert await _status_of(server, {"X-Ok": "1"}) == 200
    many = {f"X-H{n}": "v" for n in range(100)}
    assert await _status_of(server, many) in (400, 431)
    assert await _status_of(server, {"X-Big": "v" * 20000}) in (400, 431)


async def test_too_many_server_side_channels_close_with_3505(server: RunningServer) -> None:
    channels = [f"chat:c{n}" for n in range(130)]  # client.channel_limit is 128
    token = server.token("max", channels=channels)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.ws_url)
        await ws.send_str(json.dumps({"id": 1, "connect": {"token": token}}))
        message = await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 3505


async def test_internal_port_serves_the_api_and_the_public_port_does_not() -> None:
    from tests.redis_fixtures import free_port

    internal = free_port()
    base = merge(DEFAULT_CONFIG, {"http_server": {"internal_port": internal}})
    ports: asyncio.Queue[int] = asyncio.Queue()
    stop = asyncio.Event()
    hub = Hub(load_config(None, env={}, base=base).config)
    task = asyncio.create_task(
        serve(hub, host="127.0.0.1", port=0, ready=ports.put_nowait, stop=stop)
    )
    try:
        public = await asyncio.wait_for(ports.get(), TIMEOUT)
        headers = {"X-API-Key": API_KEY}
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"http://127.0.0.1:{public}/api/info", json={}, headers=headers
            ) as response:
                assert response.status == 404
            async with http.post(
                f"http://127.0.0.1:{internal}/api/info", json={}, headers=headers
            ) as response:
                assert (await response.json())["result"]["nodes"][0]["num_clients"] == 0
            async with http.get(f"http://127.0.0.1:{internal}/connection/websocket") as response:
                assert response.status == 404  # no WebSocket on the internal port
            ws = await http.ws_connect(f"ws://127.0.0.1:{public}/connection/websocket")
            await ws.send_str('{"id":1,"connect":{}}')
            reply = json.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data)
            assert "connect" in reply
            await ws.close()
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)


async def _api(server: RunningServer, method: str, body: dict[str, Any]) -> Any:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.api_url}/{method}", json=body, headers={"X-API-Key": server.api_key}
        ) as response,
    ):
        return await response.json()


async def test_api_refresh_pushes_new_expiry_and_expired_disconnects(
    server: RunningServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.ws_url)
        await ws.send_str(json.dumps({"id": 1, "connect": {"token": server.token("ivy")}}))
        await asyncio.wait_for(ws.receive(), TIMEOUT)
        expire_at = int(time.time()) + 1000
        assert await _api(server, "refresh", {"user": "ivy", "expire_at": expire_at}) == {
            "result": {}
        }
        push = json.loads((await asyncio.wait_for(ws.receive(), TIMEOUT)).data)["push"]
        assert push["refresh"]["expires"] is True and 990 <= push["refresh"]["ttl"] <= 1000
        await _api(server, "refresh", {"user": "ivy", "expired": True})
        message = await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 3005


async def test_compression_sends_text_frames_and_limits_decompressed_size(
    start_server: ServerFactory,
) -> None:
    server = await start_server({"websocket": {"compression": True}})
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.ws_url, compress=15)
        assert ws.compress == 15  # permessage-deflate negotiated
        await ws.send_str('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"chat:z"}}')
        got = ""
        while '"id":2' not in got:
            message = await asyncio.wait_for(ws.receive(), TIMEOUT)
            assert message.type is aiohttp.WSMsgType.TEXT
            got += message.data
        # 1 MB of one letter compresses to ~1 KB: the decompressed size is what counts.
        await ws.send_str(
            json.dumps({"id": 3, "publish": {"channel": "chat:z", "data": "a" * 2**20}})
        )
        closing = await asyncio.wait_for(ws.receive(), TIMEOUT)
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1009
