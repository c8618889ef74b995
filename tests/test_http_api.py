"""The server HTTP API, through the real ``cent`` client and raw aiohttp.

``cent`` is what users run, so every method is called through it and its
typed result is checked; HTTP statuses and the exact body shapes are checked
with raw requests. Methods that act on connections (disconnect, unsubscribe,
subscribe) are observed from a live raw WebSocket client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from cent import (
    AsyncClient,
    BatchRequest,
    BroadcastRequest,
    CentApiResponseError,
    CentRequest,
    CentTransportError,
    CentUnauthorizedError,
    ChannelsRequest,
    Disconnect,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    InfoResult,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    StreamPosition,
    SubscribeRequest,
    UnsubscribeRequest,
)

from tests.conftest import RunningServer, ServerFactory
from tests.wsclient import WSClient, connected_client

RAW_TO_BUILTINS = (
    "server bug: HttpApi.history/presence build the reply with msgspec.to_builtins() on "
    "Publication/ClientInfo structs holding msgspec.Raw payloads (data, conn_info), which "
    "raises TypeError 'Encoding objects of type msgspec.Raw is unsupported': the API "
    "answers error 100 instead of the publications / presence"
)
BATCH_SHAPE = (
    "server bug: the batch reply is {'result': {'replies': [...]}} but Centrifugo answers "
    "{'replies': [...]} at the top level; cent (dto.CentRequest.parse_response reads "
    "json_data['replies']) fails with KeyError on every batch call"
)


@pytest.fixture
async def api(server: RunningServer) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(server.api_url, server.api_key, timeout=5)
    try:
        yield client
    finally:
        await client.close()


async def post(
    server: RunningServer,
    method: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, Any]:
    """A raw API request: (HTTP status, decoded JSON body or text)."""
    if headers is None:
        headers = {"X-API-Key": server.api_key}
    async with aiohttp.ClientSession() as http:
        kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": body or {}}
        async with http.post(
            f"{server.api_url}/{method}",
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=5),
            **kwargs,
        ) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()


def pubs(client: WSClient, channel: str | None = None) -> list[Any]:
    """Publication pushes received and not yet taken."""
    return [
        m
        for m in client.messages
        if "pub" in m.get("push", {}) and channel in (None, m["push"].get("channel"))
    ]


async def publish_numbers(api: AsyncClient, channel: str, count: int) -> str:
    """Publish {"n": 1..count}; the stream's epoch."""
    epoch = ""
    for n in range(1, count + 1):
        result = await api.publish(PublishRequest(channel=channel, data={"n": n}))
        assert result.offset == n
        epoch = result.epoch
    return epoch


# --- publish and broadcast -----------------------------------------------------------


async def test_publish_returns_offset_and_epoch_and_is_delivered(
    server: RunningServer, api: AsyncClient
) -> None:
    async with connected_client(server.ws_url, channels=("chat:pub",)) as client:
        first = await api.publish(PublishRequest(channel="chat:pub", data={"text": "hi"}))
        second = await api.publish(
            PublishRequest(channel="chat:pub", data={"text": "again"}, tags={"k": "v"})
        )
        assert first.offset == 1 and first.epoch
        assert second.offset == 2 and second.epoch == first.epoch
        assert await client.push("chat:pub", "pub") == {"data": {"text": "hi"}, "offset": 1}
        pub = await client.push("chat:pub", "pub")
        # A server-side publication has no publisher: no info.
        assert pub == {"data": {"text": "again"}, "offset": 2, "tags": {"k": "v"}}


async def test_publish_without_history_returns_an_empty_result(
    server: RunningServer, api: AsyncClient
) -> None:
    async with connected_client(server.ws_url, channels=("news",)) as client:
        result = await api.publish(PublishRequest(channel="news", data=[1, 2]))
        assert (result.offset, result.epoch) == (0, "")
        assert await client.push("news", "pub") == {"data": [1, 2]}
    assert await post(server, "publish", {"channel": "news", "data": 1}) == (200, {"result": {}})


async def test_publish_skip_history(server: RunningServer, api: AsyncClient) -> None:
    await api.publish(PublishRequest(channel="chat:skip", data={"n": 1}))
    skipped = await api.publish(PublishRequest(channel="chat:skip", data={}, skip_history=True))
    assert skipped.offset == 0
    page = await server.hub.history("chat:skip", limit=-1)
    assert [p.offset for p in page.publications] == [1]


async def test_publish_raw_body(server: RunningServer) -> None:
    status, body = await post(server, "publish", {"channel": "chat:raw", "data": {"x": 1}})
    assert status == 200
    assert set(body) == {"result"}
    assert body["result"]["offset"] == 1
    assert isinstance(body["result"]["epoch"], str) and body["result"]["epoch"]


