"""The whiteboard example (examples/whiteboard): its server side, driven by centrifuge-js.

The example runs as written (``make_app(make_hub())`` on an aiohttp site) and
two centrifuge-js clients use it as the page does: named connections, shapes
in ``board:R`` checked and stamped by the ``on_map_publish`` hook, cursors in
``cursors:R`` keyed by the server, presence in ``clients:board:R``, and
``POST /clear`` through the Python map API. (tests/test_whiteboard_browser.py
drives the page itself in headless Chromium.)
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.sdk_helpers import EventProcess
from tests.test_maps_js import JS_DIR, STATE_SCRIPT, WAIT, js_entries
from tests.test_sdk_js import js_dependencies  # noqa: F401

EXAMPLE = Path(__file__).parent.parent / "examples" / "whiteboard" / "app.py"
SDK_BUNDLE = JS_DIR / "node_modules" / "centrifuge" / "dist" / "centrifuge.js"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("whiteboard_app", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["whiteboard_app"] = module
    spec.loader.exec_module(module)
    return module


class Whiteboard:
    def __init__(self, runner: web.AppRunner, port: int, hub: Any) -> None:
        self.runner = runner
        self.hub = hub
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/connection/websocket"


@pytest.fixture
async def whiteboard() -> AsyncIterator[Whiteboard]:
    example = load_example()
    hub = example.make_hub({"http_server": {"port": 0}})
    runner = web.AppRunner(example.make_app(hub, SDK_BUNDLE))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield Whiteboard(runner, runner.addresses[0][1], hub)
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def visitor(board: Whiteboard, name: str) -> AsyncIterator[EventProcess]:
    scenario = {"url": board.ws_url, "name": name, "data": {"name": name}}
    process = await EventProcess.start(
        "node", str(STATE_SCRIPT), json.dumps(scenario), cwd=JS_DIR, label=name
    )
    try:
        await process.next("connected", within=WAIT)
        yield process
    finally:
        await process.close({"cmd": "exit"})


SHAPE = {"kind": "rect", "x": 10, "y": 20, "w": 100, "h": 50, "color": "#ff0000"}


async def test_shapes_are_checked_stamped_and_shared(whiteboard: Whiteboard) -> None:
    async with visitor(whiteboard, "ann") as ann, visitor(whiteboard, "ben") as ben:
        for js in (ann, ben):
            await js.request("map", channel="board:r1")
            await js.next("sync", within=WAIT)
        await ann.request("publish", channel="board:r1", key="s1", data=SHAPE)
        drawn = await ben.next("update", within=WAIT)
        assert drawn["key"] == "s1" and drawn["data"] == {**SHAPE, "by": "ann"}
        outside = {**SHAPE, "x": 950}
        refused = await ann.request("publish", channel="board:r1", key="s2", data=outside)
        assert refused["error"]["code"] == 107
        await ben.request("remove", channel="board:r1", key="s1")
        gone = await ann.next("update", where=lambda e: e["removed"], within=WAIT)
        assert gone["key"] == "s1"


async def test_cursors_and_presence(whiteboard: Whiteboard) -> None:
    async with visitor(whiteboard, "cat") as cat:
        await cat.request("map", channel="cursors:r2")
        await cat.next("sync", within=WAIT)
        await cat.request("map", channel="clients:board:r2", kind="clients")
        await cat.next("sync", within=WAIT)
        async with visitor(whiteboard, "dan") as dan:
            dan_id = (dan.pending("connected") or [{}])[0].get("client") or ""
            await dan.request("map", channel="board:r2")
            here = await cat.next("update", where=lambda e: not e["removed"], within=WAIT)
            assert here["data"]["user"] == "dan"
            await dan.request("map", channel="cursors:r2")
            await dan.next("sync", within=WAIT)
            await dan.request("publish", channel="cursors:r2", key="", data={"x": 5, "y": 6})
            cursor = await cat.next(
                "update", where=lambda e: e["channel"] == "cursors:r2", within=WAIT
            )
            assert cursor["data"] == {"x": 5, "y": 6}
            assert cursor["key"] == here["key"] and (not dan_id or cursor["key"] == dan_id)
        # dan left: his presence entry and his cursor go.
        left = await cat.next(
            "update", where=lambda e: e["channel"] == "cursors:r2" and e["removed"], within=WAIT
        )
        assert left["key"] == here["key"]
        assert await js_entries(cat, "cursors:r2") == {}


async def test_a_name_is_required(whiteboard: Whiteboard) -> None:
    scenario = {"url": whiteboard.ws_url, "name": "x", "data": {"name": ""}}
    process = await EventProcess.start(
        "node", str(STATE_SCRIPT), json.dumps(scenario), cwd=JS_DIR, label="nameless"
    )
    try:
        closed = await process.next("disconnected", within=WAIT)
        assert closed["code"] == 107 and "name" in closed["reason"]
    finally:
        await process.close({"cmd": "exit"})


async def test_clear_through_the_python_api(whiteboard: Whiteboard) -> None:
    for i in range(3):
        await whiteboard.hub.map_publish("board:r3", f"s{i}", {**SHAPE, "by": "app"})
    async with visitor(whiteboard, "eve") as eve:
        await eve.request("map", channel="board:r3")
        assert (await eve.next("sync", within=WAIT))["count"] == 3
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{whiteboard.url}/clear?room=r3") as response,
        ):
            assert await response.json() == {"removed": 3}
        for _ in range(3):
            assert (await eve.next("update", within=WAIT))["removed"]
        assert await whiteboard.hub.map_state("board:r3") == {}
