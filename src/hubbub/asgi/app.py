"""The ASGI application: the WebSocket endpoint, the HTTP API and /health of one hub.

Rule: paths are relative to where the application is mounted (``root_path``),
so ``app.mount("/rt", create_asgi_app(hub))`` serves ``/rt/connection/websocket``
(``websocket.handler_prefix``), ``POST /rt/api/<method>``, ``GET /rt/health``
and ``GET /rt/ready`` (503 while the engine is unreachable).
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
from collections.abc import AsyncIterator
from typing import Any

from hubbub.asgi.websocket import Receive, Scope, Send, scope_headers, serve_websocket
from hubbub.hub.hub import Hub
from hubbub.server.api import MAX_BODY, ApiAnswer, HttpApi

log = logging.getLogger("hubbub.asgi")

API_PREFIX = "/api/"


class HubAsgiApp:
    """An ASGI 3 application serving ``hub``."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.api = HttpApi(hub)
        websocket = hub.config.websocket
        self.websocket_path = None if websocket.disabled else websocket.handler_prefix
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
                await _respond(send, ApiAnswer.refusal(503, "the hub is not running"))
            else:
                await send({"type": "websocket.close", "code": 1013})  # try again later
            return
        path = _relative_path(scope)
        if kind == "websocket":
            if path != self.websocket_path:
                await send({"type": "websocket.close", "code": 1008})  # HTTP 403
                return
            task = asyncio.current_task()
            assert task is not None
            self._connections.add(task)
            try:
                await serve_websocket(self.hub, scope, receive, send)
            finally:
                self._connections.discard(task)
        elif kind == "http":
            await self._http(path, scope, receive, send)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the hub once, whoever asks first (concurrent callers wait for it).

        If it fails, every later call raises the same error: ``Hub.start`` cannot
        be tried twice, so the application must be restarted.
        """
        if self._started is None:
            self._started = asyncio.ensure_future(self.hub.start())
            self._started.add_done_callback(_log_failure)
        await asyncio.shield(self._started)

    async def close(self) -> None:
        """Disconnect every client with 3001 and stop the hub; wait for the connections."""
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
        elif path == self.websocket_path:
            answer = ApiAnswer.refusal(426, "this endpoint speaks WebSocket only")
        else:
            answer = ApiAnswer.refusal(404, "not found")
        await _respond(send, answer)

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
        body = await _read_body(receive)
        if body is None:
            return ApiAnswer.refusal(413, f"the body is over {MAX_BODY} bytes")
        return await self.api.answer(admitted, body)


def _log_failure(started: asyncio.Future[None]) -> None:
    if not started.cancelled() and started.exception() is not None:
        exc = started.exception()
        log.error("the hub did not start (%s: %s): every request is refused with 503 "
                  "until the application restarts", type(exc).__name__, exc)  # fmt: skip


async def _respond(send: Send, answer: ApiAnswer) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (b"content-type", answer.content_type.encode()),
                (b"content-length", str(len(answer.body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer.body})


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None past ``MAX_BODY`` (chunked bodies have no length)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


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