async def test_publish_without_data_is_error_107(server: RunningServer) -> None:
    status, body = await post(server, "publish", {"channel": "chat:x"})
    assert status == 200
    assert body["error"]["code"] == 107


async def test_idempotency_key_publishes_once(server: RunningServer, api: AsyncClient) -> None:
    async with connected_client(server.ws_url, channels=("chat:idem",)) as client:
        request = PublishRequest(channel="chat:idem", data={"n": 1}, idempotency_key="key-1")
        first = await api.publish(request)
        again = await api.publish(request)
        assert (again.offset, again.epoch) == (first.offset, first.epoch)
        other = await api.publish(
            PublishRequest(channel="chat:idem", data={"n": 2}, idempotency_key="key-2")
        )
        assert other.offset == first.offset + 1
        assert (await client.push("chat:idem", "pub"))["data"] == {"n": 1}
        assert (await client.push("chat:idem", "pub"))["data"] == {"n": 2}
        await asyncio.sleep(0.1)
        assert not pubs(client)
    page = await server.hub.history("chat:idem", limit=-1)
    assert [p.offset for p in page.publications] == [1, 2]


async def test_broadcast_to_two_channels(server: RunningServer, api: AsyncClient) -> None:
    async with (
        connected_client(server.ws_url, channels=("chat:b1",)) as one,
        connected_client(server.ws_url, channels=("news",)) as two,
    ):
        await api.publish(PublishRequest(channel="chat:b1", data={"first": True}))
        result = await api.broadcast(
            BroadcastRequest(channels=["chat:b1", "news"], data={"all": True})
        )
        assert len(result.responses) == 2
        assert result.responses[0].error is None
        assert result.responses[0].result is not None
        assert result.responses[0].result.offset == 2
        assert result.responses[0].result.epoch
        assert result.responses[1].error is None
        assert (await one.push("chat:b1", "pub"))["data"] == {"first": True}
        assert (await one.push("chat:b1", "pub"))["data"] == {"all": True}
        assert (await two.push("news", "pub"))["data"] == {"all": True}


async def test_broadcast_reports_errors_per_channel(server: RunningServer) -> None:
    status, body = await post(
        server, "broadcast", {"channels": ["chat:ok", "nope:x"], "data": {"n": 1}}
    )
    assert status == 200
    first, second = body["result"]["responses"]
    assert first["result"]["offset"] == 1
    assert second == {"error": {"code": 102, "message": "unknown channel"}}


# --- history -------------------------------------------------------------------------


async def test_history_limit_since_reverse(server: RunningServer, api: AsyncClient) -> None:
    epoch = await publish_numbers(api, "chat:h", 5)

    async def numbers(**kwargs: Any) -> list[int]:
        result = await api.history(HistoryRequest(channel="chat:h", **kwargs))
        assert (result.offset, result.epoch) == (5, epoch)
        assert all(p.data == {"n": p.offset} for p in result.publications)
        return [p.offset for p in result.publications]

    assert await numbers() == []  # no limit: only the position
    assert await numbers(limit=0) == []
    assert await numbers(limit=-1) == [1, 2, 3, 4, 5]
    assert await numbers(limit=2) == [1, 2]
    assert await numbers(limit=-1, since=StreamPosition(offset=2, epoch=epoch)) == [3, 4, 5]
    assert await numbers(limit=1, since=StreamPosition(offset=2, epoch=epoch)) == [3]
    assert await numbers(limit=-1, reverse=True) == [5, 4, 3, 2, 1]
    assert await numbers(limit=2, reverse=True) == [5, 4]
    since = StreamPosition(offset=4, epoch=epoch)
    assert await numbers(limit=-1, reverse=True, since=since) == [3, 2, 1]


async def test_history_raw_body(server: RunningServer, api: AsyncClient) -> None:
    epoch = await publish_numbers(api, "chat:hr", 2)
    status, body = await post(server, "history", {"channel": "chat:hr", "limit": -1})
    assert status == 200
    assert body == {
        "result": {
            "publications": [{"data": {"n": 1}, "offset": 1}, {"data": {"n": 2}, "offset": 2}],
            "epoch": epoch,
            "offset": 2,
        }
    }


async def test_history_errors(server: RunningServer, api: AsyncClient) -> None:
    with pytest.raises(CentApiResponseError) as info:
        await api.history(HistoryRequest(channel="news", limit=-1))
    assert info.value.code == 108  # no history in this namespace
    await publish_numbers(api, "chat:stale", 1)
    with pytest.raises(CentApiResponseError) as info:
        await api.history(
            HistoryRequest(channel="chat:stale", since=StreamPosition(offset=1, epoch="old"))
        )
    assert info.value.code == 112


