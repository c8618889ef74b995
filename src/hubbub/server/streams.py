"""The streaming endpoints in aiohttp: HTTP streaming, SSE, /emulation, uni_sse, uni_http_stream.

Rule: the rules live in server/streamgate.py (shared with ASGI); this module
only adapts aiohttp to them. A request is judged while aiohttp owns it, so
refusals are plain HTTP answers; then hubbub takes the socket over, writes the
response head itself and a ``StreamConnection`` (streamconn.py) carries the
session.
"""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web

from hubbub.hub.hub import Hub
from hubbub.server.aiohttp_door import TakenOver, take_over
from hubbub.server.api import read_body
from hubbub.server.http_answer import ApiAnswer
from hubbub.server.streamconn import StreamConnection
from hubbub.server.streamgate import Endpoint, StreamGate, StreamRequest, StreamStart


class Streams:
    """The streaming endpoints of one hub, as aiohttp routes."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.gate = StreamGate(hub)

    def add_routes(self, app: web.Application, prefix: str = "") -> None:
        routes = self.gate.routes()
        for method, path, endpoint in routes:
            app.router.add_route(method, prefix + path, self._handler(endpoint))
        for path in dict.fromkeys(path for _, path, _ in routes):
            app.router.add_route("OPTIONS", prefix + path, self.preflight)

    def _handler(self, endpoint: Endpoint) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.handle(endpoint, request)

        return handle

    async def handle(self, endpoint: Endpoint, request: web.Request) -> web.StreamResponse:
        plain = _plain(request)
        refusal = self.gate.refuse_origin(plain)
        if refusal is not None:
            return _response(refusal)
        body = await read_body(request, self.gate.body_limit(endpoint)) if plain.reads_body else b""
        if endpoint is Endpoint.EMULATION:
            return _response(await self.gate.emulate(plain, body))
        started = self.gate.start(endpoint, plain, body)
        if isinstance(started, ApiAnswer):
            return _response(started)
        return self._stream(request, started)

    async def preflight(self, request: web.Request) -> web.Response:
        plain = _plain(request)
        return _response(self.gate.refuse_origin(plain) or self.gate.preflight(plain))

    def _stream(self, request: web.Request, start: StreamStart) -> web.StreamResponse:
        """Take the socket over, answer 200 and start the session with the connect."""
        socket = request.transport
        if socket is None or socket.is_closing():
            return TakenOver(200)  # the peer left meanwhile
        headers = {name.lower(): value for name, value in request.headers.items()}
        take_over(request)  # a client sends nothing after its request: nothing is left
        head = [
            b"HTTP/1.1 200 OK",
            *(f"{name}: {value}".encode("latin-1") for name, value in start.headers),
            b"Transfer-Encoding: chunked",
            b"Connection: close",
        ]
        socket.write(b"\r\n".join(head) + b"\r\n\r\n")
        connection = StreamConnection(
            self.hub,
            cast(Any, socket),
            framing=start.framing,
            codec=start.codec,
            headers=headers,
            emulation=start.emulation,
            unidirectional=start.unidirectional,
        )
        socket.set_protocol(connection)
        connection.deliver(start.first)  # the connect (a fresh queue has room)
        return TakenOver(200)


def _plain(request: web.Request) -> StreamRequest:
    return StreamRequest(request.method, request.headers.get, request.query.get)


def _response(answer: ApiAnswer) -> web.Response:
    response = web.Response(status=answer.status, body=answer.body or None)
    if answer.body:
        response.content_type = answer.content_type.split(";")[0]
        if "charset=" in answer.content_type:
            response.charset = answer.content_type.split("charset=")[1]
    for name, value in answer.headers:
        response.headers[name] = value
    return response
