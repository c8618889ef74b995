"""The streaming endpoints' rules, without a web framework: what each request is answered.

Endpoints (Centrifugo v6 paths and keys; each only when its ``enabled`` is true):

    POST /connection/http_stream   connect command in the body; replies and pushes
                                   stream back as JSON lines, or Protobuf messages
                                   (``Content-Type: application/octet-stream``)
    GET  /connection/sse           connect command in ``cf_connect``; Server-Sent Events
    POST /emulation                ``{"session", "node", "data"}`` (or a Protobuf
                                   EmulationRequest): the commands of an http_stream
                                   or sse session, answered 204; replies go down its stream
    GET|POST /connection/uni_sse          a bare connect request (``cf_connect`` or the
    POST     /connection/uni_http_stream  body); bare pushes stream back, ``{}`` pings

Rule 1: one implementation for every framework. aiohttp (server/streams.py) and
ASGI (asgi/streams.py) turn a request into a ``StreamRequest`` and read its body
within ``body_limit`` (413 beyond); ``StreamGate`` decides everything else
(origin, size, a decodable connect, the codec and framing, the response headers)
and answers a refusal (``ApiAnswer``: a plain HTTP status and message) or a
``StreamStart``, which the framework's transport then carries.
Rule 2: ``/emulation`` goes through ``hub.emulation`` (hub/emulation.py), which
delivers the commands here or on the node that holds the session.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import cast

import msgspec

from hubbub.hub.hub import Hub
from hubbub.protocol.codec import JSON, UNI_JSON, Codec, FrameError
from hubbub.protocol.messages import Command, ConnectRequest
from hubbub.protocol.protobuf import PROTOBUF, decode_emulation_request
from hubbub.server.http_answer import ApiAnswer
from hubbub.server.streamconn import Framing
from hubbub.websocket.handshake import origin_allowed

log = logging.getLogger("hubbub.streams")

PROTOBUF_TYPE = "application/octet-stream"
_CONTENT_TYPES = {
    Framing.EVENTS: "text/event-stream; charset=utf-8",
    Framing.LINES: "application/json",
    Framing.DELIMITED: PROTOBUF_TYPE,
}


class Endpoint(enum.Enum):
    HTTP_STREAM = "http_stream"
    SSE = "sse"
    EMULATION = "emulation"
    UNI_SSE = "uni_sse"
    UNI_HTTP_STREAM = "uni_http_stream"


class StreamRequest(msgspec.Struct, frozen=True):
    """What the rules need of a request: ``header(name)`` and ``query(name)`` read
    it (header names are matched without regard to case)."""

    method: str
    header: Callable[[str], str | None]
    query: Callable[[str], str | None]

    @property
    def content_type(self) -> str:
        value = self.header("Content-Type") or ""
        return value.split(";", 1)[0].strip().lower()

    @property
    def reads_body(self) -> bool:
        """A GET carries its connect in ``cf_connect``; a POST in its body."""
        return self.method == "POST"


class StreamStart(msgspec.Struct, frozen=True):
    """A stream to open: the response's headers, then a session that starts with
    the connect command ``first``."""

    first: bytes
    codec: Codec
    framing: Framing
    emulation: bool
    unidirectional: bool
    headers: list[tuple[str, str]]


class EmulationRequest(msgspec.Struct):
    session: str
    data: str
    node: str = ""


_emulation_decoder = msgspec.json.Decoder(EmulationRequest)
_connect_decoder = msgspec.json.Decoder(ConnectRequest)


class StreamGate:
    """The streaming endpoints of one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.config = hub.config

    def routes(self) -> list[tuple[str, str, Endpoint]]:
        """(method, path, endpoint) of every enabled endpoint (paths below the mount)."""
        config = self.config
        routes: list[tuple[str, str, Endpoint]] = []
        if config.http_stream.enabled:
            routes.append(("POST", config.http_stream.handler_prefix, Endpoint.HTTP_STREAM))
        if config.sse.enabled:
            path = config.sse.handler_prefix
            routes += [("GET", path, Endpoint.SSE), ("POST", path, Endpoint.SSE)]
        if config.http_stream.enabled or config.sse.enabled:
            routes.append(("POST", config.emulation.handler_prefix, Endpoint.EMULATION))
        if config.uni_sse.enabled:
            path = config.uni_sse.handler_prefix
            routes += [("GET", path, Endpoint.UNI_SSE), ("POST", path, Endpoint.UNI_SSE)]
        if config.uni_http_stream.enabled:
            path = config.uni_http_stream.handler_prefix
            routes.append(("POST", path, Endpoint.UNI_HTTP_STREAM))
        return routes

    def body_limit(self, endpoint: Endpoint) -> int:
        config = self.config
        return {
            Endpoint.HTTP_STREAM: config.http_stream.max_request_body_size,
            Endpoint.SSE: config.sse.max_request_body_size,
            Endpoint.EMULATION: config.emulation.max_request_body_size,
            Endpoint.UNI_SSE: config.uni_sse.max_request_body_size,
            Endpoint.UNI_HTTP_STREAM: config.uni_http_stream.max_request_body_size,
        }[endpoint]

    def refuse_origin(self, request: StreamRequest) -> ApiAnswer | None:
        """403 for a browser page of a foreign origin (checked before the body is read)."""
        origin = request.header("Origin")
        if origin_allowed(origin, request.header("Host"), self.config.client.allowed_origins):
            return None
        log.info("refused origin %s on a stream endpoint", origin)
        return ApiAnswer.refusal(403, "origin not allowed")

    def start(
        self, endpoint: Endpoint, request: StreamRequest, body: bytes
    ) -> StreamStart | ApiAnswer:
        """The stream a request opens (its body read already), or its refusal."""
        if endpoint is Endpoint.HTTP_STREAM:
            protobuf = (
                request.content_type == PROTOBUF_TYPE or request.query("cf_protocol") == "protobuf"
            )
            codec: Codec = PROTOBUF if protobuf else JSON
            framing = Framing.DELIMITED if protobuf else Framing.LINES
            return self._start(request, body, codec, framing, emulation=True)
        data = body if request.reads_body else (request.query("cf_connect") or "").encode()
        if len(data) > self.body_limit(endpoint):
            return ApiAnswer.refusal(413, "cf_connect too large")
        if not data:
            return ApiAnswer.refusal(400, "a connect request is required")
        if endpoint is Endpoint.SSE:
            return self._start(request, data, JSON, Framing.EVENTS, emulation=True)
        try:
            first = connect_command(data)
        except ValueError as exc:
            return ApiAnswer.refusal(400, str(exc))
        framing = Framing.EVENTS if endpoint is Endpoint.UNI_SSE else Framing.LINES
        return self._start(request, first, UNI_JSON, framing, unidirectional=True)

    def _start(
        self,
        request: StreamRequest,
        first: bytes,
        codec: Codec,
        framing: Framing,
        *,
        emulation: bool = False,
        unidirectional: bool = False,
    ) -> StreamStart | ApiAnswer:
        if not first:
            return ApiAnswer.refusal(400, "a connect request is required")
        headers = [
            ("Content-Type", _CONTENT_TYPES[framing]),
            ("Cache-Control", "no-cache, no-store"),
            ("X-Accel-Buffering", "no"),  # nginx: pass each chunk on at once
            *cors(request),
        ]
        return StreamStart(first, codec, framing, emulation, unidirectional, headers)

    async def emulate(self, request: StreamRequest, body: bytes) -> ApiAnswer:
        """``POST /emulation``: hand the commands to their session, here or on its node."""
        try:
            if request.content_type == PROTOBUF_TYPE:
                fields = decode_emulation_request(body)
                session_id = cast(str, fields.get("session", ""))
                node = cast(str, fields.get("node", ""))
                frame: bytes | str = cast(bytes, fields.get("data", b""))
            else:
                parsed = _emulation_decoder.decode(body)
                session_id, node, frame = parsed.session, parsed.node, parsed.data
        except (msgspec.DecodeError, FrameError) as exc:
            return ApiAnswer.refusal(400, f"malformed emulation request: {exc}")
        outcome = await self.hub.emulation.route(session_id, node, frame)
        status = outcome.status
        if status == 204:
            return with_cors(ApiAnswer(204, b"", "text/plain"), request)
        messages = {
            404: "no such node: connect again",
            429: "too many commands waiting",
            503: "the node of this session did not answer",
        }
        return with_cors(ApiAnswer.refusal(status, messages[status]), request)

    def preflight(self, request: StreamRequest) -> ApiAnswer:
        """CORS preflight of a browser on an allowed origin."""
        allow = (
            ("Access-Control-Allow-Methods", "GET, POST, OPTIONS"),
            ("Access-Control-Allow-Headers", "Content-Type"),
            ("Access-Control-Max-Age", "600"),
        )
        return with_cors(ApiAnswer(204, b"", "text/plain", allow), request)


def connect_command(data: bytes | str) -> bytes:
    """A unidirectional client's bare ConnectRequest as a connect command
    (``ValueError`` when it is not a connect request)."""
    try:
        request = _connect_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"malformed connect request: {exc}") from None
    return msgspec.json.encode(Command(id=1, connect=request))


def cors(request: StreamRequest) -> list[tuple[str, str]]:
    """CORS headers for a browser's request (its origin was allowed already)."""
    origin = request.header("Origin")
    if not origin:
        return []
    return [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Credentials", "true"),
        ("Vary", "Origin"),
    ]


def with_cors(answer: ApiAnswer, request: StreamRequest) -> ApiAnswer:
    return msgspec.structs.replace(answer, headers=(*answer.headers, *cors(request)))