async def test_history_remove_keeps_the_position(server: RunningServer, api: AsyncClient) -> None:
    epoch = await publish_numbers(api, "chat:rm", 3)
    await api.history_remove(HistoryRemoveRequest(channel="chat:rm"))
    result = await api.history(HistoryRequest(channel="chat:rm", limit=-1))
    assert result.publications == []
    assert (result.offset, result.epoch) == (3, epoch)
    after = await api.publish(PublishRequest(channel="chat:rm", data={"n": 4}))
    assert (after.offset, after.epoch) == (4, epoch)
    assert await post(server, "history_remove", {"channel": "chat:rm"}) == (200, {"result": {}})


# --- channels, info, presence --------------------------------------------------------


async def test_channels_with_pattern(server: RunningServer, api: AsyncClient) -> None:
    async with (
        connected_client(server.ws_url, channels=("chat:a", "chat:b", "news")),
        connected_client(server.ws_url, channels=("chat:a",)),
    ):
        everything = await api.channels(ChannelsRequest())
        assert {name: c.num_clients for name, c in everything.channels.items()} == {
            "chat:a": 2,
            "chat:b": 1,
            "news": 1,
        }
        chat = await api.channels(ChannelsRequest(pattern="chat:*"))
        assert set(chat.channels) == {"chat:a", "chat:b"}
        exact = await api.channels(ChannelsRequest(pattern="news"))
        assert set(exact.channels) == {"news"}
        assert (await api.channels(ChannelsRequest(pattern="zzz*"))).channels == {}
    await server.hub.wait_idle()
    assert (await api.channels(ChannelsRequest())).channels == {}


async def test_info_counts_clients(server: RunningServer, api: AsyncClient) -> None:
    async with (
        connected_client(server.ws_url, server.token("alice"), channels=("chat:i",)),
        connected_client(server.ws_url, server.token("alice")),
        connected_client(server.ws_url, server.token("bob"), channels=("chat:i", "news")),
    ):
        info = await api.info(InfoRequest())
        (node,) = info.nodes
        assert node.uid == server.hub.node_id
        assert node.name
        assert node.num_clients == 3
        assert node.num_users == 2
        assert node.num_channels == 2
        assert node.num_subs == 3
        assert node.uptime >= 0


async def test_presence_and_presence_stats(server: RunningServer, api: AsyncClient) -> None:
    async with (
        connected_client(server.ws_url, server.token("alice"), channels=("chat:p",)) as alice,
        connected_client(server.ws_url, server.token("alice"), channels=("chat:p",)),
        connected_client(server.ws_url, server.token("bob"), channels=("chat:p",)) as bob,
    ):
        presence = await api.presence(PresenceRequest(channel="chat:p"))
        assert len(presence.presence) == 3
        assert sorted(i.user for i in presence.presence.values()) == ["alice", "alice", "bob"]
        assert all(client_id == i.client for client_id, i in presence.presence.items())
        assert presence.presence[bob.client_id].user == "bob"
        stats = await api.presence_stats(PresenceStatsRequest(channel="chat:p"))
        assert (stats.num_clients, stats.num_users) == (3, 2)
        await alice.result("unsubscribe", {"channel": "chat:p"})
        stats = await api.presence_stats(PresenceStatsRequest(channel="chat:p"))
        assert (stats.num_clients, stats.num_users) == (2, 2)
        presence = await api.presence(PresenceRequest(channel="chat:p"))
        assert alice.client_id not in presence.presence
    # Clients that went away leave presence (in the background, soon after the close).
    for _ in range(100):
        stats = await api.presence_stats(PresenceStatsRequest(channel="chat:p"))
        if stats.num_clients == 0:
            break
        await asyncio.sleep(0.02)
    assert (stats.num_clients, stats.num_users) == (0, 0)
    assert (await api.info(InfoRequest())).nodes[0].num_clients == 0


async def test_presence_shows_conn_info(server: RunningServer, api: AsyncClient) -> None:
    token = server.token("alice", info={"name": "A"})
    async with connected_client(server.ws_url, token, channels=("chat:pi",)) as alice:
        presence = await api.presence(PresenceRequest(channel="chat:pi"))
        info = presence.presence[alice.client_id]
        assert (info.user, info.client, info.conn_info) == ("alice", alice.client_id, {"name": "A"})


