"""``uni_websocket``: a WebSocket the client only reads, for clients without an SDK.

Rule: the client's first text message is a bare connect request (Centrifugo's
``ConnectRequest``: token, data, subs, ...); the server answers with a
``{"connect": {...}}`` push and then sends bare pushes (``{"channel", "pub"}``),
one message per text frame so that ``JSON.parse(event.data)`` works, and
``{}`` as its ping, which needs no answer. Anything the client sends after
its connect is ignored; a first message that is not a connect request closes
the connection with 3501.
"""

from __future__ import annotations

import logging

from hubbub.codes import Disconnect
from hubbub.hub.counters import PUSH_PUBLICATION
from hubbub.hub.transport import Shared
from hubbub.server.streamgate import connect_command
from hubbub.server.wsconn import WebSocketConnection, write_text_frame
from hubbub.websocket.frames import text_header

log = logging.getLogger("hubbub.websocket")


class UniWebSocket(WebSocketConnection):
    """The connection of a ``uni_websocket`` client (codec: unidirectional JSON)."""

    __slots__ = ("_connect_seen",)
    _unidirectional = True
    transport_name = "uni_websocket"
    _connect_seen: bool

    def write(self, payload: bytes) -> None:
        if not self._closing:
            for message in payload.split(b"\n"):
                write_text_frame(self._socket, message)

    def write_shared(self, shared: Shared) -> int:
        # Counted here, not by the hub's broadcast loop (hub/delivery.py Rule 6).
        self.session.hub.delivery.sent.add_apart(
            self.transport_name, PUSH_PUBLICATION, shared.messages, shared.message_bytes
        )
        if self._closing:
            return 0
        socket = self._socket
        socket.write(shared.framing("uni_websocket", _text_frames, self.session.codec))
        return socket.get_write_buffer_size()

    def _deliver(self, message: str | bytes) -> None:
        session = self.session
        if getattr(self, "_connect_seen", False):
            return  # after the connect: a unidirectional client has nothing to say
        self._connect_seen = True
        try:
            command = connect_command(message)
        except ValueError as exc:
            log.info("client %s: bad uni_websocket connect: %s", session.client_id, exc)
            session.close(Disconnect.BAD_REQUEST)
            return
        super()._deliver(command.decode())


def _text_frames(payload: bytes) -> bytes:
    """One text frame per message of ``payload``."""
    return b"".join(text_header(len(m)) + m for m in payload.split(b"\n"))
