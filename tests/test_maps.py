"""Map subscriptions on the wire and through the server API (memory map engine).

The raw client sends the commands centrifuge-js sends (tests/test_maps_js.py
drives the SDK itself) and checks each reply: state pages with a frozen
position, stream pages, the live transition, recovery, and the errors of
each misuse. The API methods have Centrifugo's names and shapes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hubbub.config.loader import load_config
from hubbub.errors import ConfigError
from tests.conftest import DEFAULT_CONFIG, RunningServer, ServerFactory, merge
from tests.map_fixtures import MAP_CONFIG, api, api_result, server_state
from tests.wsclient import WSClient, connected_client


@pytest.fixture
async def server(start_server: ServerFactory) -> RunningServer:
    return await start_server(MAP_CONFIG)


def state_req(channel: str, **fields: Any) -> dict[str, Any]:
    return {"channel": channel, "type": 1, "phase": 2, **fields}


async def paginate(
    client: WSClient, channel: str, limit: int = 100
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Page through ``channel`` as the SDK does; (entries by key, the live result)."""
    entries: dict[str, Any] = {}
    first = await client.result("subscribe", state_req(channel, limit=limit))
    result = first
    while True:
        for entry in result.get("state") or []:
            entries[entry["key"]] = entry["data"]
        if not result.get("phase"):  # live
            for pub in result.get("publications") or []:
                if pub.get("removed"):
                    entries.pop(pub["key"], None)
                else:
                    entries[pub["key"]] = pub["data"]
            return entries, result
        if result.get("cursor"):
            result = await client.result(
                "subscribe",
                state_req(
                    channel,
                    limit=limit,
                    cursor=result["cursor"],
                    offset=first["offset"],
                    epoch=first["epoch"],
                ),
            )
            continue
        # Stream pages (phase 1) until the server goes live.
        offset = result["offset"] if result.get("phase") == 1 else first["offset"]
        result = await client.result(
            "subscribe",
            {
                "channel": channel,
                "type": 1,
                "phase": 1,
                "limit": limit,
                "offset": offset,
                "epoch": first["epoch"],
            },
        )
        if result.get("phase") == 1:
            for pub in result.get("publications") or []:
                if pub.get("removed"):
                    entries.pop(pub["key"], None)
                else:
                    entries[pub["key"]] = pub["data"]


# --- the subscribe flow --------------------------------------------------------------


async def test_small_map_goes_live_with_the_first_page(server: RunningServer) -> None:
    for key in ("a", "b"):
        await api_result(server, "map_publish", {"channel": "board:1", "key": key, "data": {}})
    async with connected_client(server.ws_url) as client:
        result = await client.result("subscribe", state_req("board:1"))
        assert result["type"] == 1 and "phase" not in result  # phase 0: live
        assert [e["key"] for e in result["state"]] == ["a", "b"]
        assert result["offset"] == 2 and result["recoverable"] is True
        await api_result(server, "map_publish", {"channel": "board:1", "key": "c", "data": 3})
        pub = await client.push("board:1", "pub")
        assert (pub["key"], pub["data"], pub["offset"]) == ("c", 3, 3)


async def test_pages_keep_the_first_position_and_converge_under_writes(
    server: RunningServer,
) -> None:
    for i in range(350):
        await server.hub.maps.publish("board:2", f"k{i:03}", {"v": 0})
    async with connected_client(server.ws_url) as client:
        first = await client.result("subscribe", state_req("board:2", limit=100))
        assert first["phase"] == 2 and first["cursor"] and len(first["state"]) == 100
        # Writes while the client pages: updates behind and ahead of it, removals, new keys.
        for i in (5, 150, 340):
            await server.hub.maps.publish("board:2", f"k{i:03}", {"v": 1})
        await server.hub.maps.remove("board:2", "k200")
        await server.hub.maps.publish("board:2", "new", {"v": 1})
        second = await client.result(
            "subscribe",
            state_req(
                "board:2",
                limit=100,
                cursor=first["cursor"],
                offset=first["offset"],
                epoch=first["epoch"],
            ),
        )
        assert second["offset"] == first["offset"] == 350  # frozen
        keys = {e["key"] for e in second["state"]}
        assert "k150" not in keys  # changed after the frozen offset: the stream brings it
    async with connected_client(server.ws_url) as client:
        entries, live = await paginate(client, "board:2")
        assert entries == await server_state(server, "board:2")
        assert live["offset"] == 355


