"""A live collaborative whiteboard on hubbub's map subscriptions.

Everyone on ``/?room=R`` sees the same board and each other's cursors:

* shapes are entries of the map channel ``board:R`` (key = shape id, data =
  the shape); the board is persistent: a browser that comes back, or
  reconnects, catches up from the change stream or reloads the state;
* cursors are entries of ``cursors:R``, keyed by the connection (the server
  sets the key: ``map.client_key = client_id``); they expire 10 s after the
  last move and go when the connection leaves;
* who is here: the map presence ``clients:board:R`` (one entry per connection
  subscribed to the board, kept by the server).

Python decides what may be drawn (``on_map_publish``: a shape must be a known
kind inside the board) and answers ``POST /clear?room=R`` with the Python map
API. Run it and open http://127.0.0.1:8000/?room=demo in two browsers::

    python examples/whiteboard/app.py --port 8000
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from aiohttp import web

from hubbub import (
    ClientError,
    ConnectDecision,
    ConnectEvent,
    Error,
    Hub,
    MapPublishDecision,
    MapPublishEvent,
    attach,
    load_config,
)

HERE = Path(__file__).parent
CDN = "https://unpkg.com/centrifuge@5.8.0/dist/centrifuge.js"
#: The board's size in SVG units; shapes must lie inside it.
WIDTH, HEIGHT = 960, 600
KINDS = ("rect", "ellipse")
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
NAME = re.compile(r"^[\w .-]{1,24}$")

OPEN = {"allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True}
CONFIG: dict[str, Any] = {
    "client": {"allow_anonymous_connect_without_token": True},
    "channel": {
        "namespaces": [
            {
                "name": "board",
                "subscription_type": "map",
                "map": {
                    "mode": "persistent",
                    "allow_publish_for_subscriber": True,
                    "allow_publish_for_anonymous": True,
                    "allow_remove_for_subscriber": True,
                    "allow_remove_for_anonymous": True,
                },
                "publication_data_format": "json_object",
                "map_clients_presence_channel_prefix": "clients:",
                **OPEN,
            },
            {
                "name": "cursors",
                "subscription_type": "map",
                "map": {
                    "mode": "ephemeral",
                    "key_ttl": "10s",
                    "client_key": "client_id",
                    "remove_client_on_unsubscribe": True,
                    "allow_publish_for_subscriber": True,
                    "allow_publish_for_anonymous": True,
                },
                "publication_data_format": "json_object",
                "client_publish_debounce_interval": "40ms",
                **OPEN,
            },
            {
                "name": "clients",
                "subscription_type": "map_clients",
                "map": {"mode": "durable", "key_ttl": "60s"},
                **OPEN,
            },
        ]
    },
}


def make_hub(extra: dict[str, Any] | None = None) -> Hub:
    """The whiteboard's hub: the configuration above (plus ``extra``) and its hooks."""
    data = dict(CONFIG)
    data.update(extra or {})
    hub = Hub(load_config(None, env={}, base=data).config)

    @hub.on_connect
    async def named(event: ConnectEvent) -> ConnectDecision | None:
        # Anonymous visitors pick a name; it becomes their user id on the board.
        name = (event.data or {}).get("name", "") if isinstance(event.data, dict) else ""
        if not NAME.match(name):
            raise ClientError(Error.BAD_REQUEST, "a name of 1-24 letters, digits or spaces")
        return ConnectDecision(user=name, info={"name": name})

    @hub.on_map_publish
    async def drawable(event: MapPublishEvent) -> MapPublishDecision | None:
        if event.channel.startswith("cursors:") or event.removed:
            return None  # cursors: the server keys them; removals: anyone may erase
        shape = event.data if isinstance(event.data, dict) else {}
        if not valid(shape):
            raise ClientError(Error.BAD_REQUEST, "not a shape of this board")
        return MapPublishDecision(data={**shape, "by": event.user})

    return hub


def valid(shape: dict[str, Any]) -> bool:
    """A rectangle or ellipse inside the board, with a #rrggbb colour."""
    try:
        x, y, w, h = (float(shape[k]) for k in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError):
        return False
    return (
        shape.get("kind") in KINDS
        and isinstance(shape.get("color"), str)
        and bool(COLOR.match(shape["color"]))
        and x >= 0
        and y >= 0
        and 0 < w <= WIDTH
        and 0 < h <= HEIGHT
        and x + w <= WIDTH
        and y + h <= HEIGHT
    )


def make_app(hub: Hub, centrifuge_js: Path | None = None) -> web.Application:
    """The page, the SDK (a local copy when given, else the CDN's), and /clear."""
    app = web.Application()

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(HERE / "index.html")

    async def sdk(request: web.Request) -> web.StreamResponse:
        if centrifuge_js is None:
            raise web.HTTPFound(CDN)
        return web.FileResponse(centrifuge_js)

    async def clear(request: web.Request) -> web.Response:
        room = request.query.get("room", "")
        if not NAME.match(room):
            raise web.HTTPBadRequest(text="room?")
        channel = f"board:{room}"
        removed = 0
        for key in await hub.map_state(channel):  # the Python map API
            if not (await hub.map_remove(channel, key)).suppressed:
                removed += 1
        return web.json_response({"removed": removed})

    app.router.add_get("/", page)
    app.router.add_get("/centrifuge.js", sdk)
    app.router.add_post("/clear", clear)
    attach(app, hub)  # /connection/websocket, /api, /health
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--centrifuge-js", type=Path, help="serve this centrifuge.js, not the CDN's"
    )
    args = parser.parse_args()
    web.run_app(make_app(make_hub(), args.centrifuge_js), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
