"""Headless Chromium for tests: the ``browser`` fixture drives real pages.

The browser is Debian's ``chromium`` (scripts/test.sh installs it) run by
``tests/js/browser.mjs`` through puppeteer-core, with a fresh profile each
time. A test talks to it one command at a time and can interleave its own
actions (publish through the API, open raw WebSockets) between them::

    from tests.browser import Browser, browser  # noqa: F401 (fixture)

    async def test_page(browser: Browser, server: RunningServer) -> None:
        await browser.open(server.http_url + "/")
        await browser.type("#text", "hello")
        await browser.click("#send")
        assert "hello" in await browser.wait_for("#messages li", "hello")
        browser.assert_no_errors()

Every command waits at most ``within`` seconds and fails with what the browser
reported. Pages are named (``page="second"``) to drive several at once.

A page can also talk to the test: what it passes to ``window.hubbubEmit`` is read
with ``browser.page_events(page)`` (``PageEvents``: ``next``, ``request``,
``events``, the interface of ``EventProcess``), so a test written for a Node
driver runs a page unchanged (tests/js/browser_client.html runs the same
scenario.mjs as tests/js/client.mjs).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.sdk_helpers import (
    DEFAULT_TIMEOUT,
    JS_DIR,
    Event,
    EventFilter,
    EventProcess,
    install_js_dependencies,
)

CHROMIUM = "/usr/bin/chromium"
SCRIPT = JS_DIR / "browser.mjs"
#: Seconds for one browser command (a page load, a wait for an element).
COMMAND_TIMEOUT = 20.0


class Browser:
    """One Chromium with named pages, driven through ``browser.mjs``."""

    def __init__(self, process: EventProcess) -> None:
        self.process = process

    async def do(self, cmd: str, *, within: float = COMMAND_TIMEOUT, **fields: Any) -> Event:
        """Run one command (see browser.mjs); its result, or AssertionError with the log."""
        result = await self.process.request(cmd, within=within, **fields)
        if "error" in result:
            raise AssertionError(f"browser {cmd} {fields}: {result['error']}\n{self.describe()}")
        return result

    def describe(self) -> str:
        return self.process.describe()

    async def open(self, url: str, *, page: str = "main") -> None:
        await self.do("open", url=url, page=page)

    async def type(
        self, selector: str, text: str, *, page: str = "main", clear: bool = False
    ) -> None:
        await self.do("type", selector=selector, text=text, page=page, clear=clear)

    async def click(self, selector: str, *, page: str = "main") -> None:
        await self.do("click", selector=selector, page=page)

    async def press(self, selector: str, key: str, *, page: str = "main") -> None:
        await self.do("press", selector=selector, key=key, page=page)

    async def wait_for(
        self, selector: str, text: str | None = None, *, page: str = "main", within: float = 10.0
    ) -> str:
        """Wait for an element matching ``selector`` (containing ``text``); its text."""
        fields: dict[str, Any] = {"selector": selector, "page": page, "timeout": within * 1000}
        if text is not None:
            fields["text"] = text
        result = await self.do("waitFor", within=within + 5, **fields)
        found: str = result["text"]
        return found

    async def texts(self, selector: str, *, page: str = "main") -> list[str]:
        result = await self.do("texts", selector=selector, page=page)
        found: list[str] = result["texts"]
        return found

    async def eval(self, expression: str, *, page: str = "main") -> Any:
        return (await self.do("eval", expression=expression, page=page)).get("value")

    async def viewport(self, width: int, height: int, *, page: str = "main") -> None:
        await self.do("viewport", width=width, height=height, page=page)

    async def screenshot(self, path: Path, *, page: str = "main", selector: str = "") -> Path:
        fields: dict[str, Any] = {"path": str(path), "page": page}
        if selector:
            fields["selector"] = selector
        await self.do("screenshot", **fields)
        return path

    def page_events(self, page: str = "main") -> PageEvents:
        """What ``page`` sends through ``window.hubbubEmit``, and commands to it."""
        return PageEvents(self, page)

    def errors(self) -> list[Event]:
        """Console errors and uncaught exceptions of every page so far."""
        return [
            e
            for e in self.process.events
            if e.get("event") == "pageerror"
            or (e.get("event") == "console" and e.get("type") == "error")
        ]

    def assert_no_errors(self, *, allow: tuple[str, ...] = ()) -> None:
        """No page logged an error (except messages containing one of ``allow``)."""
        bad = [e for e in self.errors() if not any(a in e.get("text", "") for a in allow)]
        assert not bad, json.dumps(bad, indent=1)


class PageEvents:
    """A page's ``window.hubbubEmit`` values as events, and commands to its
    ``window.hubbubCommand``: what ``EventProcess`` offers for a Node driver."""

    def __init__(self, browser: Browser, page: str) -> None:
        self.browser = browser
        self.page = page
        self._ids = itertools.count(1)

    @property
    def events(self) -> list[Event]:
        """Everything the page emitted, in order."""
        return [
            e["data"]
            for e in self.browser.process.events
            if e.get("event") == "page_event" and e.get("page") == self.page
        ]

    async def next(
        self, name: str, *, where: EventFilter | None = None, within: float = DEFAULT_TIMEOUT
    ) -> Event:
        """The oldest event ``name`` of the page not returned yet (matching ``where``)."""

        def match(event: Event) -> bool:
            data = event.get("data")
            return (
                event.get("page") == self.page
                and isinstance(data, dict)
                and data.get("event") == name
                and (where is None or where(data))
            )

        found = await self.browser.process.next("page_event", where=match, within=within)
        data: Event = found["data"]
        return data

    async def request(self, cmd: str, *, within: float = DEFAULT_TIMEOUT, **fields: Any) -> Event:
        """Hand command ``cmd`` to the page; its result event (matched by a fresh id)."""
        command_id = next(self._ids)
        command = json.dumps({"cmd": cmd, "id": command_id, **fields})
        await self.browser.eval(f"window.hubbubCommand({command})", page=self.page)
        return await self.next(cmd, where=lambda e: e.get("id") == command_id, within=within)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A fresh headless Chromium (closed after the test)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            "chromium is not installed: scripts/test.sh installs it (apt-get install chromium)"
        )
    install_js_dependencies()
    options = {"executablePath": CHROMIUM, "timeout": int(COMMAND_TIMEOUT * 1000)}
    process = await EventProcess.start(
        "node", str(SCRIPT), json.dumps(options), cwd=JS_DIR, label="chromium"
    )
    try:
        await process.next("ready", within=60.0)
        yield Browser(process)
    finally:
        await process.close({"cmd": "exit"})
