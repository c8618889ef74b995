"""The public listener: hubbub answers WebSocket requests itself, aiohttp the rest.

Rule: every accepted connection (plain or TLS) starts with ``Front``, which
reads the request line within ``http_server.handshake_timeout``. A request for
the WebSocket path is hubbub's: its head is read within the header limits and
judged by the endpoint (websocket.py), which answers 101 and turns the same
transport into a ``WebSocketConnection`` (no aiohttp request, handler task or
response object stays alive per client, which is most of an idle connection's
memory), or refuses it with the HTTP status RFC 6455 asks for and closes.
Every other request (the API, the demo page, /health) is handed, with the
bytes read so far, to the aiohttp application's own protocol through
``transport.set_protocol``, so aiohttp answers it exactly as if it had
accepted the connection. The application is the ``HttpDoor``'s: ``hubbub
serve`` loads it (and aiohttp) when the first such request arrives, which then
waits, its bytes kept, until the door is ready; WebSocket clients never wait
for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Protocol, cast

from hubbub.hub.timers import Timer
from hubbub.server.early import BACKLOG
from hubbub.server.websocket import WebSocketEndpoint
from hubbub.server.wsconn import WebSocketConnection
from hubbub.websocket.handshake import HEAD_END, Refusal, parse_head, request_path

log = logging.getLogger("hubbub.server")

#: Bytes of request line read before a request is left to aiohttp (which refuses it).
FIRST_LINE_LIMIT = 16384
#: Bytes of a request kept while the HTTP application loads; then reading pauses.
LOADING_BUFFER_LIMIT = 1 << 20
#: What a request gets when the HTTP application failed to load.
UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class HttpDoor(Protocol):
    """Where the listener sends every request that is not a WebSocket upgrade."""

    def protocol(self) -> asyncio.Protocol | None:
        """aiohttp's protocol for one more connection; None while the application loads."""

    def when_loaded(self, callback: Callable[[bool], None]) -> None:
        """Load the application (once) and call ``callback(ok)`` when that ended."""


