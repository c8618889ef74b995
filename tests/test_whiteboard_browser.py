"""The whiteboard example's page in headless Chromium: two visitors see each other.

Two pages of examples/whiteboard (the example as written, its own index.html
and the centrifuge-js bundle) in one Chromium: shapes drawn with the pointer or
through ``window.whiteboard`` reach the other page as map entries, cursors as
entries of the cursors map and who is here as map presence; after one page's
client disconnects and reconnects, while the other draws, erases and moves,
both pages hold the same board again.

The ``browser`` fixture is the shared headless-Chromium one (tests/browser.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.browser import Browser, browser  # noqa: F401 (fixture)
from tests.test_whiteboard import Whiteboard, whiteboard  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(120)

ROOM = "r1"
PAGES = ("alice", "bob")


async def until(
    page: Browser, expression: str, expected: Any, *, name: str, within: float = 15.0
) -> Any:
    """Evaluate ``expression`` in page ``name`` until it equals ``expected``."""
    deadline = time.monotonic() + within
    while True:
        value = await page.eval(expression, page=name)
        if value == expected:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: {expression} is {value!r}, not {expected!r}")
        await asyncio.sleep(0.05)


async def pointer_drag(
    page: Browser, name: str, start: tuple[int, int], end: tuple[int, int]
) -> None:
    """Drag on the board the way a mouse does: the page's own pointer handlers run."""
    points = json.dumps([start, end])
    script = f"""(() => {{
      const svg = document.getElementById('board');
      const r = svg.getBoundingClientRect();
      const fire = (type, [x, y]) => svg.dispatchEvent(new PointerEvent(type,
        {{clientX: r.left + x, clientY: r.top + y, bubbles: true}}));
      const [start, end] = {points};
      fire('pointerdown', start); fire('pointermove', end); fire('pointerup', end);
    }})()"""
    await page.eval(script, page=name)


async def test_two_visitors_share_shapes_cursors_and_converge_after_a_reconnect(
    browser: Browser,  # noqa: F811 (the fixture)
    whiteboard: Whiteboard,  # noqa: F811 (the fixture)
) -> None:
    for name in PAGES:
        await browser.open(f"{whiteboard.url}/?room={ROOM}&name={name}", page=name)
    for name in PAGES:
        await browser.wait_for("#status", "live on", page=name)
        await until(browser, "whiteboard.online()", list(PAGES), name=name)
        assert await browser.texts("#online li", page=name) == list(PAGES)

    # Alice draws with the pointer: a rectangle from (40, 50) to (140, 110).
    await pointer_drag(browser, "alice", (40, 50), (140, 110))
    shapes = "Object.values(whiteboard.shapes()).map(s => [s.kind, s.x, s.y, s.w, s.h, s.by])"
    expected = [["rect", 40, 50, 100, 60, "alice"]]
    for name in PAGES:
        await until(browser, shapes, expected, name=name)
        await browser.wait_for("#shapes rect[data-by='alice']", page=name)

    # Cursors: Alice's pointer stopped at (140, 110); Bob moves to (300, 200). Each
    # page holds both and draws the other's.
    await browser.eval("whiteboard.move(300, 200)", page="bob")
    cursors = "Object.values(whiteboard.cursors()).map(c => [c.name, c.x, c.y]).sort()"
    for name in PAGES:
        await until(browser, cursors, [["alice", 140, 110], ["bob", 300, 200]], name=name)
    assert await browser.texts("#cursors g.cursor text", page="alice") == ["bob"]
    assert await browser.texts("#cursors g.cursor text", page="bob") == ["alice"]

    # Bob drops off; meanwhile Alice draws, erases her first shape and moves.
    await browser.eval("whiteboard.client.disconnect()", page="bob")
    await browser.wait_for("#status", "disconnected", page="bob")
    first = (await browser.eval("Object.keys(whiteboard.shapes())", page="alice"))[0]
    await browser.eval(
        "whiteboard.draw({kind: 'ellipse', x: 200, y: 220, w: 80, h: 40, color: '#00aa00'})",
        page="alice",
    )
    await browser.eval(f"whiteboard.erase({json.dumps(first)})", page="alice")
    await browser.eval("whiteboard.move(500, 400)", page="alice")
    expected = [["ellipse", 200, 220, 80, 40, "alice"]]
    await until(browser, shapes, expected, name="alice")

    # Bob comes back: his page converges to the same board, cursors and visitors.
    await browser.eval("whiteboard.client.connect()", page="bob")
    await browser.wait_for("#status", "live on", page="bob")
    await until(browser, shapes, expected, name="bob")
    alice_board = await browser.eval("whiteboard.shapes()", page="alice")
    await until(browser, "whiteboard.shapes()", alice_board, name="bob")
    await until(browser, cursors, [["alice", 500, 400]], name="bob")  # Bob's went with him
    for name in PAGES:
        await until(browser, "whiteboard.online()", list(PAGES), name=name)
    assert len(await browser.texts("#shapes ellipse", page="bob")) == 1
    assert await browser.texts("#shapes rect", page="bob") == []
    browser.assert_no_errors()
