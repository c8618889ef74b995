"""The code table, and every error and disconnect code the server sends, over real sockets.

The first part checks ``hubbub.codes`` as data against the protocol's table.
The second part provokes each code with a raw WebSocket client and asserts the
exact number; while it happens, a second client ("bystander") stays connected
and must still publish and receive afterwards: one client's error or
disconnect never disturbs another.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from hubbub.codes import (
    ALL_DISCONNECTS,
    ALL_ERRORS,
    ALL_UNSUBSCRIBES,
    Disconnect,
    DisconnectInfo,
    Error,
    Unsubscribe,
    disconnect_info,
)
from hubbub.hub.hooks import ConnectDecision, ConnectEvent, DisconnectEvent, RPCEvent
from hubbub.hub.hub import Hub
from tests.conftest import CHAT_NAMESPACE, RunningServer, ServerFactory
from tests.wsclient import WSClient, connected_client, open_client

# --- the table -----------------------------------------------------------------------

#: The protocol's numbers (PROTOCOL.md, Centrifugo's client protocol).
EXPECTED_ERRORS = {
    100: "INTERNAL",
    101: "UNAUTHORIZED",
    102: "UNKNOWN_CHANNEL",
    103: "PERMISSION_DENIED",
    104: "METHOD_NOT_FOUND",
    105: "ALREADY_SUBSCRIBED",
    106: "LIMIT_EXCEEDED",
    107: "BAD_REQUEST",
    108: "NOT_AVAILABLE",
    109: "TOKEN_EXPIRED",
    110: "EXPIRED",
    111: "TOO_MANY_REQUESTS",
    112: "UNRECOVERABLE_POSITION",
    113: "CONCURRENT_PAGINATION",
}
EXPECTED_DISCONNECTS = {
    3000: "CONNECTION_CLOSED",
    3001: "SHUTDOWN",
    3004: "SERVER_ERROR",
    3005: "EXPIRED",
    3006: "SUB_EXPIRED",
    3008: "SLOW",
    3009: "WRITE_ERROR",
    3010: "INSUFFICIENT_STATE",
    3011: "FORCE_RECONNECT",
    3012: "NO_PONG",
    3013: "TOO_MANY_REQUESTS",
    3500: "INVALID_TOKEN",
    3501: "BAD_REQUEST",
    3502: "STALE",
    3503: "FORCE_DISCONNECT",
    3504: "CONNECTION_LIMIT",
    3505: "CHANNEL_LIMIT",
    3506: "INAPPROPRIATE_PROTOCOL",
    3507: "PERMISSION_DENIED",
    3508: "NOT_AVAILABLE",
    3509: "TOO_MANY_ERRORS",
}


def test_error_codes_are_the_protocols() -> None:
    assert {e.code: e for e in ALL_ERRORS} == {
        code: getattr(Error, name) for code, name in EXPECTED_ERRORS.items()
    }


def test_disconnect_codes_are_the_protocols() -> None:
    assert {d.code: d for d in ALL_DISCONNECTS} == {
        code: getattr(Disconnect, name) for code, name in EXPECTED_DISCONNECTS.items()
    }


def test_unsubscribe_codes() -> None:
    assert [u.code for u in ALL_UNSUBSCRIBES] == [2000, 2500, 2501]
    assert not Unsubscribe.SERVER.resubscribe
    assert Unsubscribe.INSUFFICIENT_STATE.resubscribe
    assert Unsubscribe.EXPIRED.resubscribe


@pytest.mark.parametrize("table", [ALL_ERRORS, ALL_DISCONNECTS, ALL_UNSUBSCRIBES])
def test_codes_are_unique(table: tuple[Any, ...]) -> None:
    codes = [item.code for item in table]
    assert len(codes) == len(set(codes))
    assert len(table) == len(set(table))


def test_only_internal_and_too_many_requests_are_temporary() -> None:
    assert {e.code for e in ALL_ERRORS if e.temporary} == {100, 111}


def test_messages_and_reasons_are_set_and_reasons_fit_a_close_frame() -> None:
    assert all(e.message for e in ALL_ERRORS)
    assert all(u.reason for u in ALL_UNSUBSCRIBES)
    for d in ALL_DISCONNECTS:
        assert d.reason
        assert len(d.reason.encode()) <= 32


@pytest.mark.parametrize("info", ALL_DISCONNECTS, ids=lambda d: str(d.code))
def test_table_disconnects_reconnect_below_3500(info: DisconnectInfo) -> None:
    assert info.reconnect is (info.code < 3500)
    assert 3000 <= info.code < 4000


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (2999, False),
        (3000, True),
        (3499, True),
        (3500, False),
        (3999, False),
        (4000, True),
        (4499, True),
        (4500, False),
        (4999, False),
        (1000, False),
    ],
)
def test_reconnect_classification_ranges(code: int, reconnect: bool) -> None:
    assert DisconnectInfo(code, "x").reconnect is reconnect


def test_disconnect_info() -> None:
    assert disconnect_info(3503) is Disconnect.FORCE_DISCONNECT
    assert disconnect_info(3503, "go away") == DisconnectInfo(3503, "go away")
    assert disconnect_info(4100) == DisconnectInfo(4100, "")
    assert disconnect_info(4100, "custom") == DisconnectInfo(4100, "custom")
    for info in ALL_DISCONNECTS:
        assert disconnect_info(info.code) is info


# --- over real sockets ---------------------------------------------------------------

#: Namespaces for the socket tests, besides ``chat``.
LOCKED = {"name": "locked"}  # nothing allowed
PLAIN = {  # everything allowed, but no presence and no history
    "name": "plain",
    "allow_subscribe_for_client": True,
    "allow_subscribe_for_anonymous": True,
    "allow_publish_for_client": True,
    "allow_publish_for_anonymous": True,
    "allow_history_for_client": True,
    "allow_history_for_anonymous": True,
    "allow_presence_for_client": True,
    "allow_presence_for_anonymous": True,
}
NAMESPACES = {"channel": {"namespaces": [CHAT_NAMESPACE, LOCKED, PLAIN]}}
BYSTANDER_CHANNEL = "chat:bystander"


def config(**client: Any) -> dict[str, Any]:
    """Server configuration: the test namespaces plus ``client`` options."""
    return {**NAMESPACES, "client": client} if client else dict(NAMESPACES)


async def assert_alive(client: WSClient) -> None:
    """``client`` still publishes into its channel and receives its own publication."""
    data = {"alive": uuid.uuid4().hex}
    await client.result("publish", {"channel": BYSTANDER_CHANNEL, "data": data})
    while True:
        pub = await client.push(BYSTANDER_CHANNEL, "pub")
        if pub["data"] == data:
            return


@contextlib.asynccontextmanager
async def bystander(server: RunningServer) -> AsyncIterator[WSClient]:
    """A second client connected throughout; checked alive before and after."""
    async with connected_client(
        server.ws_url, server.token("bystander"), channels=(BYSTANDER_CHANNEL,)
    ) as client:
        await assert_alive(client)
        yield client
        assert client.close_code is None, f"bystander closed with {client.close_code}"
        await assert_alive(client)


async def expect_error(
    server: RunningServer, code: int, *commands: tuple[str, dict[str, Any]], token: str = ""
) -> dict[str, Any]:
    """Connect, run ``commands``: all but the last succeed, the last fails with ``code``.

    The failing client stays connected and usable; the bystander is unaffected.
    """
    async with bystander(server), connected_client(server.ws_url, token) as client:
        *setup, (method, params) = commands
        for setup_method, setup_params in setup:
            await client.result(setup_method, setup_params)
        error = await client.error(method, params)
        assert error["code"] == code, error
        assert error["message"]
        await client.result("publish", {"channel": "chat:after", "data": {"ok": True}})
        assert client.close_code is None
        return error


async def expect_close(client: WSClient, code: int, *, within: float = 5.0) -> None:
    """The server closes ``client`` with ``code`` (and the table's reason for it)."""
    assert await client.wait_closed(within=within) == code, (client.close_reason, client.messages)
    known = {d.code: d.reason for d in ALL_DISCONNECTS}
    if code in known:
        assert client.close_reason == known[code]


# --- errors --------------------------------------------------------------------------


async def test_error_100_when_a_hook_raises_and_it_is_temporary(
    start_server: ServerFactory,
) -> None:
    def setup(hub: Hub) -> None:
        @hub.on_rpc
        async def broken(event: RPCEvent) -> Any:
            raise ValueError("bug in the application")

    server = await start_server(config(), setup=setup)
    error = await expect_error(server, 100, ("rpc", {"method": "m", "data": {}}))
    assert error == {"code": 100, "message": "internal server error", "temporary": True}


async def test_non_temporary_errors_carry_no_temporary_flag(start_server: ServerFactory) -> None:
    server = await start_server(config())
    error = await expect_error(server, 102, ("subscribe", {"channel": "nope:x"}))
    assert "temporary" not in error


async def test_error_101_without_token_when_anonymous_is_not_allowed(
    start_server: ServerFactory,
) -> None:
    server = await start_server(config(allow_anonymous_connect_without_token=False))
    async with bystander(server), open_client(server.ws_url) as client:
        reply = await client.connect()
        assert reply["error"]["code"] == 101, reply
        # The connection stays open: the client may connect again, with a token.
        reply = await client.connect(server.token("u"))
        assert "connect" in reply, reply


async def test_error_102_unknown_namespace(start_server: ServerFactory) -> None:
    server = await start_server(config())
    await expect_error(server, 102, ("subscribe", {"channel": "nope:x"}))


@pytest.mark.parametrize(
    ("method", "channel"),
    [
        ("subscribe", "locked:x"),
        ("subscribe", "$chat:private"),
        ("publish", "locked:x"),
        ("history", "locked:x"),
        ("presence", "locked:x"),
        ("presence_stats", "locked:x"),
    ],
)
async def test_error_103_permission_denied(
    start_server: ServerFactory, method: str, channel: str
) -> None:
    server = await start_server(config())
    params: dict[str, Any] = {"channel": channel}
    if method == "publish":
        params["data"] = {"x": 1}
    await expect_error(server, 103, (method, params), token=server.token("u"))


async def test_private_channel_with_subscription_token_is_allowed(
    start_server: ServerFactory,
) -> None:
    server = await start_server(config())
    async with connected_client(server.ws_url, server.token("u")) as client:
        sub_token = server.token("u", channel="$chat:private")
        await client.result("subscribe", {"channel": "$chat:private", "token": sub_token})


async def test_error_105_already_subscribed(start_server: ServerFactory) -> None:
    server = await start_server(config())
    sub = ("subscribe", {"channel": "chat:twice"})
    await expect_error(server, 105, sub, sub)


async def test_error_106_channel_limit(start_server: ServerFactory) -> None:
    server = await start_server(config(channel_limit=2))
    # The bystander's own subscription does not count against this client.
    await expect_error(
        server,
        106,
        ("subscribe", {"channel": "chat:a"}),
        ("subscribe", {"channel": "chat:b"}),
        ("subscribe", {"channel": "chat:c"}),
    )


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("subscribe", {"channel": ""}),
        ("subscribe", {"channel": "x" * 256}),
        ("publish", {"channel": "", "data": {}}),
        ("publish", {"channel": "chat:no-data"}),
        ("refresh", {}),
    ],
    ids=["empty-name", "long-name", "publish-empty-name", "publish-without-data", "refresh"],
)
async def test_error_107_bad_request(
    start_server: ServerFactory, method: str, params: dict[str, Any]
) -> None:
    server = await start_server(config())
    await expect_error(server, 107, (method, params))