async def test_catch_up_through_stream_pages(start_server: ServerFactory) -> None:
    big_stream = merge(MAP_CONFIG, {})
    big_stream["channel"]["namespaces"][0]["map"]["stream_size"] = 1000
    server = await start_server(big_stream)
    for i in range(150):
        await server.hub.maps.publish("board:3", f"k{i}", i)
    async with connected_client(server.ws_url) as client:
        first = await client.result("subscribe", state_req("board:3", limit=100))
        for i in range(250):  # the stream moves far past the frozen position
            await server.hub.maps.publish("board:3", f"k{i % 150}", -i)
        rest = await client.result(
            "subscribe",
            state_req(
                "board:3",
                limit=100,
                cursor=first["cursor"],
                offset=first["offset"],
                epoch=first["epoch"],
            ),
        )
        assert rest["phase"] == 2 and "cursor" not in rest  # last page, stream too far: no live
        page = await client.result(
            "subscribe",
            {
                "channel": "board:3",
                "type": 1,
                "phase": 1,
                "limit": 100,
                "offset": 150,
                "epoch": first["epoch"],
            },
        )
        assert page["phase"] == 1 and page["offset"] == 250
        assert [p["offset"] for p in page["publications"]] == list(range(151, 251))
        page = await client.result(
            "subscribe",
            {
                "channel": "board:3",
                "type": 1,
                "phase": 1,
                "limit": 100,
                "offset": 250,
                "epoch": first["epoch"],
            },
        )
        assert page["phase"] == 1 and page["offset"] == 350
        live = await client.result(
            "subscribe",
            {
                "channel": "board:3",
                "type": 1,
                "phase": 1,
                "limit": 100,
                "offset": 350,
                "epoch": first["epoch"],
            },
        )
        assert "phase" not in live and live["offset"] == 400
        assert [p["offset"] for p in live["publications"]] == list(range(351, 401))


async def test_recovery_after_reconnect_brings_exactly_the_missed_changes(
    server: RunningServer,
) -> None:
    await server.hub.maps.publish("board:4", "a", 1)
    async with connected_client(server.ws_url) as client:
        live = await client.result("subscribe", state_req("board:4"))
        position = (live["offset"], live["epoch"])
    await server.hub.maps.publish("board:4", "a", 2)
    await server.hub.maps.remove("board:4", "a")
    await server.hub.maps.publish("board:4", "b", 3)
    async with connected_client(server.ws_url) as client:
        recovered = await client.result(
            "subscribe",
            {
                "channel": "board:4",
                "type": 1,
                "phase": 1,
                "recover": True,
                "offset": position[0],
                "epoch": position[1],
            },
        )
        assert recovered["recovered"] is True and recovered["was_recovering"] is True
        changes = [
            (p["key"], p.get("data"), p.get("removed", False)) for p in recovered["publications"]
        ]
        assert changes == [("a", 2, False), ("a", None, True), ("b", 3, False)]
        assert recovered["offset"] == 4


async def test_recovery_from_another_epoch_is_112(server: RunningServer) -> None:
    await server.hub.maps.publish("board:5", "a", 1)
    async with connected_client(server.ws_url) as client:
        error = await client.error(
            "subscribe",
            {
                "channel": "board:5",
                "type": 1,
                "phase": 1,
                "recover": True,
                "offset": 1,
                "epoch": "gone",
            },
        )
        assert error["code"] == 112
        # The flow is gone with the error: a stream page without one is 103.
        error = await client.error(
            "subscribe", {"channel": "board:5", "type": 1, "phase": 1, "offset": 1, "epoch": "x"}
        )
        assert error["code"] == 103


async def test_a_page_without_a_flow_is_refused(server: RunningServer) -> None:
    async with connected_client(server.ws_url) as client:
        error = await client.error("subscribe", state_req("board:6", cursor="5"))
        assert error["code"] == 103


@pytest.mark.parametrize(
    ("request_fields", "code"),
    [
        ({"channel": "board:7"}, 107),  # a stream subscribe to a map channel
        ({"channel": "news:1", "type": 1, "phase": 2}, 107),  # a map subscribe to a stream one
        ({"channel": "board:7", "type": 2, "phase": 2}, 107),  # map_clients to a map
        ({"channel": "board:7", "type": 1, "phase": 2, "tf": {"key": "a"}}, 107),
        ({"channel": "board:7", "type": 1, "phase": 7}, 107),
    ],
)
async def test_misuse_is_refused(
    server: RunningServer, request_fields: dict[str, Any], code: int
) -> None:
    async with connected_client(server.ws_url) as client:
        error = await client.error("subscribe", request_fields)
        assert error["code"] == code