class Listener:
    """The public port: accepts connections, hands each to the endpoint or to aiohttp."""

    def __init__(self, endpoint: WebSocketEndpoint, http: HttpDoor) -> None:
        self.endpoint = endpoint
        self.hub = endpoint.hub
        self.http = http  # aiohttp's application, for everything but WebSocket requests
        self._server: asyncio.Server | None = None
        config = endpoint.hub.config
        server = config.http_server
        # Paths hubbub upgrades itself: the client protocol, and uni_websocket (issue 11).
        self.paths: set[bytes] = set() if config.websocket.disabled else {endpoint.path.encode()}
        self.uni_path: bytes | None = None
        if config.uni_websocket.enabled:
            self.uni_path = config.uni_websocket.handler_prefix.encode()
            self.paths.add(self.uni_path)
        self.handshake_timeout = server.handshake_timeout
        self.max_header_count = server.max_header_count
        self.max_header_size = server.max_header_size
        # The longest head the header limits allow (the request line counts as one).
        self.max_head = (server.max_header_count + 1) * (server.max_header_size + 2) + 2

    @property
    def connections(self) -> set[WebSocketConnection]:
        return self.endpoint.connections

    async def start(
        self,
        host: str | None,
        port: int,
        *,
        reuse_port: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        sock: socket.socket | None = None,
    ) -> int:
        """Listen on ``host:port``, or accept on ``sock`` (already listening: see
        server/early.py); the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        tls_timeout = self.handshake_timeout if ssl_context else None
        if sock is not None:
            # The backlog again: the loop listens on the socket once more, with its own
            # default (100) unless told, which would shorten the accept queue.
            self._server = await loop.create_server(
                lambda: Front(self),
                sock=sock,
                backlog=BACKLOG,
                ssl=ssl_context,
                ssl_handshake_timeout=tls_timeout,
            )
        else:
            self._server = await loop.create_server(
                lambda: Front(self),
                host,
                port,
                reuse_port=reuse_port or None,
                backlog=BACKLOG,
                ssl=ssl_context,
                ssl_handshake_timeout=tls_timeout,
            )
        return int(self._server.sockets[0].getsockname()[1])

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def wait_closed(self, grace: float) -> None:
        """Wait for WebSocket connections to finish closing; abort those left after ``grace``."""
        await self.endpoint.wait_closed(grace)
        if self._server is not None:
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)


class Front(asyncio.Protocol):
    """A new connection until its request line tells who serves it."""

    __slots__ = ("_buffer", "_listener", "_ours", "_searched", "_timer", "_transport", "_waiting")

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._buffer = bytearray()
        self._searched = 0  # the head's end is not before this offset of the buffer
        self._ours = False  # the request line asked for the WebSocket path
        self._waiting = False  # for the HTTP application to load
        self._transport: asyncio.Transport | None = None
        self._timer: Timer | None = None  # the handshake deadline, on the hub's wheel

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        # On the hub's timer wheel, with a function shared by every connection: no
        # loop timer handle nor bound method per connection (a storm makes thousands).
        listener = self._listener
        self._timer = listener.hub.timers.call_later_for(
            listener.handshake_timeout, Front._timed_out, self
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return  # refused: the rest of the request means nothing
        buffer = self._buffer
        buffer += data
        if self._waiting:  # the HTTP application loads: its request's bytes are kept
            if len(buffer) > LOADING_BUFFER_LIMIT:
                self._transport.pause_reading()
            return
        listener = self._listener
        if not self._ours:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                if len(buffer) > FIRST_LINE_LIMIT:
                    self._hand_off()  # aiohttp refuses an overlong request line
                return
            path = request_path(bytes(buffer[:line_end]))
            if path not in listener.paths:
                self._hand_off()
                return
            self._ours = True
        end = buffer.find(HEAD_END, self._searched)
        if end < 0:
            if len(buffer) > listener.max_head:
                self._refuse(Refusal(400, "request head too large"))
            else:
                self._searched = max(0, len(buffer) - len(HEAD_END) + 1)
            return
        head_size = end + len(HEAD_END)
        raw = bytes(buffer[:head_size])
        rest = bytes(buffer[head_size:])
        head = parse_head(raw)
        if head is None:
            self._refuse(Refusal(400, "malformed request head"))
        elif (
            len(head.headers) > listener.max_header_count
            or max(map(len, raw.split(b"\r\n"))) > listener.max_header_size
        ):
            self._refuse(Refusal(400, "too many or too long header lines"))
        else:
            decision = listener.endpoint.decide(
                head, unidirectional=head.path.encode() == listener.uni_path, peer=self._peer
            )
            if isinstance(decision, Refusal):
                # The origin check logs its refusal itself, with what it compared.
                self._refuse(decision, logged=decision.status == 403)
            else:
                transport = self._detach()
                listener.endpoint.open(transport, raw, decision, rest)

    def _peer(self) -> str:
        peer = self._transport.get_extra_info("peername") if self._transport else None
        return str(peer[0]) if peer else ""

    def _refuse(self, refusal: Refusal, *, logged: bool = False) -> None:
        """Answer ``refusal`` and close; one log line for it (the peer's address)."""
        if not logged:
            fields = {"addr": self._peer()}
            log.info(
                f"refused handshake: {refusal.status} {refusal.message}", extra={"fields": fields}
            )
        transport = self._detach()
        transport.write(refusal.response())
        transport.close()  # after the response is written

    def _hand_off(self) -> None:
        handler = self._listener.http.protocol()
        if handler is None:
            self._waiting = True
            self._listener.http.when_loaded(self._loaded)
            return
        buffer = bytes(self._buffer)
        transport = self._detach()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        handler.data_received(buffer)

    def _loaded(self, ok: bool) -> None:
        """The HTTP application is ready (or failed to load): hand the request over."""
        transport = self._transport
        if transport is None:
            return  # the peer left (or the handshake timeout passed) meanwhile
        self._waiting = False
        if not transport.is_reading():
            transport.resume_reading()
        if ok:
            self._hand_off()
        else:
            self._detach()
            transport.write(UNAVAILABLE)
            transport.close()

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

    def _detach(self) -> asyncio.Transport:
        """This request is decided: stop the clock, forget the transport and the bytes."""
        self._cancel_timer()
        transport = self._transport
        assert transport is not None
        self._transport = None
        self._buffer = bytearray()
        return transport

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
