"""Personal channels (``client.subscribe_to_user_personal_channel``) and
``auto_cache_recovery``, over real sockets with the raw client and centrifuge-js.

A user's every connection is subscribed server-side to ``<ns>:#<user>``; with
``single_connection`` a new connection of the user closes the older ones with
3504 (connection limit). ``auto_cache_recovery`` gives every subscribe of a
cache-mode namespace the latest publication, asked for or not.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hubbub.auth.tokens import make_token
from hubbub.config.loader import load_config
from hubbub.errors import ConfigError
from tests.cluster_fixtures import Node
from tests.conftest import DEFAULT_CONFIG, SECRET, RunningServer, ServerFactory, merge
from tests.redis_fixtures import RedisProcess, own_redis  # noqa: F401 (fixture)
from tests.wsclient import connected_client, open_client

PERSONAL: dict[str, Any] = {
    "client": {
        "subscribe_to_user_personal_channel": {
            "enabled": True,
            "personal_channel_namespace": "personal",
        }
    },
    "channel": {
        "namespaces": [
            {"name": "personal", "presence": True},
        ]
    },
}


async def api(server: RunningServer, method: str, body: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.api_url}/{method}", json=body, headers={"X-API-Key": server.api_key}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        reply: dict[str, Any] = await response.json()
        return reply


async def test_a_user_is_subscribed_to_its_personal_channel(start_server: ServerFactory) -> None:
    server = await start_server(PERSONAL)
    async with connected_client(server.ws_url, server.token("42")) as alice:
        reply = await api(server, "publish", {"channel": "personal:#42", "data": {"n": 1}})
        assert "result" in reply, reply
        pub = await alice.push("personal:#42", "pub")
        assert pub["data"] == {"n": 1}
        presence = await api(server, "presence", {"channel": "personal:#42"})
        assert list(presence["result"]["presence"]) == [alice.client_id]


async def test_connect_result_lists_the_personal_channel(start_server: ServerFactory) -> None:
    server = await start_server(PERSONAL)
    async with open_client(server.ws_url) as client:
        reply = await client.connect(server.token("7"))
        assert set(reply["connect"]["subs"]) == {"personal:#7"}


async def test_anonymous_connection_has_no_personal_channel(start_server: ServerFactory) -> None:
    server = await start_server(PERSONAL)
    async with open_client(server.ws_url) as client:
        reply = await client.connect()
        assert "subs" not in reply["connect"]
        assert server.hub.channel_counts() == {}


async def test_without_namespace_the_channel_is_hash_user(start_server: ServerFactory) -> None:
    server = await start_server(
        {"client": {"subscribe_to_user_personal_channel": {"enabled": True}}}
    )
    async with open_client(server.ws_url) as client:
        reply = await client.connect(server.token("42"))
        assert set(reply["connect"]["subs"]) == {"#42"}


async def test_single_connection_closes_the_older_connection(start_server: ServerFactory) -> None:
    extra = merge(
        PERSONAL, {"client": {"subscribe_to_user_personal_channel": {"single_connection": True}}}
    )
    server = await start_server(extra)
    async with (
        connected_client(server.ws_url, server.token("42")) as first,
        connected_client(server.ws_url, server.token("43")) as other_user,
        connected_client(server.ws_url, server.token("42")) as second,
    ):
        assert await first.wait_closed() == 3504
        await second.no_close(0.3)
        await other_user.no_close(0.1)
        presence = await api(server, "presence", {"channel": "personal:#42"})
        assert list(presence["result"]["presence"]) == [second.client_id]


async def test_single_connection_across_nodes(
    own_redis: RedisProcess,  # noqa: F811 (the fixture)
) -> None:
    """The older connection lives on another node (two processes sharing Redis): the
    control plane closes it."""
    prefix = f"pc-{uuid.uuid4().hex[:8]}"
    extra = merge(
        PERSONAL, {"client": {"subscribe_to_user_personal_channel": {"single_connection": True}}}
    )
    with tempfile.TemporaryDirectory(prefix="hubbub-personal-") as tmp:
        nodes = [Node(Path(tmp), name, [own_redis.address], prefix) for name in ("a", "b")]
        try:
            for node in nodes:
                config = merge(json.loads(node.config_path.read_text()), extra)
                node.config_path.write_text(json.dumps(config))
                await node.start()
            token = make_token(SECRET, "42", ttl=3600)
            async with connected_client(nodes[0].ws_url, token) as first:
                await first.no_close(0.1)
                async with connected_client(nodes[1].ws_url, token) as second:
                    assert await first.wait_closed() == 3504
                    await second.no_close(0.3)
        finally:
            for node in nodes:
                node.stop()


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (
            {
                "client": {
                    "subscribe_to_user_personal_channel": {
                        "enabled": True,
                        "personal_channel_namespace": "nope",
                    }
                }
            },
            "client.subscribe_to_user_personal_channel.personal_channel_namespace",
        ),
        (
            {
                "client": {
                    "subscribe_to_user_personal_channel": {
                        "enabled": True,
                        "single_connection": True,
                    }
                }
            },
            "client.subscribe_to_user_personal_channel.single_connection",
        ),
        (
            {"channel": {"namespaces": [{"name": "ticker", "auto_cache_recovery": True}]}},
            "channel.namespaces[0].auto_cache_recovery",
        ),
    ],
)
def test_bad_combinations_name_the_key(extra: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, base=merge(DEFAULT_CONFIG, extra))
    assert caught.value.key == key


TICKER: dict[str, Any] = {
    "name": "ticker",
    "history_size": 10,
    "history_ttl": "60s",
    "force_recovery": True,
    "force_recovery_mode": "cache",
    "auto_cache_recovery": True,
    "allow_subscribe_for_client": True,
    "allow_subscribe_for_anonymous": True,
}


async def test_auto_cache_recovery_delivers_the_latest_publication(
    start_server: ServerFactory,
) -> None:
    server = await start_server({"channel": {"namespaces": [TICKER]}})
    for price in (1, 2, 3):
        await api(server, "publish", {"channel": "ticker:btc", "data": {"price": price}})
    async with connected_client(server.ws_url) as client:
        result = await client.result("subscribe", {"channel": "ticker:btc"})
        assert [p["data"] for p in result["publications"]] == [{"price": 3}]
        assert result["offset"] == 3
        assert "recovered" not in result and "was_recovering" not in result
    # A client that asks, from an offset it already has: nothing new to deliver.
    async with connected_client(server.ws_url) as client:
        result = await client.result(
            "subscribe",
            {"channel": "ticker:btc", "recover": True, "offset": 3, "epoch": result["epoch"]},
        )
        assert result["recovered"] is True and "publications" not in result


async def test_auto_cache_recovery_for_server_side_subscriptions(
    start_server: ServerFactory,
) -> None:
    server = await start_server({"channel": {"namespaces": [TICKER]}})
    await api(server, "publish", {"channel": "ticker:eth", "data": {"price": 7}})
    async with open_client(server.ws_url) as client:
        reply = await client.connect(server.token("5", channels=["ticker:eth"]))
        sub = reply["connect"]["subs"]["ticker:eth"]
        assert [p["data"] for p in sub["publications"]] == [{"price": 7}]


async def test_without_auto_a_fresh_subscribe_gets_nothing(start_server: ServerFactory) -> None:
    manual = {**TICKER, "auto_cache_recovery": False}
    server = await start_server({"channel": {"namespaces": [manual]}})
    await api(server, "publish", {"channel": "ticker:btc", "data": {"price": 1}})
    async with connected_client(server.ws_url) as client:
        result = await client.result("subscribe", {"channel": "ticker:btc"})
        assert "publications" not in result
