"""One ASGI WebSocket connection as a hub ``Transport``: bounded buffering, the slow rule.

Rule: the hub writes synchronously; ``AsgiWebSocket.write`` only queues (no
await per subscriber) and one sender task per connection drains the queue with
the ASGI server's ``send``, joining everything queued into one text message
(several protocol messages per frame, one per line, as the client protocol
allows). ``buffered()`` counts bytes queued or being sent, so a client that
does not read passes ``client.queue_max_size`` and the hub closes it with 3008,
as on hubbub's own connections. A close waits for queued output, then sends
the close; ``CLOSE_TIMEOUT`` later the application returns whatever the peer
does, and the ASGI server drops the connection.

A client asking for the Protobuf protocol (the ``centrifuge-protobuf``
subprotocol, or ``format``/``cf_protocol=protobuf`` in the query) gets binary
messages of length-prefixed replies both ways (issue 11).

Limits the ASGI server applies first (documented in the README): it reads and
buffers each whole message (uvicorn ``--ws-max-size``), answers WebSocket
pings, negotiates compression itself and times the handshake; hubbub then
refuses a message over ``websocket.message_size_limit`` with 1009.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from hubbub.codes import Disconnect, DisconnectInfo
from hubbub.hub.hub import Hub
from hubbub.hub.transport import Shared
from hubbub.protocol.codec import JSON, UNI_JSON, Codec
from hubbub.protocol.protobuf import PROTOBUF
from hubbub.server.streamgate import connect_command
from hubbub.server.wsconn import CLOSE_TIMEOUT, MAX_REASON
from hubbub.websocket.frames import TOO_BIG, cut_reason
from hubbub.websocket.handshake import (
    PROTOBUF_SUBPROTOCOL,
    RequestHead,
    origin_allowed,
    wants_protobuf,
)

log = logging.getLogger("hubbub.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: Close code ASGI servers turn into HTTP 403 when sent before the accept.
POLICY_VIOLATION = 1008


def scope_headers(scope: Scope) -> dict[str, str]:
    """The request headers of an ASGI scope, names lower-cased (the first of repeats)."""
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


class AsgiWebSocket:
    """The hub's Transport over an accepted ASGI WebSocket."""

    __slots__ = (
        "_close",
        "_codec",
        "_deadline",
        "_pending",
        "_pending_bytes",
        "_send",
        "_unidirectional",
        "_wakeup",
        "scope",
    )

    def __init__(
        self, send: Send, scope: Scope, codec: Codec = JSON, *, unidirectional: bool = False
    ) -> None:
        self._send = send
        self._codec = codec
        self._unidirectional = unidirectional  # one push per message
        self.scope = scope
        self._pending: list[bytes] = []  # what the hub wrote, not yet handed to the server
        self._pending_bytes = 0  # their size, plus the batch being sent
        self._close: tuple[int, str] | None = None
        self._wakeup = asyncio.Event()
        self._deadline: asyncio.Timeout | None = None  # the receive loop's, moved by close()

    # --- Transport ---------------------------------------------------------------------

    @property
    def remote(self) -> str:
        client = self.scope.get("client")
        return str(client[0]) if client else ""

    @property
    def headers(self) -> dict[str, str]:
        return scope_headers(self.scope)

    @property
    def transport_name(self) -> str:
        """Centrifugo's name of the transport (metrics labels)."""
        return "uni_websocket" if self._unidirectional else "websocket"

    def write(self, payload: bytes) -> None:
        if self._close is None:
            self._pending.append(payload)
            self._pending_bytes += len(payload)
            self._wakeup.set()

    def write_shared(self, shared: Shared) -> int:
        self.write(shared.payload_for(self._codec))
        return self._pending_bytes

    def buffered(self) -> int:
        return self._pending_bytes

    def close(self, code: int, reason: str) -> None:
        if self._close is not None:
            return
        self._close = (code, reason)
        self._wakeup.set()
        if self._deadline is not None:  # the peer gets this long to answer
            self._deadline.reschedule(asyncio.get_running_loop().time() + CLOSE_TIMEOUT)

    def close_within(self, deadline: asyncio.Timeout) -> None:
        """Once closed, end ``deadline`` (the receive loop's) ``CLOSE_TIMEOUT`` later."""
        self._deadline = deadline
        if self._close is not None:
            deadline.reschedule(asyncio.get_running_loop().time() + CLOSE_TIMEOUT)

    # --- the sender task -----------------------------------------------------------------

    async def run_sender(self) -> None:
        """Hand queued output to the ASGI server, in order, then the close."""
        send = self._send
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                codec = self._codec
                while self._pending:
                    batch, self._pending = self._pending, []
                    data = batch[0] if len(batch) == 1 else codec.separator.join(batch)
                    if codec.binary:
                        await send({"type": "websocket.send", "bytes": data})
                    elif self._unidirectional:  # JSON.parse(event.data) per push
                        for push in data.split(b"\n"):
                            await send({"type": "websocket.send", "text": push.decode()})
                    else:
                        await send({"type": "websocket.send", "text": data.decode()})
                    self._pending_bytes -= sum(map(len, batch))
                if self._close is not None:
                    code, reason = self._close
                    await send(
                        {
                            "type": "websocket.close",
                            "code": code,
                            "reason": cut_reason(reason, MAX_REASON).decode(),
                        }
                    )
                    return
        except (OSError, RuntimeError):  # the peer is gone; the receive loop hears of it
            return


