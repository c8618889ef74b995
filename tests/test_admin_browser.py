"""The admin UI in headless Chromium, as an operator uses it.

Log in (a wrong password first), see the node, find a channel and its
presence, publish into it and see the publication arrive at a subscribed
client, trace the channel live, find a user's connection and disconnect it.
Screenshots go to the test's directory; with ``HUBBUB_SCREENSHOTS=DIR`` also
to DIR (the README's come from ``HUBBUB_SCREENSHOTS=docs``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.browser import Browser, browser  # noqa: F401 (fixture)
from tests.conftest import API_KEY, RunningServer, ServerFactory
from tests.wsclient import WSClient, connected_client

PASSWORD = "correct horse battery staple"
ADMIN = {
    "admin": {"enabled": True, "password": PASSWORD, "secret": "admin-secret-0123456789abcdef"},
    "demo": {"enabled": False},
}

pytestmark = pytest.mark.timeout(120)


async def snap(browser: Browser, directory: Path, name: str) -> None:  # noqa: F811
    path = await browser.screenshot(directory / name)
    keep(path)


def keep(path: Path) -> None:
    assert path.stat().st_size > 10_000  # a real page, not a blank image
    if os.environ.get("HUBBUB_SCREENSHOTS"):
        target = Path(os.environ["HUBBUB_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)


@contextlib.asynccontextmanager
async def crowd(server: RunningServer) -> AsyncIterator[dict[str, WSClient]]:
    """A few users on a few channels, so that the pages show something."""
    people = {
        "victim": ("chat:admin", "chat:lobby"),
        "alice": ("chat:admin",),
        "bob": ("chat:lobby", "news"),
        "carol": ("news",),
    }
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            user: await stack.enter_async_context(
                connected_client(server.ws_url, server.token(user), channels=channels)
            )
            for user, channels in people.items()
        }
        yield clients


async def api_publish(server: RunningServer, channel: str, data: object) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.api_url}/publish",
            json={"channel": channel, "data": data},
            headers={"X-API-Key": API_KEY},
        ) as response,
    ):
        assert "result" in await response.json()


async def test_admin_ui_in_chromium(
    start_server: ServerFactory,
    browser: Browser,  # noqa: F811
    tmp_path: Path,
) -> None:
    server = await start_server(ADMIN)
    async with crowd(server) as clients:
        victim = clients["victim"]
        await browser.open(server.http_url + "/")  # the UI takes / without a demo page
        await browser.viewport(1180, 560)  # the size of the README's screenshots
        await browser.wait_for("#login-view:not([hidden]) #password")
        tabs = "getComputedStyle(document.getElementById('tabs')).display"
        assert await browser.eval(tabs) == "none"  # nothing to navigate before the login
        await browser.type("#password", "not the password")
        await browser.click("#login-button")
        assert await browser.wait_for("#login-error", "Wrong password")
        await snap(browser, tmp_path, "admin-login.png")
        await browser.type("#password", PASSWORD, clear=True)
        await browser.click("#login-button")

        # Nodes: this node, with its figures.
        row = await browser.wait_for("#nodes tr.node", server.hub.node_id)
        assert "0.1.0" in row
        await browser.wait_for("#total-clients", "4")
        await snap(browser, tmp_path, "admin-nodes.png")

        # Channels: search, then a channel's presence and history.
        await browser.click('#tabs button[data-view="channels"]')
        await browser.wait_for('#channels tr.channel[data-channel="news"]')
        await browser.type("#channel-pattern", "chat:*")
        await browser.press("#channel-pattern", "Enter")
        await browser.wait_for('#channels tbody:not(:has(tr[data-channel="news"]))')  # filtered
        assert all(
            t.startswith("chat:") for t in await browser.texts("#channels tr.channel td.mono")
        )
        await api_publish(server, "chat:admin", {"text": "earlier news"})
        await victim.push("chat:admin", "pub")
        await browser.click('#channels tr.channel[data-channel="chat:admin"]')
        await browser.wait_for("#channel-presence li", "victim")
        await browser.wait_for("#channel-history li", "earlier news")
        await snap(browser, tmp_path, "admin-channel.png")

        # Publish from the Actions page: the subscribed client gets it.
        await browser.click('#tabs button[data-view="actions"]')
        await browser.type("#publish-channel", "chat:admin")
        await browser.type("#publish-data", '{"text": "from the admin UI"}', clear=True)
        await browser.click("#publish-form button")
        assert "published" in await browser.wait_for("#publish-form .result.ok")
        assert (await victim.push("chat:admin", "pub"))["data"] == {"text": "from the admin UI"}

        # Live trace of the channel.
        await browser.click('#tabs button[data-view="trace"]')
        await browser.type("#trace-target", "chat:admin")
        await browser.click("#trace-start")
        await browser.wait_for("#trace-events li", "tracing channel chat:admin")
        await api_publish(server, "chat:admin", {"text": "seen live"})
        await clients["alice"].result("publish", {"channel": "chat:admin", "data": {"text": "hi"}})
        await browser.wait_for('#trace-events li[data-kind="publication"]', "seen live")
        await browser.wait_for('#trace-events li[data-kind="command"]', "publish")
        await snap(browser, tmp_path, "admin-trace.png")
        await browser.click("#trace-stop")

        # Connections of a user, and disconnecting it.
        await browser.click('#tabs button[data-view="connections"]')
        await browser.type("#connections-user", "victim")
        await browser.press("#connections-user", "Enter")
        row = await browser.wait_for("#connections tr.connection", victim.client_id)
        assert "chat:admin" in row
        await snap(browser, tmp_path, "admin-connections.png")
        await browser.click("#connections tr.connection button.disconnect")
        assert await victim.wait_closed() == 3503
        await browser.wait_for("#connections-empty:not([hidden])")
    # The one failed request is the wrong password's 400.
    browser.assert_no_errors(allow=("status of 400",))