async def test_abandoned_catch_up_disconnects_as_slow(start_server: ServerFactory) -> None:
    config = merge(MAP_CONFIG, {})
    config["channel"]["namespaces"][0]["map"]["subscribe_catch_up_timeout"] = "200ms"
    server = await start_server(config)
    for i in range(150):
        await server.hub.maps.publish("board:8", f"k{i}", i)
    async with connected_client(server.ws_url) as client:
        first = await client.result("subscribe", state_req("board:8"))
        await asyncio.sleep(0.3)
        await client.send_frame(
            {
                "id": 99,
                "subscribe": state_req(
                    "board:8", cursor=first["cursor"], offset=150, epoch=first["epoch"]
                ),
            }
        )
        assert await client.wait_closed() == 3008


async def test_flows_count_against_the_channel_limit(start_server: ServerFactory) -> None:
    server = await start_server(merge(MAP_CONFIG, {"client": {"channel_limit": 2}}))
    for i in range(150):
        await server.hub.maps.publish("board:big", f"k{i}", i)
    async with connected_client(server.ws_url) as client:
        await client.result("subscribe", state_req("board:big"))  # a flow: more pages
        await client.result("subscribe", state_req("board:small"))  # live at once
        error = await client.error("subscribe", state_req("board:third"))
        assert error["code"] == 106


async def test_already_subscribed_and_unsubscribe(server: RunningServer) -> None:
    async with connected_client(server.ws_url) as client:
        await client.result("subscribe", state_req("board:9"))
        error = await client.error("subscribe", state_req("board:9"))
        assert error["code"] == 105
        await client.result("unsubscribe", {"channel": "board:9"})
        await client.result("subscribe", state_req("board:9"))


# --- client writes -------------------------------------------------------------------


async def test_client_publish_and_remove(server: RunningServer) -> None:
    token = server.token("alice")
    async with (
        connected_client(server.ws_url, token) as writer,
        connected_client(server.ws_url) as reader,
    ):
        await reader.result("subscribe", state_req("board:10"))
        # Not subscribed: allow_publish_for_subscriber does not apply.
        error = await writer.error(
            "publish", {"channel": "board:10", "type": 1, "key": "k", "data": 1}
        )
        assert error["code"] == 103
        await writer.result("subscribe", state_req("board:10"))
        await writer.result(
            "publish", {"channel": "board:10", "type": 1, "key": "k", "data": {"x": 1}}
        )
        pub = await reader.push("board:10", "pub")
        assert (pub["key"], pub["data"], pub["info"]["user"]) == ("k", {"x": 1}, "alice")
        await writer.result(
            "publish", {"channel": "board:10", "type": 1, "key": "k", "removed": True}
        )
        pub = await reader.push("board:10", "pub")
        assert pub["key"] == "k" and pub["removed"] is True and "data" not in pub
        # Removing it again is suppressed: no error, nothing delivered.
        await writer.result(
            "publish", {"channel": "board:10", "type": 1, "key": "k", "removed": True}
        )
        error = await writer.error("publish", {"channel": "board:10", "data": 1})
        assert error["code"] == 107  # a stream publish to a map channel
        error = await writer.error("publish", {"channel": "board:10", "type": 1, "data": 1})
        assert error["code"] == 107  # no key


async def test_client_key_is_the_client_id_and_data_must_be_an_object(
    server: RunningServer,
) -> None:
    token = server.token("bob")
    async with connected_client(server.ws_url, token) as client:
        await client.result("subscribe", state_req("cursors:1"))
        await client.result(
            "publish", {"channel": "cursors:1", "type": 1, "key": "forged", "data": {"x": 5}}
        )
        pub = await client.push("cursors:1", "pub")
        assert pub["key"] == client.client_id
        error = await client.error("publish", {"channel": "cursors:1", "type": 1, "data": [1]})
        assert error["code"] == 107
    # remove_client_on_unsubscribe: the entry went with the connection.
    await asyncio.sleep(0.1)
    assert await server_state(server, "cursors:1") == {}


async def test_presence_maps_are_written_by_the_server_only(server: RunningServer) -> None:
    token = server.token("carol")
    async with connected_client(server.ws_url, token) as client:
        await client.result("subscribe", {"channel": "clients:board:11", "type": 2, "phase": 2})
        error = await client.error(
            "publish", {"channel": "clients:board:11", "type": 1, "key": "x", "data": {}}
        )
        assert error["code"] == 103