async def serve_websocket(
    hub: Hub, scope: Scope, receive: Receive, send: Send, *, unidirectional: bool = False
) -> None:
    """Run one ASGI WebSocket connection until either side closes it.

    ``unidirectional``: a ``uni_websocket`` client, whose first message is a bare
    connect request (anything after it is ignored) and who gets one push per
    message (server/uniws.py's rules).
    """
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    headers = scope_headers(scope)
    config = hub.config
    if not origin_allowed(
        headers.get("origin"), headers.get("host"), config.client.allowed_origins
    ):
        log.info("refused origin %s", headers.get("origin"))
        await send({"type": "websocket.close", "code": POLICY_VIOLATION})  # HTTP 403
        return
    offered = not unidirectional and PROTOBUF_SUBPROTOCOL in scope.get("subprotocols", ())
    head = RequestHead("GET", "", "HTTP/1.1", [], scope.get("query_string", b"").decode())
    codec: Codec = PROTOBUF if offered or wants_protobuf(head) else JSON
    if unidirectional:
        codec = UNI_JSON
    accept: Message = {"type": "websocket.accept"}
    if offered:
        accept["subprotocol"] = PROTOBUF_SUBPROTOCOL
    await send(accept)
    transport = AsgiWebSocket(send, scope, codec, unidirectional=unidirectional)
    session = hub.open_session(transport, codec=codec, unidirectional=unidirectional)
    sender = asyncio.get_running_loop().create_task(transport.run_sender())
    limit = (
        config.uni_websocket.message_size_limit
        if unidirectional
        else config.websocket.message_size_limit
    )
    connect_seen = False
    info: DisconnectInfo = Disconnect.CONNECTION_CLOSED
    failed = False
    try:
        async with asyncio.timeout(None) as deadline:
            transport.close_within(deadline)
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.disconnect":
                    code = int(message.get("code") or Disconnect.CONNECTION_CLOSED.code)
                    info = DisconnectInfo(code, Disconnect.CONNECTION_CLOSED.reason)
                    break
                if kind != "websocket.receive" or session.closed:
                    continue  # after our close, input means nothing
                frame: str | bytes | None = message.get("bytes" if codec.binary else "text")
                if frame is None:
                    session.close(Disconnect.INAPPROPRIATE_PROTOCOL)  # the other kind: 3506
                    continue
                if isinstance(frame, bytes) or frame.isascii():
                    size = len(frame)
                else:
                    size = len(frame.encode())
                if 0 < limit < size:
                    session.close(DisconnectInfo(TOO_BIG, "message too big"))
                    continue
                if unidirectional:
                    if connect_seen:
                        continue  # after the connect: a unidirectional client has nothing to say
                    connect_seen = True
                    try:
                        frame = connect_command(frame).decode()
                    except ValueError as exc:
                        log.info("client %s: bad uni_websocket connect: %s", session.client_id, exc)
                        session.close(Disconnect.BAD_REQUEST)
                        continue
                await session.handle_frame(frame)
    except TimeoutError:
        pass  # the peer did not answer our close in time: the server drops it
    except Exception:
        log.exception("client %s: frame handling failed", session.client_id)
        session.close(Disconnect.SERVER_ERROR)
        failed = True
    finally:
        if failed:  # let the close go out before the server drops the connection
            await asyncio.wait({sender}, timeout=1.0)
        sender.cancel()
        session.transport_closed(info)
