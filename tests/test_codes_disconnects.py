"""Every disconnect code the server closes a connection with (3001..3506), over
real sockets, and the close reason's length.

Each code is provoked with a real client over a real socket and the exact number
asserted; meanwhile a second client ("bystander", tests/codes_helpers.py) stays
connected and must still publish and receive afterwards: one client's error or
disconnect never disturbs another.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from hubbub.codes import Disconnect
from hubbub.hub.hooks import DisconnectEvent
from hubbub.hub.hub import Hub
from tests.codes_helpers import bystander, config, expect_close
from tests.conftest import RunningServer, ServerFactory
from tests.wsclient import connected_client, open_client

# --- disconnects ---------------------------------------------------------------------


async def test_3001_shutdown_on_hub_close(start_server: ServerFactory) -> None:
    server = await start_server(config())
    async with (
        connected_client(server.ws_url, channels=("chat:a",)) as first,
        connected_client(server.ws_url, server.token("u")) as second,
    ):
        await server.hub.close()
        await expect_close(first, 3001)
        await expect_close(second, 3001)
        assert Disconnect.SHUTDOWN.reconnect
    # A connection opened while the node is closing is shut down at once.
    async with open_client(server.ws_url) as late:
        await expect_close(late, 3001)


async def test_3005_connection_expired(start_server: ServerFactory) -> None:
    server = await start_server(config(expired_close_delay="0s"))
    async with bystander(server), open_client(server.ws_url) as client:
        reply = await client.connect(server.token("u", ttl=2))
        assert reply["connect"]["expires"] is True
        assert 0 <= reply["connect"]["ttl"] <= 2
        await expect_close(client, 3005, within=6)


async def test_refresh_keeps_an_expiring_connection(start_server: ServerFactory) -> None:
    server = await start_server(config(expired_close_delay="0s"))
    async with open_client(server.ws_url) as client:
        await client.connect(server.token("u", ttl=2))
        result = await client.result("refresh", {"token": server.token("u", ttl=3600)})
        assert result["expires"] is True and result["ttl"] > 3000
        await client.no_close(2.5)


async def test_3008_slow_client(start_server: ServerFactory) -> None:
    codes: list[int] = []
    closed = asyncio.Event()

    def setup(hub: Hub) -> None:
        @hub.on_disconnect
        async def record(event: DisconnectEvent) -> None:
            codes.append(event.code)
            closed.set()

    server = await start_server(config(queue_max_size=65536), setup=setup)
    async with bystander(server), open_client(server.ws_url, read=False) as slow:
        # Connect and subscribe without ever reading what comes back.
        await slow.send_frame(
            {"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "plain:firehose"}}
        )
        for _ in range(100):
            if server.hub.channel_counts().get("plain:firehose"):
                break
            await asyncio.sleep(0.02)
        payload = {"blob": "x" * 16384}
        published = 0
        while not closed.is_set() and published < 256 * 1024 * 1024:
            await server.hub.publish("plain:firehose", payload)
            published += 16384
            await asyncio.sleep(0)  # let the hub flush: the socket buffers fill up
        assert codes == [3008]
        assert "plain:firehose" not in server.hub.channel_counts()
        # Reading at last: whatever was buffered, then the close frame with 3008.
        await expect_close(slow, 3008, within=20)


async def test_3012_no_pong(start_server: ServerFactory) -> None:
    server = await start_server(config(ping_interval="1s", pong_timeout="0.5s"))
    async with open_client(server.ws_url, auto_pong=False) as client:
        reply = await client.connect()
        assert reply["connect"]["ping"] == 1 and reply["connect"]["pong"] is True
        await expect_close(client, 3012, within=5)
        assert client.pings >= 1


async def test_3012_only_hits_the_client_that_does_not_answer(
    start_server: ServerFactory,
) -> None:
    server = await start_server(config(ping_interval="1s", pong_timeout="0.5s"))
    async with bystander(server) as other, open_client(server.ws_url, auto_pong=False) as client:
        await client.connect()
        await expect_close(client, 3012, within=5)
        # The bystander answers pings and is still there after several of them.
        await other.no_close(1.5)
        assert other.pings >= 2


async def test_a_client_answering_pings_stays_connected(start_server: ServerFactory) -> None:
    server = await start_server(config(ping_interval="1s", pong_timeout="0.5s"))
    async with connected_client(server.ws_url) as client:
        await client.no_close(3)
        assert client.pings >= 2


async def test_publications_arrive_after_a_ping(start_server: ServerFactory) -> None:
    server = await start_server(config(ping_interval="2s", pong_timeout="1.9s"))
    async with connected_client(server.ws_url, channels=("chat:x",)) as client:
        await asyncio.sleep(2.6)  # the first ping is due within 2 s (+ timer resolution)
        await server.hub.publish("chat:x", {"n": 1})
        pub = await client.push("chat:x", "pub", within=1)
        assert pub["data"] == {"n": 1}
        assert client.pings >= 1


async def test_3500_invalid_token(start_server: ServerFactory) -> None:
    server = await start_server(config())
    async with bystander(server), open_client(server.ws_url) as client:
        await client.send_frame({"id": 1, "connect": {"token": "garbage.not.jwt"}})
        await expect_close(client, 3500)
    async with open_client(server.ws_url) as client:
        from hubbub.auth.tokens import make_token

        forged = make_token("another-secret-key-of-enough-length", "u", ttl=3600)
        await client.send_frame({"id": 1, "connect": {"token": forged}})
        await expect_close(client, 3500)


async def test_3500_refresh_with_another_users_token(start_server: ServerFactory) -> None:
    server = await start_server(config())
    async with bystander(server), connected_client(server.ws_url, server.token("u")) as client:
        await client.send_frame({"id": 9, "refresh": {"token": server.token("someone-else")}})
        await expect_close(client, 3500)


async def test_3500_subscription_token_for_another_channel(start_server: ServerFactory) -> None:
    server = await start_server(config())
    async with bystander(server), connected_client(server.ws_url, server.token("u")) as client:
        token = server.token("u", channel="$chat:other")
        await client.send_frame({"id": 9, "subscribe": {"channel": "$chat:p", "token": token}})
        await expect_close(client, 3500)


BEFORE_CONNECT = {
    "command-before-connect": ['{"id":1,"subscribe":{"channel":"chat:a"}}'],
    "invalid-json": ["{not json"],
    "json-array": ['[{"id":1,"connect":{}}]'],
    "id-is-a-string": ['{"id":"x","connect":{}}'],
    "pong-without-ping": ["{}"],
    "connect-without-id": ['{"connect":{}}'],
    "deep-nesting": ['{"id":1,"connect":{"data":' + "[" * 100_000 + "]" * 100_000 + "}}"],
}
AFTER_CONNECT = {
    "second-connect": ['{"id":5,"connect":{}}'],
    "id-less-subscribe": ['{"subscribe":{"channel":"chat:a"}}'],
    "unknown-method": ['{"id":5,"frobnicate":{}}'],
    "two-methods": ['{"id":5,"subscribe":{"channel":"chat:a"},"publish":{"channel":"chat:a"}}'],
    "pong-without-ping": ["{}"],
    "bad-second-line": ['{"id":5,"presence_stats":{"channel":"chat:a"}}', "nope"],
}


@pytest.mark.parametrize("frame", list(BEFORE_CONNECT.values()), ids=list(BEFORE_CONNECT))
async def test_3501_bad_request_before_connect(
    start_server: ServerFactory, frame: list[str]
) -> None:
    server = await start_server({**config(), "websocket": {"message_size_limit": 1_048_576}})
    async with bystander(server), open_client(server.ws_url) as client:
        await client.send_frame(*frame)
        await expect_close(client, 3501)
        assert client.messages == []


@pytest.mark.parametrize("frame", list(AFTER_CONNECT.values()), ids=list(AFTER_CONNECT))
async def test_3501_bad_request_after_connect(
    start_server: ServerFactory, frame: list[str]
) -> None:
    server = await start_server(config())
    async with bystander(server), connected_client(server.ws_url) as client:
        await client.send_frame(*frame)
        await expect_close(client, 3501)
        # The frame is rejected as a whole: nothing of it ran.
        assert client.messages == []


async def test_send_without_id_is_fine(start_server: ServerFactory) -> None:
    server = await start_server(config())
    async with connected_client(server.ws_url) as client:
        await client.send_frame({"send": {"data": {"hello": 1}}})
        await client.result("publish", {"channel": "chat:x", "data": {}})
        assert client.close_code is None


async def test_3502_stale_without_connect(start_server: ServerFactory) -> None:
    server = await start_server(config(stale_close_delay="0.5s"))
    async with bystander(server), open_client(server.ws_url) as client:
        await expect_close(client, 3502, within=5)


async def test_3502_stale_after_a_refused_connect(start_server: ServerFactory) -> None:
    server = await start_server(
        config(stale_close_delay="0.5s", allow_anonymous_connect_without_token=False)
    )
    async with open_client(server.ws_url) as client:
        assert (await client.connect())["error"]["code"] == 101
        await expect_close(client, 3502, within=5)


async def test_connected_client_is_not_stale(start_server: ServerFactory) -> None:
    server = await start_server(config(stale_close_delay="0.5s"))
    async with connected_client(server.ws_url) as client:
        await client.no_close(1.5)


async def api_disconnect(server: RunningServer, body: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.api_url}/disconnect", json=body, headers={"X-API-Key": server.api_key}
        ) as resp,
    ):
        assert resp.status == 200
        reply: dict[str, Any] = await resp.json()
        return reply


async def test_3503_api_disconnect_without_code(start_server: ServerFactory) -> None:
    server = await start_server(config())
    async with bystander(server), connected_client(server.ws_url, server.token("u")) as client:
        assert await api_disconnect(server, {"user": "u"}) == {"result": {}}
        await expect_close(client, 3503)
        assert client.close_reason == "force disconnect"


async def test_api_disconnect_with_a_custom_code(start_server: ServerFactory) -> None:
    server = await start_server(config())
    async with bystander(server), connected_client(server.ws_url, server.token("u")) as client:
        body = {"user": "u", "disconnect": {"code": 4501, "reason": "banned"}}
        assert await api_disconnect(server, body) == {"result": {}}
        await expect_close(client, 4501)
        assert client.close_reason == "banned"


async def test_long_close_reasons_are_cut_to_32_bytes(start_server: ServerFactory) -> None:
    server = await start_server(config())
    async with connected_client(server.ws_url, server.token("u")) as client:
        body = {"user": "u", "disconnect": {"code": 4000, "reason": "x" * 40}}
        assert await api_disconnect(server, body) == {"result": {}}
        await expect_close(client, 4000)
        assert client.close_reason == "x" * 32


async def test_close_reason_is_cut_on_a_character_boundary(start_server: ServerFactory) -> None:
    server = await start_server(config())
    async with connected_client(server.ws_url, server.token("u")) as client:
        reason = "a" + "\u00e9" * 20  # 41 bytes: byte 32 is inside a character
        body = {"user": "u", "disconnect": {"code": 4000, "reason": reason}}
        assert await api_disconnect(server, body) == {"result": {}}
        await expect_close(client, 4000)
        assert client.close_reason == reason[:16]  # 31 bytes


async def test_3506_binary_frame(start_server: ServerFactory) -> None:
    server = await start_server(config())
    async with bystander(server), connected_client(server.ws_url) as client:
        await client.send_bytes(b'{"id":2,"publish":{"channel":"chat:a","data":{}}}')
        await expect_close(client, 3506)


async def test_3504_user_connection_limit(start_server: ServerFactory) -> None:
    server = await start_server(config(user_connection_limit=1))
    async with (
        bystander(server),
        connected_client(server.ws_url, server.token("u")) as first,
        open_client(server.ws_url) as second,
    ):
        await second.send_frame({"id": 1, "connect": {"token": server.token("u")}})
        await expect_close(second, 3504)
        assert second.messages == []  # no connect reply
        await first.no_close(0.1)
        # Another user is not limited by u's connections.
        async with connected_client(server.ws_url, server.token("v")) as other:
            assert other.client_id
    # Once u's connection is gone, u may connect again.
    await server.hub.wait_idle()
    async with connected_client(server.ws_url, server.token("u")) as again:
        assert again.client_id