async def test_keys_expire_after_key_ttl(server: RunningServer) -> None:
    token = server.token("dave")
    async with connected_client(server.ws_url, token) as client:
        await client.result("subscribe", state_req("cursors:2"))
        await client.result("publish", {"channel": "cursors:2", "type": 1, "data": {"x": 1}})
        await client.push("cursors:2", "pub")
        removal = await client.push("cursors:2", "pub", within=4.0)
        assert removal["removed"] is True and removal["key"] == client.client_id
    assert await server_state(server, "cursors:2") == {}


# --- map presence --------------------------------------------------------------------


async def test_map_presence_entries_follow_subscriptions(server: RunningServer) -> None:
    async with connected_client(server.ws_url, server.token("u1")) as watcher:
        live = await watcher.result(
            "subscribe", {"channel": "clients:board:12", "type": 2, "phase": 2}
        )
        assert "state" not in live
        await watcher.result("subscribe", {"channel": "users:board:12", "type": 3, "phase": 2})
        async with connected_client(server.ws_url, server.token("u2")) as member:
            await member.result("subscribe", state_req("board:12"))
            joined = await watcher.push("clients:board:12", "pub")
            assert joined["key"] == member.client_id
            assert joined["data"]["user"] == "u2" and joined["info"]["client"] == member.client_id
            user = await watcher.push("users:board:12", "pub")
            assert user["key"] == "u2"
        left = await watcher.push("clients:board:12", "pub")
        assert left["key"] == member.client_id and left["removed"] is True
        # The user entry is not removed by the leave: it expires (key_ttl 2 s).
        expired = await watcher.push("users:board:12", "pub", within=5.0)
        assert expired == {"key": "u2", "removed": True, "offset": 2}


# --- server API ----------------------------------------------------------------------


async def test_api_shapes(server: RunningServer) -> None:
    published = await api_result(
        server, "map_publish", {"channel": "board:13", "key": "a", "data": {"n": 1}}
    )
    assert published["offset"] == 1 and published["epoch"]
    suppressed = await api_result(
        server, "map_publish", {"channel": "board:13", "key": "a", "data": 2, "key_mode": "if_new"}
    )
    assert suppressed["suppressed"] is True and suppressed["suppress_reason"] == "key_exists"
    missing = await api_result(
        server,
        "map_publish",
        {"channel": "board:13", "key": "b", "data": 2, "key_mode": "if_exists"},
    )
    assert missing["suppress_reason"] == "key_not_found"
    await api_result(
        server, "map_publish", {"channel": "board:13", "key": "v", "data": 1, "version": 5}
    )
    stale = await api_result(
        server, "map_publish", {"channel": "board:13", "key": "v", "data": 0, "version": 4}
    )
    assert stale["suppress_reason"] == "version"
    first = await api_result(
        server,
        "map_publish",
        {"channel": "board:13", "key": "i", "data": 1, "idempotency_key": "once"},
    )
    again = await api_result(
        server,
        "map_publish",
        {"channel": "board:13", "key": "i", "data": 9, "idempotency_key": "once"},
    )
    assert again["suppress_reason"] == "idempotency" and again["offset"] == first["offset"]
    state = await api_result(server, "map_read_state", {"channel": "board:13"})
    assert [(e["key"], e["data"], e["offset"]) for e in state["entries"]] == [
        ("a", {"n": 1}, 1),
        ("v", 1, 2),
        ("i", 1, 3),
    ]
    assert state["offset"] == 3 and "cursor" not in state
    one = await api_result(server, "map_read_state", {"channel": "board:13", "key": "v"})
    assert [e["key"] for e in one["entries"]] == ["v"]
    removed = await api_result(server, "map_remove", {"channel": "board:13", "key": "a"})
    assert removed["offset"] == 4
    again_removed = await api_result(server, "map_remove", {"channel": "board:13", "key": "a"})
    assert again_removed["suppress_reason"] == "key_not_found"
    stream = await api_result(
        server,
        "map_read_stream",
        {"channel": "board:13", "since_offset": 2, "since_epoch": state["epoch"], "limit": 10},
    )
    assert [(e["key"], e.get("removed", False)) for e in stream["entries"]] == [
        ("i", False),
        ("a", True),
    ]
    assert (await api_result(server, "map_stats", {"channel": "board:13"})) == {"num_keys": 2}
    assert await api_result(server, "map_clear", {"channel": "board:13"}) == {}
    assert (await api_result(server, "map_stats", {"channel": "board:13"})) == {"num_keys": 0}
    after = await api_result(server, "map_read_state", {"channel": "board:13"})
    assert after["epoch"] != state["epoch"]


