"""What the code tests over real sockets share: namespaces, the bystander, and
``expect_error``/``expect_close``, which assert an exact code.

A bystander client stays connected throughout a case and must still publish
and receive afterwards: one client's error or disconnect never disturbs another.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from hubbub.codes import ALL_DISCONNECTS
from tests.conftest import CHAT_NAMESPACE, RunningServer
from tests.wsclient import WSClient, connected_client

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
