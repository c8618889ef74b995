"""centrifuge-js and a bare EventSource in a real browser (headless Chromium).

The test serves its own pages from its own HTTP server (another origin than
hubbub's, listed in ``client.allowed_origins``, so every request is a
cross-origin one with CORS, as on a real site): tests/js/browser_client.html
loads the SDK's browser build from tests/js/node_modules/centrifuge/dist and
runs the very scenario of test_sdk_modes.py (``run_scenario``: token connect,
recoverable subscribe, publications from the API, another SDK and itself,
presence, history, a server-side disconnect and exact recovery) with only the
``http_stream`` transport, only ``sse``, and the Protobuf build over
``http_stream``; the browser's own fetch streams and EventSource carry it.
tests/js/uni_sse.html opens a browser ``EventSource`` on ``uni_sse`` and
receives publications with no SDK.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.browser import Browser, browser  # noqa: F401 (fixture)
from tests.conftest import ServerFactory
from tests.sdk_helpers import JS_DIR
from tests.test_metrics import parse, scrape, value
from tests.test_sdk_modes import STREAMS, js_scenario, run_scenario

pytestmark = pytest.mark.timeout(120)

#: What the pages' server serves: path -> (file, content type).
DIST = JS_DIR / "node_modules" / "centrifuge" / "dist"
FILES: dict[str, tuple[Path, str]] = {
    "/client.html": (JS_DIR / "browser_client.html", "text/html"),
    "/uni_sse.html": (JS_DIR / "uni_sse.html", "text/html"),
    "/scenario.mjs": (JS_DIR / "scenario.mjs", "text/javascript"),
    "/centrifuge.js": (DIST / "centrifuge.js", "text/javascript"),
    "/centrifuge.protobuf.js": (DIST / "centrifuge.protobuf.js", "text/javascript"),
}


@pytest.fixture
async def pages(browser: Browser) -> AsyncIterator[str]:  # noqa: F811 (installs tests/js)
    """The test's own HTTP server of the pages and the SDK's browser build: its origin."""

    async def serve(request: web.Request) -> web.StreamResponse:
        found = FILES.get(request.path)
        if found is None:
            raise web.HTTPNotFound()
        path, content_type = found
        return web.Response(body=path.read_bytes(), content_type=content_type)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def page_url(origin: str, page: str, fragment: object) -> str:
    """``page`` of the pages' server with ``fragment`` (JSON or a string) after ``#``."""
    text = fragment if isinstance(fragment, str) else json.dumps(fragment)
    return f"{origin}/{page}#{urllib.parse.quote(text, safe='')}"


@pytest.mark.parametrize("mode", ["http_stream", "sse", "http_stream+protobuf"])
async def test_js_sdk_scenario_in_chromium(
    start_server: ServerFactory,
    browser: Browser,  # noqa: F811
    pages: str,
    mode: str,
) -> None:
    server = await start_server(
        {**STREAMS, "client": {"allowed_origins": [pages]}, "prometheus": {"enabled": True}}
    )
    channel = f"chat:browser-{mode.replace('+', '-')}"
    scenario = js_scenario(server, mode, channel, server.token("alice"))
    scenario["name"] = f"chromium-{mode}"
    await browser.open(page_url(pages, "client.html", scenario))
    page = browser.page_events()
    await run_scenario(server, page, channel, mode)
    [session] = server.hub.sessions_of("alice")
    assert session.emulation and session.name == f"chromium-{mode}"
    assert session.codec.name == ("protobuf" if "protobuf" in mode else "json")
    # Sent by Chromium itself, cross-origin: the page's origin and a browser's agent.
    assert session.transport.headers.get("origin") == pages
    assert "HeadlessChrome" in session.transport.headers.get("user-agent", "")
    assert not [e for e in page.events if e["event"] in ("fatal", "error")], page.events
    browser.assert_no_errors()
    # The metrics name the browser's transport, as Centrifugo's do.
    samples = parse(await scrape(f"{server.http_url}/metrics"))
    transport = mode.partition("+")[0]

    def count(family: str, frame_type: str) -> float:
        labels = {"transport": transport, "frame_type": frame_type, "channel_namespace": ""}
        return value(samples, family, **labels)

    assert count("centrifugo_transport_messages_received", "connect") == 2  # and its reconnect
    assert count("centrifugo_transport_messages_received", "publish") == 1
    assert count("centrifugo_transport_messages_sent", "publish") == 1  # the reply
    assert count("centrifugo_transport_messages_sent", "push_publication") >= 4
    assert value(samples, "centrifugo_transport_connect_count", transport=transport) == 2


async def test_browser_eventsource_on_uni_sse(
    start_server: ServerFactory,
    browser: Browser,  # noqa: F811
    pages: str,
) -> None:
    server = await start_server(
        {"uni_sse": {"enabled": True}, "client": {"allowed_origins": [pages]}}
    )
    channel = "chat:browser-uni"
    token = server.token("uni", channels=[channel])
    connect = urllib.parse.quote(json.dumps({"token": token, "name": "eventsource"}))
    await browser.open(
        page_url(
            pages, "uni_sse.html", f"{server.http_url}/connection/uni_sse?cf_connect={connect}"
        )
    )
    page = browser.page_events()
    first = (await page.next("message", within=10))["data"]
    assert first["connect"]["client"] and channel in first["connect"]["subs"]
    [session] = server.hub.sessions_of("uni")
    assert session.unidirectional and session.name == "eventsource"
    assert session.transport.headers.get("origin") == pages

    offsets = [(await server.hub.publish(channel, {"n": n})).offset for n in range(1, 4)]
    received = []
    while len(received) < 3:
        message = (await page.next("message"))["data"]
        if "pub" in message:  # the channel's join pushes may come between
            assert message["channel"] == channel
            received.append((message["pub"]["data"]["n"], message["pub"]["offset"]))
    assert received == list(zip((1, 2, 3), offsets, strict=True))
    # The page shows what it received, one item per message.
    items = await browser.texts("#messages li")
    assert [json.loads(i)["pub"]["offset"] for i in items if '"pub"' in i] == offsets
    await browser.eval("window.closeSource()")
    browser.assert_no_errors()
