"""The ASGI application: every endpoint of one hub, as the aiohttp app serves them.

Rule: paths are relative to where the application is mounted (``root_path``),
so ``app.mount("/rt", create_asgi_app(hub))`` serves ``/rt/connection/websocket``
(``websocket.handler_prefix``), ``POST /rt/api/<method>``, ``GET /rt/health``
and ``GET /rt/ready`` (503 while the engine is unreachable), and, each when
enabled, ``uni_websocket``, HTTP streaming, SSE, ``/emulation``, ``uni_sse``
and ``uni_http_stream`` (asgi/streams.py, with server/streamgate.py's rules).
The hub starts on first use, because frameworks do not pass lifespan events to
mounted applications; for a graceful shutdown (every client closed with 3001,
so they reconnect elsewhere) run ``lifespan`` (or ``running()``) from the
parent application's lifespan. Mounted as the root application, the ASGI
lifespan events start and stop the hub themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from hubbub.asgi.http import read_body, respond
from hubbub.asgi.streams import serve_stream, stream_request
from hubbub.asgi.websocket import Receive, Scope, Send, scope_headers, serve_websocket
from hubbub.hub.hub import Hub
from hubbub.server.api import MAX_BODY, HttpApi
from hubbub.server.consuming import start_consumers, stop_consumers
from hubbub.server.http_answer import ApiAnswer
from hubbub.server.streamgate import StreamGate

log = logging.getLogger("hubbub.asgi")

API_PREFIX = "/api/"


class HubAsgiApp:
    """An ASGI 3 application serving ``hub``."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.api = HttpApi(hub)
        config = hub.config
        self.websocket_path = None if config.websocket.disabled else config.websocket.handler_prefix
        uni = config.uni_websocket
        self.uni_websocket_path = uni.handler_prefix if uni.enabled else None
        # SSE, HTTP streaming, /emulation and the uni streams, each when enabled.
        self.gate = StreamGate(hub)
        self.streams = {(method, path): endpoint for method, path, endpoint in self.gate.routes()}
        self._started: asyncio.Future[None] | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        try:
            await self.start()
        except Exception:  # the hub could not start (logged once): refuse, never a traceback
            if kind == "http":
                await respond(send, ApiAnswer.refusal(503, "the hub is not running"))
            else:
                await send({"type": "websocket.close", "code": 1013})  # try again later
            return
        path = _relative_path(scope)
        if kind == "websocket":
            if path == self.websocket_path:
                await self._tracked(serve_websocket(self.hub, scope, receive, send))
            elif path == self.uni_websocket_path:
                uni = serve_websocket(self.hub, scope, receive, send, unidirectional=True)
                await self._tracked(uni)
            else:
                await send({"type": "websocket.close", "code": 1008})  # HTTP 403
        elif kind == "http":
            endpoint = self.streams.get((scope["method"], path))
            if endpoint is not None:
                await self._tracked(serve_stream(self.gate, endpoint, scope, receive, send))
            else:
                await self._http(path, scope, receive, send)

    async def _tracked(self, connection: Coroutine[Any, Any, None]) -> None:
        """Run one client's connection; ``close`` waits for those still running."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await connection
        finally:
            self._connections.discard(task)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the hub once, whoever asks first (concurrent callers wait for it).

        If it fails, every later call raises the same error: ``Hub.start`` cannot
        be tried twice, so the application must be restarted.
        """
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
            self._started.add_done_callback(_log_failure)
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        await self.hub.start()
        await start_consumers(self.hub)

    async def close(self) -> None:
        """Disconnect every client with 3001 and stop the hub; wait for the connections."""
        await stop_consumers(self.hub)
        await self.hub.close()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=5.0)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """``async with realtime.running():`` inside a parent application's lifespan."""
        await self.start()
        try:
            yield  # nothing: Starlette would take a yielded value for lifespan state
        finally:
            await self.close()

    def lifespan(self, app: object) -> contextlib.AbstractAsyncContextManager[None]:
        """For ``FastAPI(lifespan=realtime.lifespan)`` / ``Starlette(lifespan=...)``."""
        return self.running()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- HTTP ----------------------------------------------------------------------------

    async def _http(self, path: str, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if path == "/health" and method == "GET":
            answer = ApiAnswer(200, b"{}")
        elif path == "/ready" and method == "GET":  # 503 while the engine is unreachable
            ready = self.hub.engine.available
            answer = (
                ApiAnswer(200, b"{}")
                if ready
                else ApiAnswer(503, b'{"error":"engine unavailable"}')
            )
        elif path.startswith(API_PREFIX) and method == "POST":
            answer = await self._api(path[len(API_PREFIX) :], scope, receive)
        elif path in (self.websocket_path, self.uni_websocket_path):
            answer = ApiAnswer.refusal(426, "this endpoint speaks WebSocket only")
        elif method == "OPTIONS" and any(path == p for _, p in self.streams):
            request, _ = stream_request(scope)  # a browser's CORS preflight
            answer = self.gate.refuse_origin(request) or self.gate.preflight(request)
        else:
            answer = ApiAnswer.refusal(404, "not found")
        await respond(send, answer)

    async def _api(self, method: str, scope: Scope, receive: Receive) -> ApiAnswer:
        headers = scope_headers(scope)
        length = headers.get("content-length")
        admitted = self.api.admit(
            method,
            lambda name: headers.get(name.lower()),
            int(length) if length and length.isdigit() else None,
        )
        if isinstance(admitted, ApiAnswer):
            return admitted
        body = await read_body(receive, MAX_BODY)
        if body is None:
            return ApiAnswer.refusal(413, f"the body is over {MAX_BODY} bytes")
        return await self.api.answer(admitted, body)


def _log_failure(started: asyncio.Future[None]) -> None:
    if not started.cancelled() and started.exception() is not None:
        exc = started.exception()
        log.error("the hub did not start (%s: %s): every request is refused with 503 "
                  "until the application restarts", type(exc).__name__, exc)  # fmt: skip


def _relative_path(scope: Scope) -> str:
    """The path below the mount point (servers and frameworks differ on stripping it)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path or "/"


def create_asgi_app(hub: Hub) -> HubAsgiApp:
    """An ASGI application serving ``hub``'s WebSocket endpoint and HTTP API."""
    return HubAsgiApp(hub)


__all__ = ["HubAsgiApp", "create_asgi_app"]
