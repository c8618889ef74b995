"""The HTTP endpoints of clients without a WebSocket: emulation and unidirectional streams.

Routes (Centrifugo v6 paths and keys; each only when its ``enabled`` is true):

    POST /connection/http_stream   connect command in the body; replies and pushes
                                   stream back as JSON lines, or Protobuf messages
                                   (``Content-Type: application/octet-stream``)
    GET  /connection/sse           connect command in ``cf_connect``; Server-Sent Events
    POST /emulation                ``{"session", "node", "data"}`` (or a Protobuf
                                   EmulationRequest): the commands of an http_stream
                                   or sse session, answered 204; replies go down its stream
    GET|POST /connection/uni_sse          a bare connect request (``cf_connect`` or the
    POST     /connection/uni_http_stream  body); bare pushes stream back, ``{}`` pings

Rule 1: a request is judged (origin, size, a decodable connect) while aiohttp
owns it, so refusals are plain HTTP answers; then hubbub takes the socket over
and a ``StreamConnection`` (streamconn.py) carries the session.
Rule 2: ``/emulation`` finds the session by its secret session id on this node.
A session id this node does not have is answered 204 when the request names
this node (the session ended: its stream is closed already) and 404 when it
names another one: the SDK then reconnects (routing across nodes is not done).
"""

from __future__ import annotations

import logging
from typing import Any, cast

import msgspec
from aiohttp import web

from hubbub.hub.hub import Hub
from hubbub.protocol.codec import JSON, UNI_JSON, Codec, FrameError
from hubbub.protocol.messages import Command, ConnectRequest
from hubbub.protocol.protobuf import PROTOBUF, decode_emulation_request
from hubbub.server.api import read_body
from hubbub.server.streamconn import Framing, StreamConnection
from hubbub.server.websocket import TakenOver, take_over
from hubbub.websocket.handshake import origin_allowed

log = logging.getLogger("hubbub.streams")

_PROTOBUF_TYPE = "application/octet-stream"
_CONTENT_TYPES = {
    Framing.EVENTS: "text/event-stream; charset=utf-8",
    Framing.LINES: "application/json",
    Framing.DELIMITED: _PROTOBUF_TYPE,
}


class EmulationRequest(msgspec.Struct):
    session: str
    data: str
    node: str = ""


_emulation_decoder = msgspec.json.Decoder(EmulationRequest)
_connect_decoder = msgspec.json.Decoder(ConnectRequest)


