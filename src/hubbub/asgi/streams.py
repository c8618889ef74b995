"""HTTP streaming, SSE, ``/emulation`` and the uni streams under ASGI.

Rule 1: the rules are server/streamgate.py's, as for aiohttp: this module only
reads the ASGI request (headers, query, a body bounded by the endpoint's
``max_request_body_size``: 413 beyond) and answers what the gate decides.
Rule 2: a stream is a hub Transport over one ASGI response. The hub writes
synchronously: ``write`` only queues the framed body (``Framing.body``: the
ASGI server does the chunking) and one sender task per stream hands it to the
server's ``send`` in order; ``buffered()`` counts what is queued or being
sent, so a client that does not read passes ``client.queue_max_size`` and is
closed as slow (3008), as on hubbub's own streams. A close is a ``disconnect``
push (unless slow), then the end of the body; a client gone (``http.disconnect``)
ends the session once its commands in flight are done (``CommandQueue``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import parse_qs

from hubbub.asgi.http import read_body, respond
from hubbub.asgi.websocket import Receive, Scope, Send, scope_headers
from hubbub.codes import Disconnect, DisconnectInfo
from hubbub.hub.hub import Hub
from hubbub.hub.session import Session
from hubbub.hub.transport import Shared
from hubbub.protocol.messages import DisconnectPush, Push
from hubbub.server.address import client_address
from hubbub.server.http_answer import ApiAnswer
from hubbub.server.streamconn import CLOSE_TIMEOUT, CommandQueue, Framing
from hubbub.server.streamgate import Endpoint, StreamGate, StreamRequest, StreamStart

log = logging.getLogger("hubbub.asgi")


class AsgiStream:
    """The hub's Transport over a streamed ASGI response (SSE or HTTP streaming)."""

    __slots__ = (
        "_close",
        "_commands",
        "_framing",
        "_headers",
        "_pending",
        "_pending_bytes",
        "_remote",
        "_send",
        "_sender",
        "_wakeup",
        "session",
    )

    def __init__(
        self, hub: Hub, send: Send, scope: Scope, headers: dict[str, str], start: StreamStart
    ) -> None:
        self._send = send
        self._framing = start.framing
        self._headers = headers
        self._pending: list[bytes] = []  # framed body not yet handed to the server
        self._pending_bytes = 0  # its size, plus the piece being sent
        self._close: tuple[int, str] | None = None
        self._wakeup = asyncio.Event()
        self._commands = CommandQueue()  # what arrives over /emulation
        self._sender: asyncio.Task[None] | None = None
        client = scope.get("client")
        self._remote = client_address(
            str(client[0]) if client else "", headers.get, hub.config.http_server.trusted_proxies
        )
        self.session: Session = hub.open_session(
            self,
            codec=start.codec,
            emulation=start.emulation,
            unidirectional=start.unidirectional,
        )

    # --- Transport ---------------------------------------------------------------------

    @property
    def remote(self) -> str:
        return self._remote

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    @property
    def transport_name(self) -> str:
        """Centrifugo's name of the transport (metrics labels)."""
        streamed = "sse" if self._framing is Framing.EVENTS else "http_stream"
        return f"uni_{streamed}" if self.session.unidirectional else streamed

    def write(self, payload: bytes) -> None:
        if self._close is None:
            self._queue(self._framing.body(payload))

    def write_shared(self, shared: Shared) -> int:
        if self._close is None:
            framing = self._framing
            self._queue(shared.framing("asgi-" + framing.value, framing.body, self.session.codec))
        return self._pending_bytes

    def buffered(self) -> int:
        return self._pending_bytes

    def close(self, code: int, reason: str) -> None:
        if self._close is not None:
            return
        if code != Disconnect.SLOW.code:  # a slow reader gets nothing more
            info = DisconnectInfo(code, reason)
            push = Push(disconnect=DisconnectPush(code, reason, info.reconnect))
            self._queue(self._framing.body(self.session.codec.push(push)))
        self._close = (code, reason)
        self._wakeup.set()
        sender = self._sender
        if sender is not None:  # the peer gets this long to take the rest
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, sender.cancel)

    def deliver(self, frame: bytes | str) -> bool:
        """Queue a frame of commands for the session; False when too many wait."""
        if self._close is not None or self.session.closed:
            return True  # nobody to run them for: accepted and dropped
        return self._commands.put(self.session, frame)

    def _queue(self, body: bytes) -> None:
        self._pending.append(body)
        self._pending_bytes += len(body)
        self._wakeup.set()

    # --- the sender task -----------------------------------------------------------------

    async def run_sender(self) -> None:
        """Hand queued body pieces to the ASGI server, in order, then end the body."""
        send = self._send
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._pending:
                    batch, self._pending = self._pending, []
                    data = batch[0] if len(batch) == 1 else b"".join(batch)
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                    self._pending_bytes -= len(data)
                if self._close is not None:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
        except (OSError, RuntimeError):  # the peer is gone; the receive side hears of it
            return

    def peer_gone(self) -> None:
        """The client left: end the session once its commands in flight are done."""
        self._close = self._close or (Disconnect.CONNECTION_CLOSED.code, "")
        session = self.session
        self._commands.after(lambda: session.transport_closed(Disconnect.CONNECTION_CLOSED))


def stream_request(scope: Scope) -> tuple[StreamRequest, dict[str, str]]:
    """The gate's view of an ASGI request, and its headers (lower-case names)."""
    headers = scope_headers(scope)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    request = StreamRequest(
        scope["method"],
        lambda name: headers.get(name.lower()),
        lambda name: query[name][0] if name in query else None,
    )
    return request, headers


async def serve_stream(
    gate: StreamGate, endpoint: Endpoint, scope: Scope, receive: Receive, send: Send
) -> None:
    """Answer one request of a streaming endpoint; a stream runs until either side ends it."""
    request, headers = stream_request(scope)
    refusal = gate.refuse_origin(request)
    if refusal is not None:
        await respond(send, refusal)
        return
    body = b""
    if request.reads_body:
        limit = gate.body_limit(endpoint)
        read = await read_body(receive, limit)
        if read is None:
            await respond(send, ApiAnswer.refusal(413, f"the body is over {limit} bytes"))
            return
        body = read
    if endpoint is Endpoint.EMULATION:
        await respond(send, await gate.emulate(request, body))
        return
    start = gate.start(endpoint, request, body)
    if isinstance(start, ApiAnswer):
        await respond(send, start)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(n.lower().encode(), v.encode("latin-1")) for n, v in start.headers],
        }
    )
    stream = AsgiStream(gate.hub, send, scope, headers, start)
    sender = stream._sender = asyncio.get_running_loop().create_task(stream.run_sender())
    stream.deliver(start.first)  # the connect (a fresh queue has room)
    disconnect = asyncio.get_running_loop().create_task(_disconnected(receive))
    try:
        await asyncio.wait({sender, disconnect}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stream.peer_gone()  # nothing if the session is closed already (we ended the stream)
        for task in (sender, disconnect):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(sender, disconnect, return_exceptions=True)


async def _disconnected(receive: Receive) -> None:
    """Return once the client is gone (after the body, a client sends nothing else)."""
    while (await receive())["type"] != "http.disconnect":
        pass
