"""The demo chat page: it is served, and the protocol sequence it uses works.

The page (src/hubbub/server/static/demo.html) is a plain-WebSocket client; the
second test replays its commands over a raw aiohttp WebSocket so that its
protocol usage is checked without a browser; the last runs it in Chromium.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from hubbub.config.generate import demo_config
from tests.browser import Browser, browser  # noqa: F401 (fixture)
from tests.conftest import RunningServer, ServerFactory

CHANNEL = "chat:lobby"


async def test_demo_page_is_served(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.http_url + "/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert "/connection/websocket" in page
    assert CHANNEL in page


class RawClient:
    """The page's view of the protocol: ids, newline-separated frames, pushes aside."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 1
        self.pushes: list[dict[str, Any]] = []
        self.replies: dict[int, dict[str, Any]] = {}

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        command_id = self.next_id
        self.next_id += 1
        await self.ws.send_str(json.dumps({"id": command_id, method: params}))
        while command_id not in self.replies:
            await self._read()
        reply = self.replies.pop(command_id)
        assert "error" not in reply, reply
        result: dict[str, Any] = reply[method]
        return result

    async def push(self) -> dict[str, Any]:
        while not self.pushes:
            await self._read()
        return self.pushes.pop(0)

    async def _read(self) -> None:
        message = await asyncio.wait_for(self.ws.receive(), 5)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        for line in message.data.split("\n"):
            if not line.strip():
                continue
            obj = json.loads(line)
            if "id" in obj:
                self.replies[obj["id"]] = obj
            elif "push" in obj:
                self.pushes.append(obj["push"])
            elif obj == {}:
                await self.ws.send_str("{}")  # ping -> pong


async def test_demo_page_protocol_sequence(start_server: ServerFactory) -> None:
    # The preset `hubbub serve` runs the page with: the page connects anonymously, and
    # the test defaults grant history and presence to token users only (no *_for_anonymous).
    server = await start_server(demo_config(), replace=True)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(server.ws_url) as ws:
            page = RawClient(ws)
            connected = await page.call("connect", {"name": "hubbub-demo"})
            assert connected["client"]

            subscribed = await page.call("subscribe", {"channel": CHANNEL})
            epoch = subscribed["epoch"]
            assert epoch  # the page keeps offset/epoch to recover after a reconnect
            offset = subscribed.get("offset", 0)

            history = await page.call("history", {"channel": CHANNEL, "limit": 50, "reverse": True})
            assert history.get("publications", []) == []
            assert history["epoch"] == epoch

            stats = await page.call("presence_stats", {"channel": CHANNEL})
            assert stats["num_clients"] == 1

            data = {"user": "guest-1234", "text": "hello <b>world</b>"}
            assert await page.call("publish", {"channel": CHANNEL, "data": data}) == {}
            push = await page.push()
            while "pub" not in push:  # the subscriber's own join comes first
                assert "join" in push
                push = await page.push()
            assert push["channel"] == CHANNEL
            assert push["pub"]["data"] == data
            assert push["pub"]["offset"] == offset + 1

            history = await page.call("history", {"channel": CHANNEL, "limit": 50, "reverse": True})
            assert [pub["data"] for pub in history["publications"]] == [data]

        # After a reconnect the page subscribes with its last offset/epoch and recovers.
        async with http.ws_connect(server.ws_url) as ws:
            page = RawClient(ws)
            await page.call("connect", {"name": "hubbub-demo"})
            recovered = await page.call(
                "subscribe", {"channel": CHANNEL, "recover": True, "offset": offset, "epoch": epoch}
            )
            assert recovered["recovered"] is True
            assert [pub["data"] for pub in recovered["publications"]] == [data]


async def test_demo_page_in_chromium_names_who_joins_and_leaves(
    start_server: ServerFactory,
    browser: Browser,  # noqa: F811
) -> None:
    server = await start_server(demo_config(), replace=True)
    url = server.http_url + "/"
    await browser.open(url)
    await browser.eval("localStorage.setItem('hubbub-demo-name', 'Alice')")
    await browser.open(url)  # reload: the page reads the name at load
    await browser.wait_for("#messages li.system", "you joined")
    await browser.eval("localStorage.setItem('hubbub-demo-name', 'Bob')")
    await browser.open(url, page="bob")
    await browser.wait_for("#messages li.system", "Bob joined")  # Alice's page
    await browser.wait_for("#send:not([disabled])", page="bob")
    await browser.type("#text", "hi from bob", page="bob")
    await browser.press("#text", "Enter", page="bob")
    line = await browser.wait_for("#messages li:not(.system)", "hi from bob")
    assert line == "Bobhi from bob"  # the name span, then the text
    await browser.do("close", page="bob")
    await browser.wait_for("#messages li.system", "Bob left")
    browser.assert_no_errors()
