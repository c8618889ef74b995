"""Wiring only: the aiohttp applications, their routes, and the hub's lifecycle.

Routes (on one port, unless ``http_server.internal_port`` splits them):
    GET  /connection/websocket   the client protocol (``websocket.handler_prefix``;
                                 none with ``websocket.disabled``)   (public)
    /connection/http_stream, /connection/sse, /emulation, /connection/uni_sse,
    /connection/uni_http_stream  when enabled (server/streams.py)     (public)
    GET  /                       the demo chat page (demo.enabled)    (public)
    POST /api/<method>           the server HTTP API (X-API-Key)      (internal port if set)
    GET  /health                 200 {} while the node serves         (both; health.enabled)
    GET  /ready                  200 {} when the engine is reachable, else 503 (both)
    GET  /metrics                Prometheus text format               (internal port if set;
                                                                        prometheus.enabled)
    *    /admin/...              the admin UI and its API (admin.py)  (internal port if set,
                                 and / too where no demo page is       unless admin.external)

``attach`` adds them to an application the user already has; ``create_app``
makes a new one. The WebSocket route is the endpoint's aiohttp door
(websocket.py): hubbub takes each upgraded connection over from aiohttp. The
application that owns the hub starts it and, on shutdown, disconnects every
client with 3001 so they reconnect elsewhere, then waits (bounded) for their
close handshakes.
``runner_options`` turns ``http_server`` limits into aiohttp server options.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from aiohttp import web

from hubbub.config.model import HttpServerConfig
from hubbub.hub.hub import Hub
from hubbub.server.admin import Admin
from hubbub.server.aiohttp_door import websocket_route
from hubbub.server.api import HttpApi
from hubbub.server.consuming import start_consumers, stop_consumers
from hubbub.server.keys import ENDPOINT_KEY, HUB_KEY
from hubbub.server.logs import quiet_peer_errors
from hubbub.server.metrics import metrics_handler
from hubbub.server.streams import Streams
from hubbub.server.urls import served_urls  # noqa: F401 - re-exported (it moved)
from hubbub.server.websocket import WebSocketEndpoint

DEMO_PAGE = "demo.html"


def attach(
    app: web.Application,
    hub: Hub,
    *,
    prefix: str = "",
    demo: bool | None = None,
    api: bool = True,
    websocket: bool = True,
    health: bool | None = None,
    admin: bool | None = None,
    metrics: bool | None = None,
    owns_hub: bool = True,
    endpoint: WebSocketEndpoint | None = None,
) -> None:
    """Serve ``hub`` from ``app`` (an existing aiohttp application) under ``prefix``.

    ``demo``, ``health``, ``admin`` and ``metrics`` default to the hub's
    ``demo.enabled``, ``health.enabled``, ``admin.enabled`` and ``prometheus.enabled``;
    ``endpoint``: the WebSocket endpoint another door of the same hub uses.
    """
    quiet_peer_errors()
    config = hub.config
    app[HUB_KEY] = hub
    endpoint = app[ENDPOINT_KEY] = endpoint or WebSocketEndpoint(hub)
    if websocket and not hub.config.websocket.disabled:
        app.router.add_get(prefix + endpoint.path, websocket_route(endpoint))
    if websocket and hub.config.uni_websocket.enabled:
        uni = hub.config.uni_websocket.handler_prefix
        app.router.add_get(prefix + uni, websocket_route(endpoint, unidirectional=True))
    if websocket:
        # SSE, HTTP streaming, /emulation and the uni_* streams, each when enabled.
        Streams(hub).add_routes(app, prefix)
    if api:
        app.router.add_post(prefix + "/api/{method}", HttpApi(hub).handle)
    if config.health.enabled if health is None else health:
        app.router.add_get(prefix + config.health.handler_prefix, _health)
    app.router.add_get(f"{prefix}/ready", _ready)
    if config.prometheus.enabled if metrics is None else metrics:
        hub.counters.timing = True  # durations are measured only when someone reads them
        app.router.add_get(prefix + config.prometheus.handler_prefix, metrics_handler)
    with_demo = config.demo.enabled if demo is None else demo
    if with_demo:
        app.router.add_get(f"{prefix}/", _demo_page)
    if config.admin.enabled if admin is None else admin:
        # The admin UI takes / where there is no demo page (as Centrifugo's does).
        Admin(hub, HttpApi(hub)).add_routes(app, prefix=prefix, root=not with_demo)
    if owns_hub:

        async def start_hub(_: web.Application) -> None:
            await hub.start()
            await start_consumers(hub)

        async def close_hub(_: web.Application) -> None:
            await stop_consumers(hub)
            await endpoint.close_hub()

        app.on_startup.append(start_hub)
        app.on_shutdown.append(close_hub)


def create_app(
    hub: Hub, *, api: bool = True, endpoint: WebSocketEndpoint | None = None
) -> web.Application:
    """The public application (it owns the hub's lifecycle); ``api=False`` when an
    internal port serves the API (and the admin UI, unless ``admin.external``)."""
    app = web.Application()
    admin = hub.config.admin
    attach(
        app,
        hub,
        api=api,
        admin=admin.enabled and (api or admin.external),
        metrics=hub.config.prometheus.enabled and api,
        endpoint=endpoint,
    )
    return app


def create_internal_app(hub: Hub) -> web.Application:
    """The application of the internal port: the API, /health and the admin UI."""
    app = web.Application()
    admin = hub.config.admin
    attach(
        app,
        hub,
        demo=False,
        websocket=False,
        admin=admin.enabled and not admin.external,
        metrics=hub.config.prometheus.enabled,
        owns_hub=False,
    )
    return app


def runner_options(server: HttpServerConfig) -> dict[str, Any]:
    """aiohttp ``AppRunner`` options enforcing the handshake limits.

    aiohttp's keep-alive timer is the only clock running before a request is
    complete, so it bounds a handshake sent slowly (slowloris) as well as an
    idle HTTP connection.
    """
    return {
        "keepalive_timeout": server.handshake_timeout,
        "max_headers": server.max_header_count,
        "max_field_size": server.max_header_size,
        "max_line_size": server.max_header_size,
        "access_log": None,
    }


async def _health(_: web.Request) -> web.Response:
    return web.json_response({})


async def _ready(request: web.Request) -> web.Response:
    """Readiness: a node whose engine (Redis) cannot be reached should get no traffic."""
    if request.app[HUB_KEY].engine.available:
        return web.json_response({})
    return web.json_response({"error": "engine unavailable"}, status=503)


async def _demo_page(_: web.Request) -> web.Response:
    page = resources.files("hubbub.server").joinpath("static", DEMO_PAGE).read_text("utf-8")
    return web.Response(text=page, content_type="text/html")