async def test_presence_where_not_enabled_is_108(server: RunningServer, api: AsyncClient) -> None:
    for request in (PresenceRequest(channel="news"), PresenceStatsRequest(channel="news")):
        with pytest.raises(CentApiResponseError) as info:
            await api._send(request)
        assert info.value.code == 108


# --- acting on connections -----------------------------------------------------------


async def test_disconnect(server: RunningServer, api: AsyncClient) -> None:
    async with (
        connected_client(server.ws_url, server.token("u")) as first,
        connected_client(server.ws_url, server.token("u")) as kept,
        connected_client(server.ws_url, server.token("other")) as other,
    ):
        await api.disconnect(DisconnectRequest(user="u", whitelist=[kept.client_id]))
        assert await first.wait_closed() == 3503
        assert first.close_reason == "force disconnect"
        await kept.no_close(0.1)
        await api.disconnect(
            DisconnectRequest(user="u", disconnect=Disconnect(code=4000, reason="reconnect pls"))
        )
        assert await kept.wait_closed() == 4000
        assert kept.close_reason == "reconnect pls"
        await other.no_close(0.1)


async def test_disconnect_one_client_and_bad_code(server: RunningServer) -> None:
    async with (
        connected_client(server.ws_url, server.token("u")) as one,
        connected_client(server.ws_url, server.token("u")) as two,
    ):
        status, body = await post(server, "disconnect", {"user": "u", "client": two.client_id})
        assert (status, body) == (200, {"result": {}})
        assert await two.wait_closed() == 3503
        await one.no_close(0.1)
        status, body = await post(
            server, "disconnect", {"user": "u", "disconnect": {"code": 1000, "reason": "x"}}
        )
        assert status == 200 and body["error"]["code"] == 107


async def test_unsubscribe_pushes_2000(server: RunningServer, api: AsyncClient) -> None:
    async with connected_client(
        server.ws_url, server.token("u"), channels=("chat:un", "news")
    ) as client:
        await api.unsubscribe(UnsubscribeRequest(user="u", channel="chat:un"))
        push = await client.push("chat:un", "unsubscribe")
        assert push == {"code": 2000, "reason": "server unsubscribe"}
        await api.publish(PublishRequest(channel="chat:un", data={"n": 1}))
        await api.publish(PublishRequest(channel="news", data={"n": 2}))
        assert (await client.push("news", "pub"))["data"] == {"n": 2}
        assert not pubs(client, "chat:un")
        # Client-side, the channel is gone: subscribing again works.
        await client.result("subscribe", {"channel": "chat:un"})


async def test_subscribe_pushes_subscribe_and_delivers(
    server: RunningServer, api: AsyncClient
) -> None:
    async with connected_client(server.ws_url, server.token("u")) as client:
        await api.publish(PublishRequest(channel="chat:srv", data={"n": 1}))
        await api.subscribe(SubscribeRequest(user="u", channel="chat:srv", data={"hello": 1}))
        push = await client.push("chat:srv", "subscribe")
        assert push["data"] == {"hello": 1}
        assert push["recoverable"] is True and push["positioned"] is True
        assert push["offset"] == 1 and push["epoch"]
        await api.publish(PublishRequest(channel="chat:srv", data={"n": 2}))
        pub = await client.push("chat:srv", "pub")
        assert pub == {"data": {"n": 2}, "offset": 2}
        # The subscription is the client's now: subscribing again is 105.
        assert (await client.error("subscribe", {"channel": "chat:srv"}))["code"] == 105


async def test_batch(server: RunningServer, api: AsyncClient) -> None:
    async with connected_client(server.ws_url, channels=("chat:batch",)) as client:
        result = await api.batch(
            BatchRequest(
                requests=[
                    PublishRequest(channel="chat:batch", data={"n": 1}),
                    PublishRequest(channel="chat:batch", data={"n": 2}),
                    PresenceStatsRequest(channel="chat:batch"),
                ]
            )
        )
        first, second, stats = result.replies
        assert first.offset == 1 and second.offset == 2  # type: ignore[attr-defined]
        assert stats.num_clients == 1  # type: ignore[attr-defined]
        assert (await client.push("chat:batch", "pub"))["data"] == {"n": 1}
        assert (await client.push("chat:batch", "pub"))["data"] == {"n": 2}


async def test_batch_reply_shape(server: RunningServer) -> None:
    status, body = await post(
        server,
        "batch",
        {
            "commands": [
                {"publish": {"channel": "news", "data": {}}},
                {"presence_stats": {"channel": "chat:x"}},
            ]
        },
    )
    assert status == 200
    assert body == {
        "replies": [{"publish": {}}, {"presence_stats": {"num_clients": 0, "num_users": 0}}]
    }