async def test_channel_name_of_255_chars_is_fine(start_server: ServerFactory) -> None:
    server = await start_server(config())
    async with connected_client(server.ws_url) as client:
        await client.result("subscribe", {"channel": "x" * 255})


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("rpc", {"method": "anything"}),
        ("presence", {"channel": "plain:x"}),
        ("presence_stats", {"channel": "plain:x"}),
        ("history", {"channel": "plain:x"}),
    ],
)
async def test_error_108_not_available(
    start_server: ServerFactory, method: str, params: dict[str, Any]
) -> None:
    server = await start_server(config())
    await expect_error(server, 108, (method, params), token=server.token("u"))


async def test_error_109_expired_connection_token(start_server: ServerFactory) -> None:
    server = await start_server(config())
    async with bystander(server), open_client(server.ws_url) as client:
        reply = await client.connect(server.token("u", ttl=-10))
        assert reply["error"]["code"] == 109, reply
        # The SDK fetches a new token and connects again on the same socket.
        reply = await client.connect(server.token("u"))
        assert "connect" in reply, reply


async def test_error_109_expired_subscription_token(start_server: ServerFactory) -> None:
    server = await start_server(config())
    token = server.token("u", ttl=-10, channel="$chat:p")
    await expect_error(
        server, 109, ("subscribe", {"channel": "$chat:p", "token": token}), token=server.token("u")
    )


