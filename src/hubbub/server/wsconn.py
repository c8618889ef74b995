"""One WebSocket connection served by hubbub itself: an asyncio protocol, no task while idle.

Rule: an idle connection costs a transport, this object and its hub session:
no task, no stream reader, no frame reader at rest (one is made when bytes
arrive and dropped when no partial frame or message is left), no copy of the
request unless a decider may ask for its headers. Bytes are framed
synchronously in ``data_received``; text messages are handed to the
session in arrival order by one short-lived task, started when a message
arrives and ended when none is waiting (reading pauses while many wait).
Outgoing frames are written straight to the transport by the hub's flush.
With permessage-deflate agreed, frames at least ``compression_min_size`` long
go out compressed (RSV1), a channel's batch compressed once for every
subscriber that shares the endpoint's compressor (``Shared.deflated``).

Closing follows RFC 6455 7.1: whoever closes first sends a close frame; the
server drops TCP when the peer's close frame arrives or ``CLOSE_TIMEOUT`` later
(at shutdown with ``shutdown.close_timeout`` 0: once the frame is written).
After a framing error the stream cannot be trusted: the messages that came
before the bad frame are answered (each command gets its reply), then the
close frame is sent, the write side shut, and input is discarded until the
peer goes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from hubbub.codes import Disconnect, DisconnectInfo
from hubbub.hub.transport import Shared
from hubbub.protocol.codec import JSON, Codec
from hubbub.server.address import client_address
from hubbub.websocket.frames import (
    NO_STATUS,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    SMALL_TEXT_HEADERS,
    FrameError,
    FrameReader,
    Message,
    binary_header,
    close_frame,
    compressed_text_header,
    control_frame,
    parse_close,
    text_header,
)
from hubbub.websocket.handshake import parse_head

if TYPE_CHECKING:
    from hubbub.hub.hub import Hub
    from hubbub.hub.session import Session
    from hubbub.websocket.deflate import PerMessageDeflate

log = logging.getLogger("hubbub.websocket")

#: Seconds to wait for the peer's close frame after ours.
CLOSE_TIMEOUT = 5.0
#: Seconds to keep reading (and discarding) after a framing error before dropping TCP.
LINGER_AFTER_ERROR = 2.0
#: Close reasons are capped by the client protocol (Centrifugo: 32 bytes).
MAX_REASON = 32
#: Reading pauses while this many received messages wait for the session.
MAX_WAITING = 64


def _no_header(name: str) -> str | None:
    return None


def write_text_frame(socket: asyncio.WriteTransport, payload: bytes) -> None:
    """Write ``payload`` as one unmasked text frame: one buffer when small, two when
    large (no copy of a big payload just to prepend its header)."""
    size = len(payload)
    if size < 126:
        socket.write(SMALL_TEXT_HEADERS[size] + payload)
    elif size < 4096:
        socket.write(text_header(size) + payload)
    else:
        socket.writelines((text_header(size), payload))


class WebSocketConnection(asyncio.Protocol):
    """A client connection after the 101: frames in, the hub's frames out.

    JSON clients send and get text frames; with the Protobuf codec
    (``centrifuge-protobuf``) both ways are binary frames (``ProtobufWebSocket``).
    """

    _data_opcode = OP_TEXT  # the frames commands arrive in
    _unidirectional = False  # the client sends its connect only (uni_websocket)

    __slots__ = (
        "_closing",
        "_deflate",
        "_discard",
        "_failure",
        "_head",
        "_inbox",
        "_on_closed",
        "_paused",
        "_peer_gone",
        "_reader",
        "_reading_paused",
        "_remote",
        "_runner",
        "_share_deflated",
        "_socket",
        "_timer",
        "_write_blocked",
        "session",
    )

    #: Centrifugo's name of the transport (metrics labels).
    transport_name = "websocket"

    def __init__(
        self,
        hub: Hub,
        socket: asyncio.Transport,
        head: bytes,
        on_closed: Callable[[WebSocketConnection], None],
        *,
        deflate: PerMessageDeflate | None = None,
        share_deflated: bool = False,
        codec: Codec = JSON,
    ) -> None:
        self._socket = socket
        # The raw request head, parsed only if a decider asks for headers; not kept
        # when none can ask (no proxy, no on_connect when the connection opened).
        self._head = head if hub.decisions.reads_headers else b""
        self._deflate = deflate
        # True: our compressor is the endpoint's default one, whose output for a
        # channel batch is kept in the Shared for every other such subscriber.
        self._share_deflated = share_deflated
        self._reader: FrameReader | None = None  # only while a frame or message is partial
        self._discard = False  # after a framing error: the peer's bytes mean nothing
        self._inbox: list[str | bytes] | None = None  # messages waiting for the session
        self._runner: asyncio.Task[None] | None = None
        self._paused = False  # reading paused: too many messages waiting
        self._write_blocked = False  # reading paused: the peer does not read
        self._reading_paused = False  # what the transport was told
        # (why, detail) reported once the inbox is done; a detail: our close for its fault
        self._peer_gone: tuple[DisconnectInfo, str] | None = None
        self._failure: FrameError | None = None  # a framing error, acted on once it is done
        self._closing = False  # our close frame is sent (or the stream is broken)
        self._timer: asyncio.TimerHandle | None = None
        self._on_closed = on_closed
        peer = socket.get_extra_info("peername")
        proxies = hub.config.http_server.trusted_proxies
        self._remote = str(peer[0]) if peer else ""
        if proxies:  # the handshake's X-Forwarded-For, if a trusted proxy sent it
            parsed = parse_head(head)
            header = parsed.get if parsed is not None else _no_header
            self._remote = client_address(self._remote, header, proxies)
        self.session: Session = hub.open_session(
            self, codec=codec, unidirectional=self._unidirectional
        )

    # --- Transport (what the hub sees) -------------------------------------------------

    @property
    def remote(self) -> str:
        """The client's address (through ``http_server.trusted_proxies``)."""
        return self._remote

    @property
    def compressed(self) -> bool:
        """permessage-deflate was agreed with this client."""
        return self._deflate is not None

    @property
    def headers(self) -> dict[str, str]:
        """Handshake headers, lower-cased; parsed when a hook asks, not per connection."""
        head = parse_head(self._head)
        return dict(head.headers) if head is not None else {}

    def write(self, payload: bytes) -> None:
        # _closing is set before any close, so no is_closing() call.
        if self._closing:
            return
        if self._deflate is not None:
            data = self._deflate.compress(payload)
            if data is not None:
                self._socket.write(compressed_text_header(len(data)) + data)
                return
        write_text_frame(self._socket, payload)

    def write_shared(self, shared: Shared) -> int:
        # The broadcast hot path: one frame built per publication batch, the same
        # bytes object written to every subscriber.
        if self._closing:
            return 0
        frame = shared.encoded if self._deflate is None else self._deflated_frame(shared)
        if frame is None:
            payload = shared.payload
            frame = shared.encoded = text_header(len(payload)) + payload
        socket = self._socket
        socket.write(frame)
        return socket.get_write_buffer_size()

    def _deflated_frame(self, shared: Shared) -> bytes | None:
        """The compressed frame for ``shared`` (None: send it uncompressed)."""
        deflate = self._deflate
        assert deflate is not None
        if len(shared.payload) < deflate.min_size:
            return shared.encoded
        if self._share_deflated:
            frame = shared.deflated
            if frame is None:
                data = deflate.compress(shared.payload)
                assert data is not None  # a shared compressor always compresses
                frame = shared.deflated = compressed_text_header(len(data)) + data
            return frame
        data = deflate.compress(shared.payload)
        return None if data is None else compressed_text_header(len(data)) + data

    def abort(self) -> None:
        """Drop TCP now (shutdown: the peer did not answer our close in time)."""
        self._closing = True
        self._socket.abort()

    def buffered(self) -> int:
        return self._socket.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        if self._socket.is_closing():
            return
        self._socket.write(close_frame(code, reason, max_reason=MAX_REASON))
        session: Session | None = getattr(self, "session", None)  # None: still opening
        hub = session.hub if session is not None else None
        if hub is not None and hub.closing and hub.config.shutdown.close_timeout <= 0:
            # A shutdown that does not wait for the clients' answers: TCP ends once the
            # frame is written, with no timer per connection (the endpoint drops any
            # connection left when the hub has closed), or, when the process exits
            # next, with the process (its exit closes every socket at once); until
            # then nothing is read (5,000 clients' answering close frames cost the
            # rest of the shutdown ~0.1 s).
            if not hub.sockets_left_to_exit:
                self._socket.close()
            elif self._socket.is_reading():
                self._socket.pause_reading()
            return
        # abort, not close: close() waits for the buffer to drain, which a peer
        # that stopped reading never allows.
        self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._socket.abort)

    # --- asyncio.Protocol ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if reader is None:
            if self._discard:
                return  # after a framing error the peer's bytes mean nothing any more
            limit = self.session.hub.config.websocket.message_size_limit
            reader = FrameReader(limit, inflater=self._deflate)
        try:
            messages = reader.feed(data)
        except FrameError as exc:
            # What came before the bad frame is answered first; a close among it wins.
            self._reader = None
            self._discard = True
            if self._handle(exc.messages):
                self._broken(exc)
            return
        self._reader = None if reader.at_rest else reader
        self._handle(messages)

    def _handle(self, messages: list[Message]) -> bool:
        """Act on received messages in order; False once the peer's close came."""
        for opcode, payload in messages:
            if opcode == self._data_opcode:
                if not self._closing:
                    self._deliver(payload)
            elif opcode == OP_CLOSE:
                self._peer_closed(payload)  # type: ignore[arg-type]
                return False
            elif opcode == OP_PING:
                if not self._closing:
                    self._socket.write(control_frame(OP_PONG, payload))  # type: ignore[arg-type]
            elif opcode in (OP_BINARY, OP_TEXT) and not self._closing:
                # A text frame on the Protobuf protocol, a binary one on JSON.
                self.session.close(Disconnect.INAPPROPRIATE_PROTOCOL)
            # pongs need no answer: liveness is the client protocol's ping
        return True

    def eof_received(self) -> bool | None:
        return False  # the transport closes itself; connection_lost reports it

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._closing = True
        self._end_session(Disconnect.CONNECTION_CLOSED)
        self._on_closed(self)

    def pause_writing(self) -> None:
        # The peer does not read what we write: stop reading what it writes (a
        # ping flood would otherwise grow our buffer with pongs). Publications
        # still go out; the hub drops the connection as slow past its limit.
        self._write_blocked = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_blocked = False
        self._update_reading()

    def _update_reading(self) -> None:
        """Read while neither the inbox is full nor the peer's side is blocked."""
        pause = self._paused or self._write_blocked
        if pause != self._reading_paused and not self._socket.is_closing():
            self._reading_paused = pause
            if pause:
                self._socket.pause_reading()
            else:
                self._socket.resume_reading()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _end_session(self, info: DisconnectInfo, detail: str = "") -> None:
        """The peer is gone (``detail``: sent away for it); messages it sent before
        that still run first."""
        if self._runner is not None:
            self._peer_gone = (info, detail)  # _run_inbox ends the session when done
        else:
            self.session.transport_closed(info, by_server=bool(detail), detail=detail)

    # --- input ---------------------------------------------------------------------------

    def _deliver(self, message: str | bytes) -> None:
        inbox = self._inbox
        if inbox is None:
            self._inbox = [message]
        else:
            inbox.append(message)
            if len(inbox) >= MAX_WAITING and not self._paused:
                self._paused = True
                self._update_reading()
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run_inbox())

    async def _run_inbox(self) -> None:
        """Hand waiting messages to the session, one at a time, in order."""
        session = self.session
        try:
            while self._inbox and not session.closed:
                messages, self._inbox = self._inbox, []
                if self._paused:
                    self._paused = False
                    self._update_reading()
                for text in messages:
                    await session.handle_frame(text)
                    if session.closed:
                        break
        except Exception:
            log.exception("client %s: frame handling failed", session.client_id)
            session.close(Disconnect.SERVER_ERROR)
        finally:
            self._inbox = None
            self._runner = None
            if self._paused:  # a close frame from the peer must still be read
                self._paused = False
                self._update_reading()
            if self._peer_gone is not None:
                info, detail = self._peer_gone
                self.session.transport_closed(info, by_server=bool(detail), detail=detail)
                self._peer_gone = None
            elif self._failure is not None:
                failure, self._failure = self._failure, None
                self._broken(failure)

    # --- closing -------------------------------------------------------------------------

    def _peer_closed(self, payload: bytes) -> None:
        code, _ = parse_close(payload)  # validated by the reader
        socket = self._socket
        if not self._closing:
            self._closing = True
            socket.write(close_frame(code) if code != NO_STATUS else control_frame(OP_CLOSE))
            closed = Disconnect.CONNECTION_CLOSED
            info = DisconnectInfo(code, closed.reason) if code != NO_STATUS else closed
            self._end_session(info)
        socket.close()
        self._cancel_timer()
        # close() lets the buffer drain first; a peer that stopped reading gets cut.
        self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, socket.abort)

    def _broken(self, error: FrameError) -> None:
        """A framing error: fail the connection, once the messages before it are answered."""
        self._reader = None
        self._discard = True
        if self._runner is not None and not self._closing:
            self._failure = error  # _run_inbox fails the connection when they are done
            return
        socket = self._socket
        if not self._closing:
            # Through the session: replies still in its outbox go out before the close;
            # the disconnect's log line says what was wrong (once per connection).
            self.session.close(
                DisconnectInfo(error.code, error.reason), detail=f"bad frame: {error.reason}"
            )
        if not self._closing:  # the session was closed already: the frame is ours to send
            self._closing = True
            socket.write(close_frame(error.code))
        if socket.can_write_eof():
            socket.write_eof()
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(LINGER_AFTER_ERROR, socket.abort)


class ProtobufWebSocket(WebSocketConnection):
    """The Protobuf protocol's connection: binary frames both ways (a subclass, so that
    the JSON path keeps its text writes unchanged)."""

    __slots__ = ()
    _data_opcode = OP_BINARY

    def write(self, payload: bytes) -> None:
        if not self._closing:
            self._socket.writelines((binary_header(len(payload)), payload))

    def write_shared(self, shared: Shared) -> int:
        if self._closing:
            return 0
        socket = self._socket
        socket.write(shared.framing("websocket", _binary_frame, self.session.codec))
        return socket.get_write_buffer_size()


def _binary_frame(payload: bytes) -> bytes:
    return binary_header(len(payload)) + payload
