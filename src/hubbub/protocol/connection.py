"""The per-connection protocol state machine, sans I/O: frames in, frames out.

Rule 1: everything that decides whether a frame is acceptable in the current
state lives here; the hub only executes commands this returns.
Rule 2: no asyncio, no sockets, no clock. The caller feeds received frames to
``receive_frame`` and takes bytes to write from ``data_to_send``.

    NEW --connect--> CONNECTING --accept_connect()--> CONNECTED
     ^                    |
     +---reject_connect()-+            any violation --> CLOSED (with a code)

Outgoing replies and pushes are queued in a bounded outbox and joined into one
frame per flush (with ``\\n`` for JSON, back to back for Protobuf's
length-prefixed messages): the protocol allows several replies and pushes per
frame, and one write per connection per loop turn is what makes fan-out fast.
The connection's ``codec`` decodes its frames and encodes what it is sent.
"""

from __future__ import annotations

import enum

import msgspec

from hubbub.codes import Disconnect, DisconnectInfo
from hubbub.protocol.codec import JSON, Codec, FrameError, command_method
from hubbub.protocol.messages import Command


class State(enum.Enum):
    NEW = "new"  # waiting for connect
    CONNECTING = "connecting"  # connect received, the hub has not answered yet
    CONNECTED = "connected"
    CLOSED = "closed"


class Received(msgspec.Struct, frozen=True):
    """A command to execute: its method name and the command itself."""

    method: str
    command: Command


class ProtocolViolation(Exception):
    """The peer broke the protocol; the connection must close with ``disconnect``."""

    def __init__(self, disconnect: DisconnectInfo, detail: str) -> None:
        super().__init__(detail)
        self.disconnect = disconnect
        self.detail = detail


class ClientProtocol:
    """State and outbox of one client connection."""

    __slots__ = ("_ping_outstanding", "close_reason", "codec", "outbox", "outbox_bytes", "state")

    def __init__(self, codec: Codec = JSON) -> None:
        self.codec = codec
        self.state = State.NEW
        self.outbox: list[bytes] | None = None  # None when empty: an idle client holds no list
        self.outbox_bytes = 0
        self._ping_outstanding = False
        self.close_reason: DisconnectInfo | None = None

    # --- input -----------------------------------------------------------------------

    def receive_frame(self, frame: bytes | str) -> list[Received]:
        """Validate a frame and return the commands to run, in order.

        Raises ProtocolViolation (and moves to CLOSED) on anything the protocol
        answers with a disconnect: undecodable JSON, a command before connect, a
        second connect, an id-less command other than ``send``, an unknown method,
        or a pong nobody asked for.
        """
        if self.state is State.CLOSED:
            return []
        try:
            commands = self.codec.decode_commands(frame)
        except FrameError as exc:
            raise self._violation(Disconnect.BAD_REQUEST, f"malformed frame: {exc}") from None
        received: list[Received] = []
        state = self.state
        for command in commands:
            method = command_method(command)
            if method is None:
                raise self._violation(Disconnect.BAD_REQUEST, "several methods in one command")
            if method == "":
                if command.id:
                    raise self._violation(Disconnect.BAD_REQUEST, "unknown method")
                if not self._ping_outstanding:
                    raise self._violation(Disconnect.BAD_REQUEST, "pong without ping")
                self._ping_outstanding = False
                continue
            if command.id <= 0 and method != "send":
                raise self._violation(Disconnect.BAD_REQUEST, f"{method} without id")
            if method == "connect":
                if state is not State.NEW:
                    raise self._violation(Disconnect.BAD_REQUEST, "second connect")
                state = State.CONNECTING
            elif state is State.NEW:
                raise self._violation(Disconnect.BAD_REQUEST, f"{method} before connect")
            received.append(Received(method, command))
        self.state = state
        return received

    def accept_connect(self) -> None:
        """The hub accepted the connect command."""
        if self.state is State.CONNECTING:
            self.state = State.CONNECTED

    def reject_connect(self) -> None:
        """The hub refused the connect command with an error: a new connect may come."""
        if self.state is State.CONNECTING:
            self.state = State.NEW

    # --- heartbeat -------------------------------------------------------------------

    def ping(self) -> bool:
        """Record that a ping ``{}`` goes out now; False if the last one is unanswered.

        The caller sends the ping frame itself (through its flush path), so it
        leaves with the next write like any other message.
        """
        if self._ping_outstanding:
            return False
        self._ping_outstanding = True
        return True

    @property
    def ping_outstanding(self) -> bool:
        return self._ping_outstanding

    # --- output ----------------------------------------------------------------------

    def queue(self, data: bytes) -> int:
        """Queue an encoded reply or push; returns the bytes now pending."""
        outbox = self.outbox
        if outbox is None:
            self.outbox = [data]
        else:
            outbox.append(data)
        self.outbox_bytes += len(data)
        return self.outbox_bytes

    def data_to_send(self) -> bytes:
        """Everything pending, as one frame payload (b"" when nothing is)."""
        outbox = self.outbox
        if not outbox:
            return b""
        data = outbox[0] if len(outbox) == 1 else self.codec.separator.join(outbox)
        self.outbox = None
        self.outbox_bytes = 0
        return data

    def close(self, disconnect: DisconnectInfo) -> None:
        """Move to CLOSED; what is still queued may be flushed before the close frame."""
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self.close_reason = disconnect

    def drop_output(self) -> None:
        """Forget queued output (a slow client gets only the close frame)."""
        self.outbox = None
        self.outbox_bytes = 0

    def _violation(self, disconnect: DisconnectInfo, detail: str) -> ProtocolViolation:
        self.close(disconnect)
        return ProtocolViolation(disconnect, detail)
