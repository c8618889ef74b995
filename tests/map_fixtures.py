"""Configuration and helpers shared by the map subscription tests.

``MAP_CONFIG`` has one namespace of each map kind: ``board`` (persistent,
subscribers write and remove, map presence in ``clients:`` and ``users:``),
``cursors`` (ephemeral, 1 s key TTL, the key is the client id, removed when the
client leaves), ``scores`` (ordered), and the presence maps themselves.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import RunningServer

OPEN = {"allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True}

MAP_CONFIG: dict[str, Any] = {
    "channel": {
        "namespaces": [
            {
                "name": "board",
                "subscription_type": "map",
                "map": {
                    "mode": "persistent",
                    "allow_publish_for_subscriber": True,
                    "allow_remove_for_subscriber": True,
                },
                "map_clients_presence_channel_prefix": "clients:",
                "map_users_presence_channel_prefix": "users:",
                **OPEN,
            },
            {
                "name": "cursors",
                "subscription_type": "map",
                "publication_data_format": "json_object",
                "map": {
                    "mode": "ephemeral",
                    "key_ttl": "1s",
                    "client_key": "client_id",
                    "remove_client_on_unsubscribe": True,
                    "allow_publish_for_subscriber": True,
                },
                **OPEN,
            },
            {
                "name": "scores",
                "subscription_type": "map",
                "map": {"mode": "persistent", "ordered": True},
                **OPEN,
            },
            {
                "name": "clients",
                "subscription_type": "map_clients",
                "map": {"mode": "durable", "key_ttl": "60s"},
                **OPEN,
            },
            {
                "name": "users",
                "subscription_type": "map_users",
                "map": {"mode": "durable", "key_ttl": "2s"},
                **OPEN,
            },
            {"name": "news", **OPEN},
        ]
    }
}


async def api(server: RunningServer, method: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST /api/<method>: the whole JSON reply (``result`` or ``error``)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.api_url}/{method}", json=body, headers={"X-API-Key": server.api_key}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        reply: dict[str, Any] = await response.json()
        return reply


async def api_result(server: RunningServer, method: str, body: dict[str, Any]) -> dict[str, Any]:
    reply = await api(server, method, body)
    assert "result" in reply, f"{method} {body}: {reply}"
    result: dict[str, Any] = reply["result"]
    return result


async def server_state(server: RunningServer, channel: str) -> dict[str, Any]:
    """Every entry of map ``channel`` read through the API, page by page."""
    entries: dict[str, Any] = {}
    cursor = ""
    while True:
        page = await api_result(
            server, "map_read_state", {"channel": channel, "cursor": cursor, "limit": 1000}
        )
        for entry in page["entries"]:
            entries[entry["key"]] = entry["data"]
        cursor = page.get("cursor", "")
        if not cursor:
            return entries