def batch_replies(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The replies of a batch, wherever the server puts them (see test_batch_reply_shape)."""
    replies: list[dict[str, Any]] = (
        body["replies"] if "replies" in body else body["result"]["replies"]
    )
    return replies


async def test_batch_runs_in_order_with_errors_per_command(server: RunningServer) -> None:
    async with connected_client(server.ws_url, channels=("chat:bo",)) as client:
        status, body = await post(
            server,
            "batch",
            {
                "commands": [
                    {"publish": {"channel": "chat:bo", "data": {"n": 1}}},
                    {"publish": {"channel": "nope:x", "data": {}}},
                    {"frobnicate": {}},
                    {"publish": {"channel": "chat:bo", "data": {"n": 2}}},
                    {"info": {}},
                ]
            },
        )
        assert status == 200
        first, unknown, missing, second, info = batch_replies(body)
        assert first["publish"]["offset"] == 1
        assert unknown == {"error": {"code": 102, "message": "unknown channel"}}
        assert missing["error"]["code"] == 104
        assert second["publish"]["offset"] == 2
        assert info["info"]["nodes"][0]["uid"] == server.hub.node_id
        assert (await client.push("chat:bo", "pub"))["data"] == {"n": 1}
        assert (await client.push("chat:bo", "pub"))["data"] == {"n": 2}


# --- HTTP statuses -------------------------------------------------------------------


async def test_401_without_or_with_a_wrong_key(server: RunningServer) -> None:
    body = {"channel": "chat:x", "data": {}}
    assert (await post(server, "publish", body, headers={}))[0] == 401
    assert (await post(server, "publish", body, headers={"X-API-Key": "wrong"}))[0] == 401
    assert (await post(server, "publish", body, headers={"Authorization": "apikey wrong"}))[
        0
    ] == 401
    assert (await post(server, "publish", body, headers={"Authorization": "bearer x"}))[0] == 401
    # Nothing was published.
    status, history = await post(server, "history", {"channel": "chat:x"})
    assert status == 200 and history["result"]["offset"] == 0


async def test_authorization_apikey_header_is_accepted(server: RunningServer) -> None:
    for scheme in ("apikey", "ApiKey"):
        status, body = await post(
            server,
            "publish",
            {"channel": "chat:auth", "data": {}},
            headers={"Authorization": f"{scheme} {server.api_key}"},
        )
        assert status == 200 and "result" in body


async def test_cent_with_a_wrong_key_raises_unauthorized(server: RunningServer) -> None:
    async with AsyncClient(server.api_url, "wrong", timeout=5) as client:
        with pytest.raises(CentUnauthorizedError):
            await client.info(InfoRequest())


async def test_404_unknown_method(server: RunningServer) -> None:
    assert (await post(server, "frobnicate", {}))[0] == 404


async def test_400_invalid_json_and_wrong_types(server: RunningServer) -> None:
    assert (await post(server, "publish", data=b"{not json"))[0] == 400
    assert (await post(server, "publish", data=b"[1,2]"))[0] == 400
    assert (await post(server, "publish", {"channel": 5, "data": {}}))[0] == 400
    assert (await post(server, "history", {"channel": "chat:x", "limit": "all"}))[0] == 400
    assert (await post(server, "broadcast", {"channels": "chat:x", "data": {}}))[0] == 400
    assert (await post(server, "disconnect", {"user": ["u"]}))[0] == 400


class FrobnicateRequest(CentRequest[InfoResult]):
    """A request for a method the server does not have."""

    __returning__ = InfoResult
    __api_method__ = "frobnicate"


async def test_cent_reports_transport_errors(server: RunningServer) -> None:
    async with AsyncClient(server.api_url, server.api_key, timeout=5) as client:
        with pytest.raises(CentTransportError) as info:
            await client._send(FrobnicateRequest())
        assert info.value.status_code == 404


async def test_api_error_in_body_for_unknown_namespace(
    server: RunningServer, api: AsyncClient
) -> None:
    status, body = await post(server, "publish", {"channel": "nope:x", "data": {}})
    assert (status, body) == (200, {"error": {"code": 102, "message": "unknown channel"}})
    with pytest.raises(CentApiResponseError) as info:
        await api.publish(PublishRequest(channel="nope:x", data={}))
    assert info.value.code == 102
    status, body = await post(server, "publish", {"channel": "", "data": {}})
    assert status == 200 and body["error"]["code"] == 107


async def test_insecure_api_needs_no_key(start_server: ServerFactory) -> None:
    server = await start_server({"http_api": {"insecure": True}})
    status, body = await post(server, "info", {}, headers={})
    assert status == 200 and body["result"]["nodes"]