async def test_error_110_connect_hook_sets_an_expiry_in_the_past(
    start_server: ServerFactory,
) -> None:
    def setup(hub: Hub) -> None:
        @hub.on_connect
        async def expire(event: ConnectEvent) -> ConnectDecision:
            return ConnectDecision(user="u", expire_at=1)

    server = await start_server(config(), setup=setup)
    async with open_client(server.ws_url) as client:
        reply = await client.connect()
        assert reply["error"]["code"] == 110, reply


async def test_error_112_unrecoverable_position_with_flag(start_server: ServerFactory) -> None:
    server = await start_server(config())
    await server.hub.publish("chat:r", {"n": 1})
    request = {"channel": "chat:r", "recover": True, "epoch": "wrong", "offset": 1, "flag": 2}
    await expect_error(server, 112, ("subscribe", request))


async def test_flag_2_with_a_recoverable_position_recovers(start_server: ServerFactory) -> None:
    server = await start_server(config())
    position = await server.hub.publish("chat:r", {"n": 1})
    await server.hub.publish("chat:r", {"n": 2})
    async with connected_client(server.ws_url) as client:
        request = {
            "channel": "chat:r",
            "recover": True,
            "epoch": position.epoch,
            "offset": 1,
            "flag": 2,
        }
        result = await client.result("subscribe", request)
        assert result["recovered"] is True and result["was_recovering"] is True
        assert [p["data"] for p in result["publications"]] == [{"n": 2}]
        # Centrifugo's rule: a recovered result carries the client's own position;
        # the publications bring it to the top (2).
        assert (result["offset"], result["epoch"]) == (1, position.epoch)


async def test_without_the_flag_a_wrong_epoch_is_recovered_false(
    start_server: ServerFactory,
) -> None:
    server = await start_server(config())
    await server.hub.publish("chat:r", {"n": 1})
    async with connected_client(server.ws_url) as client:
        result = await client.result(
            "subscribe", {"channel": "chat:r", "recover": True, "epoch": "wrong", "offset": 1}
        )
        assert result["was_recovering"] is True
        assert "recovered" not in result  # false is omitted
        assert "publications" not in result
        assert result["offset"] == 1


async def test_error_112_history_since_a_stale_epoch(start_server: ServerFactory) -> None:
    server = await start_server(config())
    await expect_error(
        server,
        112,
        ("history", {"channel": "chat:h", "since": {"offset": 0, "epoch": "old"}}),
        token=server.token("u"),
    )


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
