"""The one WebSocket door: judge a handshake, answer it, start hubbub's own connection.

Rule: every WebSocket connection hubbub serves, however it came in, is opened
by ``WebSocketEndpoint``: ``decide`` judges the request head (RFC 6455 through
``hubbub.websocket.handshake``, then the origin rule, then the
permessage-deflate offer); ``open`` writes the 101 and hands the transport to a
``WebSocketConnection`` (wsconn.py). Two doors call it:

* the listener (front.py), for the connections it accepts itself;
* the aiohttp door (aiohttp_door.py), for applications that embed hubbub with
  ``attach()`` (and for an upgrade arriving on an HTTP keep-alive connection
  aiohttp already serves): aiohttp has parsed the head, the door takes the
  socket over. This module does not import aiohttp: ``hubbub serve`` starts
  without it.

The endpoint also keeps its open connections, so that shutdown can wait for
their close handshakes (``shutdown.close_timeout``), and the compressors its
connections share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec

from hubbub.hub.hub import Hub
from hubbub.protocol.codec import JSON, UNI_JSON, Codec
from hubbub.protocol.protobuf import PROTOBUF
from hubbub.server.address import client_address
from hubbub.server.uniws import UniWebSocket
from hubbub.server.wsconn import ProtobufWebSocket, WebSocketConnection
from hubbub.websocket.deflate import (
    MAX_WINDOW_BITS,
    Compressor,
    DeflateParams,
    PerMessageDeflate,
    negotiate,
)
from hubbub.websocket.handshake import (
    PROTOBUF_SUBPROTOCOL,
    Refusal,
    RequestHead,
    accept_response,
    check_upgrade,
    origin_allowed,
    wants_protobuf,
)

log = logging.getLogger("hubbub.websocket")

#: Centrifugo's default: without ``websocket.decompressed_message_size_limit``, a
#: compressed message may inflate to ten times ``websocket.message_size_limit``.
DECOMPRESSED_LIMIT_FACTOR = 10


class Accept(msgspec.Struct, frozen=True):
    """A handshake hubbub answers with 101: the client's key, the agreed deflate, and
    the kind of connection (issue 11: Protobuf, uni_websocket)."""

    key: str
    deflate: DeflateParams | None
    protobuf: bool = False  # the Protobuf protocol: binary frames both ways
    subprotocol: str | None = None  # echoed in the 101 when the client offered it
    unidirectional: bool = False  # uni_websocket: bare connect in, bare pushes out


class WebSocketEndpoint:
    """The WebSocket endpoint of one hub, shared by every door that serves it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        websocket = hub.config.websocket
        self.path = websocket.handler_prefix
        self.connections: set[WebSocketConnection] = set()
        self._on_closed = self._closed  # bound once: every connection shares it
        self._all_closed: asyncio.Event | None = None  # set when the last one closes
        limit = websocket.message_size_limit
        self._inflated_limit = websocket.decompressed_message_size_limit or (
            limit * DECOMPRESSED_LIMIT_FACTOR if limit > 0 else 0
        )
        # Server to client, hubbub always agrees to no context takeover: each message
        # is compressed alone, so one compressor per window size serves everyone and
        # a channel's batch is compressed once for all its subscribers.
        self._compressors: dict[int, Compressor] = {}

    # --- judging and opening ---------------------------------------------------------

    def decide(
        self,
        head: RequestHead,
        *,
        unidirectional: bool = False,
        peer: Callable[[], str] = lambda: "",
    ) -> Accept | Refusal:
        """Accept (with the agreed compression) or refuse an upgrade request;
        ``unidirectional``: it came to the ``uni_websocket`` path; ``peer``: the
        socket's peer address, asked for the log line of a refusal only."""
        key = check_upgrade(head)
        if isinstance(key, Refusal):
            return key
        config = self.hub.config
        origin, host = head.get("origin"), head.get("host")
        allowed = config.client.allowed_origins
        if not origin_allowed(origin, host, allowed):
            addr = client_address(peer(), head.get, config.http_server.trusted_proxies)
            detail = origin_refusal(origin or "", host, allowed)
            fields = {"addr": addr, "detail": detail}
            log.info("refused handshake: 403 origin not allowed", extra={"fields": fields})
            return Refusal(403, "origin not allowed")
        deflate = None
        if config.websocket.compression:
            offers = head.values("sec-websocket-extensions")
            deflate = negotiate(offers) if offers else None
        if unidirectional:
            return Accept(key, deflate, unidirectional=True)
        offered = PROTOBUF_SUBPROTOCOL in head.tokens("sec-websocket-protocol")
        return Accept(
            key,
            deflate,
            protobuf=wants_protobuf(head),
            subprotocol=PROTOBUF_SUBPROTOCOL if offered else None,
        )

    def open(
        self, transport: asyncio.Transport, head: bytes, accept: Accept, rest: bytes = b""
    ) -> WebSocketConnection:
        """Answer 101 on ``transport`` and make it a WebSocket connection; ``rest`` is
        what the client sent after the head (frames, already)."""
        params = accept.deflate
        extensions = params.header() if params is not None else None
        transport.write(
            accept_response(accept.key, extensions=extensions, subprotocol=accept.subprotocol)
        )
        deflate = self._deflate(params) if params is not None else None
        kind: type[WebSocketConnection] = WebSocketConnection
        codec: Codec = JSON
        if accept.unidirectional:
            kind, codec = UniWebSocket, UNI_JSON
        elif accept.protobuf:
            kind, codec = ProtobufWebSocket, PROTOBUF
        connection = kind(
            self.hub,
            transport,
            head,
            self._on_closed,
            deflate=deflate,
            share_deflated=deflate is not None
            and deflate.compressor is self._compressors.get(MAX_WINDOW_BITS),
            codec=codec,
        )
        self.connections.add(connection)
        transport.set_protocol(connection)
        if not transport.is_reading():  # paused by the previous owner's flow control
            transport.resume_reading()
        if rest:
            connection.data_received(rest)
        return connection

    def _deflate(self, params: DeflateParams) -> PerMessageDeflate:
        websocket = self.hub.config.websocket
        bits = params.server_max_window_bits or MAX_WINDOW_BITS
        compressor = self._compressors.get(bits)
        if compressor is None:
            compressor = self._compressors[bits] = Compressor(
                window_bits=bits, no_context_takeover=True, level=websocket.compression_level
            )
        return PerMessageDeflate(
            params,
            server=True,
            min_size=websocket.compression_min_size,
            max_size=self._inflated_limit,
            compressor=compressor,
        )

    # --- the open connections --------------------------------------------------------

    def _closed(self, connection: WebSocketConnection) -> None:
        self.connections.discard(connection)
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    async def close_hub(self) -> None:
        """Shutdown: every client gets its 3001 close frame and the hub finishes its
        work (``Hub.close``); the clients' close frames are waited for at most
        ``shutdown.close_timeout``, then the connections left are dropped."""
        await self.hub.close()
        if not self.hub.sockets_left_to_exit:
            await self.wait_closed(self.hub.config.shutdown.close_timeout)

    async def wait_closed(self, grace: float) -> None:
        """Wait for the connections to finish closing; abort those left after ``grace``."""
        if self.connections:
            self._all_closed = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), grace)
        for connection in list(self.connections):
            connection.abort()


def origin_refusal(origin: str, host: str | None, allowed: tuple[str, ...]) -> str:
    """What a refused origin was compared with, for the one log line of the refusal."""
    netloc = urlsplit(origin).netloc or origin
    return (
        f"Origin {netloc!r} is not the request's Host {host or ''!r} and matches no "
        f"client.allowed_origins entry ({', '.join(allowed) if allowed else 'none set'}); "
        "behind a proxy, pass the browser's Host on (nginx: proxy_set_header Host $http_host)"
    )
