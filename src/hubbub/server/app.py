"""Wiring only: the aiohttp application, its routes, and the hub's lifecycle.

Routes (all on one port):
    GET  /connection/websocket   the client protocol
    POST /api/<method>           the server HTTP API (X-API-Key)
    GET  /health                 200 {} while the node serves
    GET  /                       the demo chat page

``attach`` adds them to an application the user already has; ``create_app``
makes a new one. Either way the hub starts with the application and, on
shutdown, disconnects every client with 3001 so they reconnect elsewhere.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from hubbub.hub.hub import Hub
from hubbub.server.api import HttpApi
from hubbub.server.keys import HUB_KEY
from hubbub.server.websocket import websocket_handler

DEMO_PAGE = "demo.html"


def attach(app: web.Application, hub: Hub, *, prefix: str = "", demo: bool = True) -> None:
    """Serve ``hub`` from ``app`` (an existing aiohttp application) under ``prefix``."""
    app[HUB_KEY] = hub
    api = HttpApi(hub)
    app.router.add_get(f"{prefix}/connection/websocket", websocket_handler)
    app.router.add_post(prefix + "/api/{method}", api.handle)
    app.router.add_get(f"{prefix}/health", _health)
    if demo:
        app.router.add_get(f"{prefix}/", _demo_page)

    async def start_hub(_: web.Application) -> None:
        await hub.start()

    async def close_hub(_: web.Application) -> None:
        await hub.close()

    app.on_startup.append(start_hub)
    app.on_shutdown.append(close_hub)


def create_app(hub: Hub, *, demo: bool = True) -> web.Application:
    app = web.Application()
    attach(app, hub, demo=demo)
    return app


async def _health(_: web.Request) -> web.Response:
    return web.json_response({})


async def _demo_page(_: web.Request) -> web.Response:
    page = resources.files("hubbub.server").joinpath("static", DEMO_PAGE).read_text("utf-8")
    return web.Response(text=page, content_type="text/html")
