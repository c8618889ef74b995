"""The public listener: hubbub answers plain WebSocket upgrades itself, aiohttp the rest.

Rule: every accepted connection starts with ``Front``, which reads the request
head (within ``http_server.handshake_timeout`` and the header limits). A plain
upgrade to the client endpoint becomes a ``WebSocketConnection`` on the same
transport: no aiohttp request, handler task or response object stays alive
per client, which is most of an idle connection's memory. Every other request
(the API, the demo page, /health, a malformed or unusual handshake) is handed,
with the bytes read so far, to the aiohttp application's own protocol through
``transport.set_protocol``, so aiohttp answers it exactly as if it had
accepted the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import cast

from aiohttp import web

from hubbub.hub.hub import Hub
from hubbub.server.websocket import origin_allowed
from hubbub.server.wsconn import WebSocketConnection
from hubbub.websocket.handshake import (
    HEAD_END,
    accept_response,
    parse_head,
    request_path,
    upgrade_key,
)

log = logging.getLogger("hubbub.server")

WEBSOCKET_PATH = b"/connection/websocket"
#: Bytes of request head the fast path reads before leaving the request to aiohttp.
FAST_HEAD_LIMIT = 16384


class Listener:
    """The public port: accepts connections and tracks the WebSocket ones until closed."""

    def __init__(self, hub: Hub, http: web.Server) -> None:
        self.hub = hub
        self.http = http  # aiohttp's protocol factory for everything but fast upgrades
        self.connections: set[WebSocketConnection] = set()
        self._server: asyncio.Server | None = None
        self._all_closed: asyncio.Event | None = None  # set when the last one closes
        config = hub.config.http_server
        self.handshake_timeout = config.handshake_timeout
        self.max_header_count = config.max_header_count
        self.max_header_size = config.max_header_size
        # Real upgrade heads are a few hundred bytes; a longer one (or one longer than
        # the header limits allow) is left to aiohttp, whose parser is linear.
        allowed = (config.max_header_count + 1) * (config.max_header_size + 2) + 2
        self.max_head = min(allowed, FAST_HEAD_LIMIT)

    async def start(self, host: str | None, port: int, *, reuse_port: bool = False) -> int:
        """Listen on ``host:port``; the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Front(self), host, port, reuse_port=reuse_port or None, backlog=4096
        )
        return int(self._server.sockets[0].getsockname()[1])

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    def upgraded(self, connection: WebSocketConnection) -> None:
        self.connections.add(connection)

    def closed(self, connection: WebSocketConnection) -> None:
        self.connections.discard(connection)
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    async def wait_closed(self, grace: float) -> None:
        """Wait for WebSocket connections to finish closing; abort those left after ``grace``."""
        if self.connections:
            self._all_closed = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), grace)
        for connection in list(self.connections):
            connection.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)


class Front(asyncio.Protocol):
    """A new connection until its request head tells who serves it."""

    __slots__ = ("_buffer", "_listener", "_timer", "_transport")

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._listener.handshake_timeout, self._timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()

    def data_received(self, data: bytes) -> None:
        searched = max(0, len(self._buffer) - len(HEAD_END) + 1)  # already had no HEAD_END
        buffer = self._buffer + data if self._buffer else data  # at most FAST_HEAD_LIMIT
        self._buffer = buffer
        end = buffer.find(HEAD_END, searched)
        if end < 0:
            line_end = buffer.find(b"\r\n")
            if len(buffer) > self._listener.max_head or (
                line_end >= 0 and request_path(buffer[:line_end]) != WEBSOCKET_PATH
            ):
                self._hand_off()  # not ours (or too long): aiohttp reads the rest
            return
        head_size = end + len(HEAD_END)
        key = self._fast_upgrade_key(buffer[:head_size])
        if key is None:
            self._hand_off()
        else:
            self._upgrade(key, buffer[:head_size], buffer[head_size:])

    def _fast_upgrade_key(self, raw: bytes) -> str | None:
        listener = self._listener
        head = parse_head(raw)
        if head is None or head.path != WEBSOCKET_PATH.decode():
            return None
        if len(head.headers) > listener.max_header_count or any(
            len(line) > listener.max_header_size for line in raw.split(b"\r\n")
        ):
            return None  # aiohttp refuses it with 400
        config = listener.hub.config
        if not origin_allowed(head.get("origin"), head.get("host"), config.client.allowed_origins):
            return None  # aiohttp's handler refuses it with 403 and logs it
        return upgrade_key(head, compression=config.websocket.compression)

    def _upgrade(self, key: str, head: bytes, rest: bytes) -> None:
        self._cancel_timer()
        transport = self._transport
        assert transport is not None
        transport.write(accept_response(key))
        listener = self._listener
        connection = WebSocketConnection(listener.hub, transport, head, listener.closed)
        listener.upgraded(connection)
        transport.set_protocol(connection)
        self._transport = None
        self._buffer = b""
        if rest:
            connection.data_received(rest)

    def _hand_off(self) -> None:
        self._cancel_timer()
        transport = self._transport
        assert transport is not None
        handler = self._listener.http()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        buffer, self._buffer, self._transport = self._buffer, b"", None
        handler.data_received(buffer)

    def _timed_out(self) -> None:
        """No complete request head within ``http_server.handshake_timeout`` (slowloris)."""
        self._timer = None
        transport = self._transport
        if transport is None:
            return
        if log.isEnabledFor(logging.DEBUG):
            peer = transport.get_extra_info("peername")
            log.debug(
                "refused handshake: incomplete after http_server.handshake_timeout",
                extra={
                    "fields": {"addr": str(peer[0]) if peer else "", "bytes": len(self._buffer)}
                },
            )
        transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
