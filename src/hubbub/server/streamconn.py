"""A client connection carried by one streamed HTTP response (SSE or HTTP streaming).

Rule 1: once the request is judged (server/streamgate.py), hubbub owns the
socket, as it does a WebSocket: the response head is written here, then every
frame the hub writes becomes one HTTP chunk, framed for the transport
(``Framing``): Server-Sent Events (one ``data:`` event per message), JSON lines
(one message per line), or Protobuf's length-prefixed messages as they are.
No task runs while the connection is idle; the hub's flush writes to the socket.
Rule 2: the same limits as a WebSocket: the hub disconnects a client whose
unsent bytes pass ``client.queue_max_size`` (3008), and commands that arrive
over ``/emulation`` run one at a time in arrival order, at most ``MAX_WAITING``
frames waiting (``deliver`` refuses more; ``CommandQueue``, shared with ASGI).
Rule 3: a close is a ``disconnect`` push (the stream has no close code), then
the last chunk; the peer closing its socket ends the session.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from hubbub.codes import Disconnect, DisconnectInfo
from hubbub.hub.counters import PUSH_PUBLICATION
from hubbub.hub.transport import Shared
from hubbub.protocol.codec import Codec
from hubbub.protocol.messages import DisconnectPush, Push
from hubbub.server.address import client_address

if TYPE_CHECKING:
    from hubbub.hub.hub import Hub
    from hubbub.hub.session import Session

log = logging.getLogger("hubbub.streams")

#: Seconds to wait for the peer to go after the last chunk.
CLOSE_TIMEOUT = 5.0
#: Frames of commands that may wait for the session (``/emulation`` requests).
MAX_WAITING = 64
_LAST_CHUNK = b"0\r\n\r\n"


class Framing(enum.Enum):
    """How one transport frames the messages of a payload in its response body."""

    EVENTS = "sse"  # Server-Sent Events: one ``data:`` event per message
    LINES = "lines"  # one JSON message per line
    DELIMITED = "delimited"  # Protobuf: length-prefixed messages, back to back

    def body(self, payload: bytes) -> bytes:
        """``payload`` (messages joined by the codec's separator) as response body bytes."""
        if self is Framing.EVENTS:
            return b"".join(b"data: " + line + b"\n\n" for line in payload.split(b"\n"))
        if self is Framing.LINES:
            return payload + b"\n"
        return payload

    def frame(self, payload: bytes) -> bytes:
        """``payload`` as one HTTP chunk of the response body."""
        body = self.body(payload)
        return b"%x\r\n%s\r\n" % (len(body), body)


class CommandQueue:
    """The commands of one emulated session, run one at a time in arrival order.

    ``put`` queues a frame (False past ``MAX_WAITING``) and starts one short task
    that runs what waits, then ends; ``after`` defers what must happen once the
    commands in flight are done (the peer left meanwhile). Every transport that
    carries an emulated session uses it (this module's, and ASGI's).
    """

    __slots__ = ("_frames", "_runner", "_then")

    def __init__(self) -> None:
        self._frames: list[bytes | str] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._then: Callable[[], None] | None = None

    def put(self, session: Session, frame: bytes | str) -> bool:
        frames = self._frames
        if frames is None:
            self._frames = [frame]
        elif len(frames) >= MAX_WAITING:
            return False
        else:
            frames.append(frame)
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run(session))
        return True

    def after(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` now, or once the commands in flight are done."""
        if self._runner is None:
            callback()
        else:
            self._then = callback

    async def _run(self, session: Session) -> None:
        try:
            while self._frames and not session.closed:
                frames, self._frames = self._frames, []
                for frame in frames:
                    await session.handle_frame(frame)
                    if session.closed:
                        break
        except Exception:
            log.exception("client %s: command handling failed", session.client_id)
            session.close(Disconnect.SERVER_ERROR)
        finally:
            self._frames = None
            self._runner = None
            then, self._then = self._then, None
            if then is not None:
                then()


class StreamConnection(asyncio.Protocol):
    """A hub Transport over a streamed HTTP response."""

    def __init__(
        self,
        hub: Hub,
        socket: asyncio.Transport,
        *,
        framing: Framing,
        codec: Codec,
        headers: dict[str, str],
        emulation: bool = False,
        unidirectional: bool = False,
        on_closed: Callable[[StreamConnection], None] | None = None,
    ) -> None:
        self._socket = socket
        self._framing = framing
        self._headers = headers
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._commands = CommandQueue()  # what arrives over /emulation
        self._on_closed = on_closed
        # Centrifugo's name of the transport (metrics labels), before the session reads it.
        streamed = "sse" if framing is Framing.EVENTS else "http_stream"
        self.transport_name = f"uni_{streamed}" if unidirectional else streamed
        peer = socket.get_extra_info("peername")
        # The client's address, through http_server.trusted_proxies (as WebSockets').
        self._remote = client_address(
            str(peer[0]) if peer else "", headers.get, hub.config.http_server.trusted_proxies
        )
        self.session: Session = hub.open_session(
            self, codec=codec, emulation=emulation, unidirectional=unidirectional
        )

    # --- Transport (what the hub sees) -------------------------------------------------

    @property
    def remote(self) -> str:
        return self._remote

    @property
    def headers(self) -> dict[str, str]:
        return self._headers

    def write(self, payload: bytes) -> None:
        if not self._closing:
            self._socket.write(self._framing.frame(payload))

    def write_shared(self, shared: Shared) -> int:
        # Counted here, not by the hub's broadcast loop (hub/delivery.py Rule 6).
        self.session.hub.delivery.sent.add_apart(
            self.transport_name, PUSH_PUBLICATION, shared.messages, shared.message_bytes
        )
        if self._closing:
            return 0
        socket = self._socket
        framing = self._framing
        socket.write(shared.framing(framing.value, framing.frame, self.session.codec))
        return socket.get_write_buffer_size()

    def buffered(self) -> int:
        return self._socket.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        socket = self._socket
        if socket.is_closing():
            return
        if code != Disconnect.SLOW.code:  # a slow reader gets nothing more
            info = DisconnectInfo(code, reason)
            push = Push(disconnect=DisconnectPush(code, reason, info.reconnect))
            socket.write(self._framing.frame(self.session.codec.push(push)))
        socket.write(_LAST_CHUNK)
        if socket.can_write_eof():
            socket.write_eof()
        self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, socket.abort)

    def abort(self) -> None:
        self._closing = True
        self._socket.abort()

    # --- commands (``/emulation``) -----------------------------------------------------

    def deliver(self, frame: bytes | str) -> bool:
        """Queue a frame of commands for the session; False when too many wait."""
        if self._closing or self.session.closed:
            return True  # nobody to run them for: accepted and dropped, as a closed socket's
        return self._commands.put(self.session, frame)

    # --- asyncio.Protocol ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        pass  # the request is complete: a client has nothing more to send here

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        session = self.session
        # Commands in flight finish first.
        self._commands.after(lambda: session.transport_closed(Disconnect.CONNECTION_CLOSED))
        if self._on_closed is not None:
            self._on_closed(self)