class Streams:
    """The streaming endpoints of one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.config = hub.config

    def add_routes(self, app: web.Application, prefix: str = "") -> None:
        config = self.config
        router = app.router
        routes: list[tuple[str, str, Any]] = []
        if config.http_stream.enabled:
            routes.append(("POST", config.http_stream.handler_prefix, self.http_stream))
        if config.sse.enabled:
            path = config.sse.handler_prefix
            routes += [("GET", path, self.sse), ("POST", path, self.sse)]
        if config.http_stream.enabled or config.sse.enabled:
            routes.append(("POST", config.emulation.handler_prefix, self.emulation))
        if config.uni_sse.enabled:
            path = config.uni_sse.handler_prefix
            routes += [("GET", path, self.uni_sse), ("POST", path, self.uni_sse)]
        if config.uni_http_stream.enabled:
            routes.append(("POST", config.uni_http_stream.handler_prefix, self.uni_http_stream))
        for method, path, handler in routes:
            router.add_route(method, prefix + path, handler)
        for path in dict.fromkeys(path for _, path, _ in routes):
            router.add_route("OPTIONS", prefix + path, self.preflight)

    # --- bidirectional emulation -------------------------------------------------------

    async def http_stream(self, request: web.Request) -> web.StreamResponse:
        self._check_origin(request)
        body = await read_body(request, self.config.http_stream.max_request_body_size)
        protobuf = (
            request.content_type == _PROTOBUF_TYPE or request.query.get("cf_protocol") == "protobuf"
        )
        codec: Codec = PROTOBUF if protobuf else JSON
        framing = Framing.DELIMITED if protobuf else Framing.LINES
        return self._stream(request, body, codec, framing, emulation=True)

    async def sse(self, request: web.Request) -> web.StreamResponse:
        self._check_origin(request)
        limit = self.config.sse.max_request_body_size
        body = await self._connect_data(request, limit)
        return self._stream(request, body, JSON, Framing.EVENTS, emulation=True)

    async def emulation(self, request: web.Request) -> web.Response:
        self._check_origin(request)
        body = await read_body(request, self.config.emulation.max_request_body_size)
        try:
            if request.content_type == _PROTOBUF_TYPE:
                fields = decode_emulation_request(body)
                session_id = cast(str, fields.get("session", ""))
                node = cast(str, fields.get("node", ""))
                frame: bytes | str = cast(bytes, fields.get("data", b""))
            else:
                parsed = _emulation_decoder.decode(body)
                session_id, node, frame = parsed.session, parsed.node, parsed.data
        except (msgspec.DecodeError, FrameError) as exc:
            raise _refused(web.HTTPBadRequest, f"malformed emulation request: {exc}") from None
        session = self.hub.emulated.get(session_id)
        if session is None:
            if node and node != self.hub.node_id:
                raise _refused(web.HTTPNotFound, "no such session on this node")
            return self._answer(request, web.Response(status=204))
        transport = session.transport
        if isinstance(transport, StreamConnection) and not transport.deliver(frame):
            raise _refused(web.HTTPTooManyRequests, "too many commands waiting")
        return self._answer(request, web.Response(status=204))

    # --- unidirectional ------------------------------------------------------------------

    async def uni_sse(self, request: web.Request) -> web.StreamResponse:
        self._check_origin(request)
        data = await self._connect_data(request, self.config.uni_sse.max_request_body_size)
        return self._stream(
            request, _connect_command(data), UNI_JSON, Framing.EVENTS, unidirectional=True
        )

    async def uni_http_stream(self, request: web.Request) -> web.StreamResponse:
        self._check_origin(request)
        data = await read_body(request, self.config.uni_http_stream.max_request_body_size)
        return self._stream(
            request, _connect_command(data), UNI_JSON, Framing.LINES, unidirectional=True
        )

    # --- shared parts --------------------------------------------------------------------

    async def preflight(self, request: web.Request) -> web.Response:
        """CORS preflight of a browser on an allowed origin."""
        self._check_origin(request)
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
        return self._answer(request, response)

    def _check_origin(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if not origin_allowed(origin, request.host, self.config.client.allowed_origins):
            log.info("refused origin %s on %s", origin, request.path)
            raise _refused(web.HTTPForbidden, "origin not allowed")

    def _answer(self, request: web.Request, response: web.Response) -> web.Response:
        for name, value in _cors(request):
            response.headers[name] = value
        return response

    async def _connect_data(self, request: web.Request, limit: int) -> bytes:
        """The connect of an SSE request: the ``cf_connect`` parameter, or the POST body."""
        if request.method == "POST":
            return await read_body(request, limit)
        data = request.query.get("cf_connect", "").encode()
        if len(data) > limit:
            raise _refused(web.HTTPRequestEntityTooLarge, "cf_connect too large")
        return data

    def _stream(
        self,
        request: web.Request,
        first: bytes,
        codec: Codec,
        framing: Framing,
        *,
        emulation: bool = False,
        unidirectional: bool = False,
    ) -> web.StreamResponse:
        """Take the socket over, answer 200 and start the session with ``first``."""
        if not first:
            raise _refused(web.HTTPBadRequest, "a connect request is required")
        socket = request.transport
        if socket is None or socket.is_closing():
            return TakenOver(200)  # the peer left meanwhile
        headers = {name.lower(): value for name, value in request.headers.items()}
        take_over(request)  # a client sends nothing after its request: nothing is left
        head = [
            b"HTTP/1.1 200 OK",
            b"Content-Type: " + _CONTENT_TYPES[framing].encode(),
            b"Cache-Control: no-cache, no-store",
            b"Transfer-Encoding: chunked",
            b"Connection: close",
            b"X-Accel-Buffering: no",  # nginx: pass each chunk on at once
            *(f"{name}: {value}".encode("latin-1") for name, value in _cors(request)),
        ]
        socket.write(b"\r\n".join(head) + b"\r\n\r\n")
        connection = StreamConnection(
            self.hub,
            cast(Any, socket),
            framing=framing,
            codec=codec,
            headers=headers,
            emulation=emulation,
            unidirectional=unidirectional,
        )
        socket.set_protocol(connection)
        connection.deliver(first)  # the connect (a fresh inbox has room)
        return TakenOver(200)


def _connect_command(data: bytes) -> bytes:
    """A unidirectional client's bare ConnectRequest as a connect command."""
    if not data:
        return b""
    try:
        request = _connect_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise _refused(web.HTTPBadRequest, f"malformed connect request: {exc}") from None
    return msgspec.json.encode(Command(id=1, connect=request))


def _cors(request: web.Request) -> list[tuple[str, str]]:
    """CORS headers for a browser's request (its origin was allowed already)."""
    origin = request.headers.get("Origin")
    if not origin:
        return []
    return [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Credentials", "true"),
        ("Vary", "Origin"),
    ]


def _refused(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=message + "\n")
