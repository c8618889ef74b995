"""Every error code (100..112) the server sends in a reply, over real sockets.

Each code is provoked with a real client over a real socket and the exact number
asserted; meanwhile a second client ("bystander", tests/codes_helpers.py) stays
connected and must still publish and receive afterwards: one client's error or
disconnect never disturbs another.
"""

from __future__ import annotations

from typing import Any

import pytest

from hubbub.hub.hooks import ConnectDecision, ConnectEvent, RPCEvent
from hubbub.hub.hub import Hub
from tests.codes_helpers import bystander, config, expect_error
from tests.conftest import ServerFactory
from tests.wsclient import connected_client, open_client

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