async def test_ordered_map_pages_by_score(server: RunningServer) -> None:
    for key, score in (("low", 1), ("high", 30), ("mid", 20), ("mid2", 20)):
        await api_result(
            server, "map_publish", {"channel": "scores:1", "key": key, "data": {}, "score": score}
        )
    desc = await api_result(server, "map_read_state", {"channel": "scores:1", "limit": 2})
    assert [e["key"] for e in desc["entries"]] == ["high", "mid2"]
    rest = await api_result(
        server, "map_read_state", {"channel": "scores:1", "limit": 2, "cursor": desc["cursor"]}
    )
    assert [e["key"] for e in rest["entries"]] == ["mid", "low"] and "cursor" not in rest
    asc = await api_result(
        server, "map_read_state", {"channel": "scores:1", "asc": True, "limit": 10}
    )
    assert [e["key"] for e in asc["entries"]] == ["low", "mid", "mid2", "high"]


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("publish", {"channel": "board:1", "data": 1}),  # a stream publish to a map channel
        ("subscribe", {"user": "u", "channel": "board:1"}),  # server-side map subscribe
        ("map_publish", {"channel": "news:1", "key": "a", "data": 1}),
        ("map_publish", {"channel": "board:1", "key": "", "data": 1}),
        ("map_publish", {"channel": "", "key": "a", "data": 1}),
        ("map_publish", {"channel": "board:1", "key": "a"}),
        ("map_publish", {"channel": "board:1", "key": "a", "data": 1, "key_mode": "sometimes"}),
        ("map_remove", {"channel": "news:1", "key": "a"}),
        ("map_read_state", {"channel": "news:1"}),
        ("map_read_stream", {"channel": "news:1"}),
        ("map_stats", {"channel": "news:1"}),
        ("map_clear", {"channel": "news:1"}),
    ],
)
async def test_api_bad_requests(server: RunningServer, method: str, body: dict[str, Any]) -> None:
    reply = await api(server, method, body)
    assert reply["error"]["code"] == 107, reply


async def test_api_stale_revision_is_112(server: RunningServer) -> None:
    await api_result(server, "map_publish", {"channel": "board:14", "key": "a", "data": 1})
    reply = await api(server, "map_read_state", {"channel": "board:14", "revision_epoch": "old"})
    assert reply["error"]["code"] == 112


# --- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "key"),
    [
        ({"subscription_type": "maps"}, "subscription_type"),
        ({"subscription_type": "map"}, "map.mode"),
        ({"subscription_type": "map", "map": {"mode": "durable"}}, "map.key_ttl"),
        (
            {"subscription_type": "map", "map": {"mode": "persistent", "client_key": "ip"}},
            "map.client_key",
        ),
        ({"map": {"remove_client_on_unsubscribe": True}}, "map.remove_client_on_unsubscribe"),
        ({"publication_data_format": "xml"}, "publication_data_format"),
        (
            {"map_clients_presence_channel_prefix": "nowhere:"},
            "map_clients_presence_channel_prefix",
        ),
        ({"map_users_presence_channel_prefix": "room:"}, "map_users_presence_channel_prefix"),
        ({"subscription_type": "shared_poll"}, "shared_poll.hmac_secret_key"),
    ],
)
def test_config_errors_name_the_key(namespace: dict[str, Any], key: str) -> None:
    data = merge(DEFAULT_CONFIG, {"channel": {"namespaces": [{"name": "room", **namespace}]}})
    data["channel"]["proxy"] = {"shared_poll_refresh": {"endpoint": "http://127.0.0.1:9/poll"}}
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, base=data)
    assert caught.value.key.endswith(key), caught.value


def test_map_broker_redis_address_is_checked() -> None:
    data = merge(DEFAULT_CONFIG, {"map_broker": {"type": "redis", "redis": {"address": "nohost"}}})
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, base=data)
    assert caught.value.key == "map_broker.redis.address"


def test_map_broker_memory_with_redis_engine_warns() -> None:
    data = merge(DEFAULT_CONFIG, merge(MAP_CONFIG, {"engine": {"type": "redis"}}))
    warnings = load_config(None, env={}, base=data).warnings
    assert any("map_broker.type" in w for w in warnings)
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, base=merge(data, {"map_broker": {"type": "postgres"}}))
    assert caught.value.key == "map_broker.type"
