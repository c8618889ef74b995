"""The WebSocket endpoint: aiohttp does the handshake and reads frames; hubbub writes.

Rule: outgoing frames are written straight to the connection's transport as
unmasked text frames, synchronously, by the hub's flush (one write per
connection per loop turn). aiohttp's own ``send_str`` is a coroutine per frame,
which would cost a task or an await per subscriber on the hot path. When
permessage-deflate is negotiated, frames go through aiohttp's writer instead.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from hubbub.codes import Disconnect, DisconnectInfo
from hubbub.hub.hub import Hub
from hubbub.hub.transport import Shared
from hubbub.server.address import client_address
from hubbub.server.keys import HUB_KEY
from hubbub.server.masking import check_client_masking
from hubbub.server.wsconn import MAX_REASON, write_text_frame
from hubbub.websocket.frames import cut_reason

log = logging.getLogger("hubbub.websocket")

#: Subprotocols hubbub never selects: the protobuf flavour is not implemented.
NO_SUBPROTOCOLS: tuple[str, ...] = ()


class WebSocketTransport:
    """Adapts an aiohttp WebSocketResponse to the hub's Transport protocol."""

    __slots__ = ("_closing", "_compressed", "_request", "_socket", "_ws", "remote")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self._ws = ws
        self._socket = request.transport
        self._compressed = bool(ws.compress)
        self._closing: asyncio.Task[bool] | None = None
        self._request = request  # alive for the whole handler anyway: no extra memory
        proxies = hub_of(request).config.http_server.trusted_proxies
        self.remote = client_address(request.remote or "", _header(request), proxies)

    @property
    def headers(self) -> dict[str, str]:
        """Handshake headers, lower-cased; built when a hook asks, not per connection."""
        return {k.lower(): v for k, v in self._request.headers.items()}

    def write(self, payload: bytes) -> None:
        socket = self._socket
        if socket is None or socket.is_closing():
            return
        if self._compressed:
            # Rare path: the deflate state lives in aiohttp's writer.
            asyncio.ensure_future(self._ws.send_frame(payload, WSMsgType.TEXT))  # noqa: RUF006
            return
        write_text_frame(socket, payload)

    def write_shared(self, shared: Shared) -> int:
        self.write(shared.payload)  # the embedded path keeps one frame build per connection
        return self.buffered()

    def buffered(self) -> int:
        socket = self._socket
        return socket.get_write_buffer_size() if socket is not None else 0

    def close(self, code: int, reason: str) -> None:
        if self._closing is None and not self._ws.closed:
            message = cut_reason(reason, MAX_REASON)
            self._closing = asyncio.ensure_future(self._ws.close(code=code, message=message))

    async def wait_closed(self) -> None:
        """Wait for a close this side started (the handshake has its own timeout)."""
        if self._closing is not None:
            await asyncio.shield(self._closing)


def hub_of(request: web.Request) -> Hub:
    hub: Hub = request.app[HUB_KEY]
    return hub


def _header(request: web.Request) -> Callable[[str], str | None]:
    return lambda name: request.headers.get(name)


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Browsers send Origin; a page from another site may not open a connection.

    No Origin (SDKs outside browsers): allowed. Same host as the request: allowed.
    Otherwise the origin must match an entry of ``client.allowed_origins``
    (``*`` wildcards allowed, as in Centrifugo).
    """
    if not origin:
        return True
    if any(fnmatch.fnmatchcase(origin.lower(), pattern.lower()) for pattern in allowed):
        return True
    return bool(host) and urlsplit(origin).netloc.lower() == (host or "").lower()


def origin_refusal(origin: str, host: str | None, allowed: tuple[str, ...]) -> str:
    """What a refused origin was compared with, for the one log line of the refusal."""
    netloc = urlsplit(origin).netloc or origin
    return (
        f"Origin {netloc!r} is not the request's Host {host or ''!r} and matches no "
        f"client.allowed_origins entry ({', '.join(allowed) if allowed else 'none set'}); "
        "behind a proxy, pass the browser's Host on (nginx: proxy_set_header Host $http_host)"
    )


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    hub = hub_of(request)
    config = hub.config
    origin = request.headers.get("Origin")
    allowed = config.client.allowed_origins
    if not origin_allowed(origin, request.host, allowed):
        peer = client_address(
            request.remote or "", _header(request), config.http_server.trusted_proxies
        )
        log.info(
            "refused handshake: 403 origin not allowed",
            extra={
                "fields": {
                    "addr": peer,
                    "detail": origin_refusal(origin or "", request.host, allowed),
                }
            },
        )
        raise web.HTTPForbidden(text="origin not allowed\n")
    ws = web.WebSocketResponse(
        protocols=NO_SUBPROTOCOLS,
        max_msg_size=config.websocket.message_size_limit,
        compress=config.websocket.compression,
        autoping=True,
    )
    if ws.can_prepare(request).ok:
        check_client_masking(request.transport)  # before the 101: later bytes are frames
    await ws.prepare(request)
    transport = WebSocketTransport(ws, request)
    session = hub.open_session(transport)
    try:
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await session.handle_frame(message.data)
            elif message.type is WSMsgType.BINARY:
                session.close(Disconnect.INAPPROPRIATE_PROTOCOL)
                break
            else:
                break
            if session.closed:
                break
    finally:
        session.transport_closed(_close_info(ws))
    await transport.wait_closed()
    return ws


def _close_info(ws: web.WebSocketResponse) -> DisconnectInfo:
    code = ws.close_code
    return DisconnectInfo(code or Disconnect.CONNECTION_CLOSED.code, "connection closed")
