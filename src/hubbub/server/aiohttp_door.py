"""The WebSocket endpoint's aiohttp door: a route handler that takes the socket over.

Rule: this module (with app.py, api.py, streams.py, keys.py and logs.py) is where
the server meets aiohttp; ``hubbub serve`` imports it only when the first
request that is not a WebSocket upgrade arrives (the listener upgrades those
itself, server/front.py), so a node starts without loading aiohttp.

``websocket_route`` makes the handler ``attach()`` registers for applications
that embed hubbub (and for an upgrade arriving on an HTTP keep-alive connection
aiohttp already serves). aiohttp has parsed the request head; the handler
judges it with the same ``WebSocketEndpoint.decide`` as the listener, then
takes the transport over (``take_over``) and ends without aiohttp writing a
response or reading another byte (``TakenOver``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

from hubbub.server.websocket import WebSocketEndpoint
from hubbub.websocket.handshake import HEAD_END, Refusal, parse_head

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def websocket_route(endpoint: WebSocketEndpoint, *, unidirectional: bool = False) -> Handler:
    """The aiohttp handler of the client protocol's path (``unidirectional``: of
    ``uni_websocket.handler_prefix``)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        raw = _raw_head(request)
        head = parse_head(raw)
        decision = (
            endpoint.decide(head, unidirectional=unidirectional, peer=lambda: request.remote or "")
            if head is not None
            else Refusal(400, "malformed request")
        )
        if isinstance(decision, Refusal):
            return web.Response(
                status=decision.status, text=decision.message + "\n", headers=decision.headers
            )
        transport = request.transport
        if transport is None or transport.is_closing():
            return TakenOver()  # the peer left before the answer
        rest = take_over(request)
        endpoint.open(transport, raw, decision, rest)
        return TakenOver()

    return handle


def _raw_head(request: web.BaseRequest) -> bytes:
    """The request head as it came, rebuilt from aiohttp's parse (for hooks' headers)."""
    version = request.version
    lines = [f"{request.method} {request.raw_path} HTTP/{version.major}.{version.minor}".encode()]
    lines += [name + b": " + value for name, value in request.raw_headers]
    return b"\r\n".join(lines) + HEAD_END


class _Tail:
    """Receives the bytes aiohttp read past the upgrade request's head."""

    def __init__(self) -> None:
        self.data = b""

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data += data
        return False, b""

    def feed_eof(self) -> None:
        pass


def take_over(request: web.BaseRequest) -> bytes:
    """Detach aiohttp from the connection of ``request``; return what it read past the head.
    (Also the streams' way to own their socket: server/streams.py.)

    aiohttp has no public "give me the socket" call, so this uses the same
    hooks its own WebSocketResponse uses, all without a leading underscore:
    ``request.protocol`` (the connection's RequestHandler), its ``set_parser``
    (aiohttp feeds the bytes it buffered after an upgrade request to the given
    parser; ours just keeps them), its ``transport`` attribute (set to None,
    aiohttp can neither write to nor close the socket any more) and the asyncio
    protocol call ``connection_lost`` (aiohttp forgets the connection: its server
    stops tracking it, its keep-alive timer stops, its request loop ends once
    the handler returns). Checked by tests/test_embedding.py against the
    pinned aiohttp.
    """
    protocol = request.protocol
    tail = _Tail()
    protocol.set_parser(cast(Any, tail))
    protocol.transport = None
    protocol.connection_lost(None)
    return tail.data


class TakenOver(web.StreamResponse):
    """What the handler returns once hubbub owns the socket: aiohttp sends nothing.

    Status 101 (200 for a stream, server/streams.py) is what an access log should show.
    """

    def __init__(self, status: int = 101) -> None:
        super().__init__(status=status)

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None
