"""What the hostile-client tests share: the bystander, raw connections, the log check.

Each socket case runs against a real server (``start_server``) while a
"bystander" client stays connected throughout; after the case it must still
publish and receive within a second, and every publication the server
acknowledged during the test (publish replies without error, API results) must
be in history. Malformed WebSocket frames and handshakes are sent with
``tests/rawws.py``, a client that writes every byte itself. A test module
imports ``no_hubbub_tracebacks`` to make its autouse check apply: no case may
make hubbub log a traceback, and a hostile connection logs at most one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import RunningServer
from tests.rawws import RawWS
from tests.wsclient import WSClient, connected_client

HOST = "127.0.0.1"
BYSTANDER_CHANNEL = "chat:bystander"
ROUND_TRIP = 1.0  # seconds: the bystander's publish -> own pub push, under load too


# --- helpers -------------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident set (the server runs in-process)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def api_call(server: RunningServer, method: str, params: dict[str, Any]) -> Any:
    """One server API call; the decoded response body."""
    async with asyncio.timeout(5), aiohttp.ClientSession() as http:
        response = await http.post(
            f"{server.api_url}/{method}", json=params, headers={"X-API-Key": server.api_key}
        )
        async with response:
            return await response.json()


class Bystander:
    """A client connected throughout a case; it keeps a ledger of acknowledged publications."""

    def __init__(self, server: RunningServer, client: WSClient) -> None:
        self.server = server
        self.client = client
        self.acked: list[tuple[str, Any]] = []  # (channel, data) the server acknowledged

    async def round_trip(self) -> float:
        """Publish into its channel and receive its own publication; the seconds it took."""
        data = {"alive": uuid.uuid4().hex}
        started = time.monotonic()
        await self.client.result(
            "publish", {"channel": BYSTANDER_CHANNEL, "data": data}, within=ROUND_TRIP * 5
        )
        self.acked.append((BYSTANDER_CHANNEL, data))
        for _ in range(1000):
            pub = await self.client.push(BYSTANDER_CHANNEL, "pub", within=ROUND_TRIP * 5)
            if pub["data"] == data:
                return time.monotonic() - started
        raise AssertionError("own publication never arrived")

    async def api_publish(self) -> None:
        """Publish through the server API (``/api/publish``); recorded when acknowledged."""
        data = {"api": uuid.uuid4().hex}
        body = await api_call(self.server, "publish", {"channel": BYSTANDER_CHANNEL, "data": data})
        assert "result" in body, body
        self.acked.append((BYSTANDER_CHANNEL, data))

    async def assert_alive(self) -> None:
        assert self.client.close_code is None, f"bystander closed with {self.client.close_code}"
        took = await self.round_trip()
        assert took < ROUND_TRIP, f"bystander round trip took {took:.2f}s"
        await self.api_publish()

    async def assert_history(self) -> None:
        """Every acknowledged publication is in its channel's history."""
        channels = {channel for channel, _ in self.acked}
        for channel in channels:
            page = await self.server.hub.history(channel, limit=-1)
            stored = [json.loads(bytes(p.data)) for p in page.publications]
            missing = [d for c, d in self.acked if c == channel and d not in stored]
            assert not missing, f"acknowledged but not in history of {channel}: {missing[:3]}"


@contextlib.asynccontextmanager
async def bystander(server: RunningServer) -> AsyncIterator[Bystander]:
    """A second client, alive before and after the case, with the history check at the end."""
    async with connected_client(
        server.ws_url, server.token("bystander"), channels=(BYSTANDER_CHANNEL,)
    ) as client:
        watcher = Bystander(server, client)
        await watcher.assert_alive()
        yield watcher
        await watcher.assert_alive()
        await watcher.assert_history()


async def raw_connected(server: RunningServer, user: str = "hostile", **kwargs: Any) -> RawWS:
    """A raw WebSocket that has sent connect (with a token for ``user``) and got its reply."""
    ws = await RawWS.open(HOST, server.port, **kwargs)
    params = {"token": server.token(user)} if user else {}
    reply = await ws.reply(await ws.command("connect", params))
    assert "connect" in reply, reply
    return ws


@pytest.fixture(autouse=True)
def no_hubbub_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No case may make hubbub log an error with a traceback (an unhandled exception),
    and a hostile connection is at most one line at the default level (info), however
    many bad frames or commands it sends."""
    caplog.set_level(logging.INFO, logger="hubbub")
    yield
    bad = [
        r
        for r in caplog.records
        if r.name.startswith("hubbub") and r.levelno >= logging.ERROR and r.exc_info
    ]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]
    per_client: dict[str, list[str]] = {}
    for r in caplog.records:
        client = getattr(r, "fields", {}).get("client")
        if r.name.startswith("hubbub") and client:
            per_client.setdefault(client, []).append(r.getMessage())
    noisy = {client: lines for client, lines in per_client.items() if len(lines) > 1}
    assert not noisy, noisy
