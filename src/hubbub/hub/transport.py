"""What the hub needs from a connection's transport (a WebSocket, or a test's pipe).

Rule: every call is synchronous and never blocks; ``write`` queues one text
frame in the transport's buffer, ``buffered`` tells how much is waiting there
(the hub disconnects a client whose buffer passes its limit), ``close`` starts
a close handshake in the background. ``write_shared`` sends a payload that many
connections get unchanged in this loop turn (a channel's publications): the
first transport to encode it keeps its encoding in the ``Shared`` for the rest.
``payload`` is in the JSON protocol; a connection with another codec (Protobuf,
unidirectional JSON) takes ``payload_for(codec)``, made once per codec from the
same publications, and a transport that frames payloads its own way (SSE,
HTTP streaming, binary WebSocket frames) keeps its framing in ``framed``.
(``encoded``: the plain frame; ``deflated``: the frame compressed with
permessage-deflate, no context takeover, for transports sharing one compressor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from hubbub.protocol.codec import JSON, Codec


class Shared:
    """One frame payload for many connections, with slots for its encoded forms."""

    __slots__ = ("_others", "_source", "deflated", "encoded", "framed", "messages", "payload")

    def __init__(
        self,
        payload: bytes,
        source: Callable[[Codec], bytes] | None = None,
        *,
        messages: int = 1,
    ) -> None:
        self.payload = payload  # the JSON protocol's
        self.messages = messages  # how many it joins (for the metrics)
        self.encoded: bytes | None = None  # set by the first transport that encodes it
        self.deflated: bytes | None = None  # the same, compressed, by the first that compresses
        # Framings of a payload, by framing and codec (first transport to frame it).
        self.framed: dict[tuple[str, Codec], bytes] | None = None
        self._source = source  # makes the payload in another codec
        self._others: dict[Codec, bytes] | None = None

    @property
    def message_bytes(self) -> int:
        """The bytes of its messages without the newlines that join them (metrics)."""
        return len(self.payload) - self.messages + 1

    def payload_for(self, codec: Codec) -> bytes:
        """The payload in ``codec``: made on first use, then shared."""
        if codec is JSON:
            return self.payload
        others = self._others
        if others is None:
            others = self._others = {}
        payload = others.get(codec)
        if payload is None:
            if self._source is None:
                raise RuntimeError("this shared payload exists in the JSON protocol only")
            payload = others[codec] = self._source(codec)
        return payload

    def framing(self, name: str, build: Callable[[bytes], bytes], codec: Codec) -> bytes:
        """The payload in ``codec`` framed by ``build``, made once for every transport
        that frames it the same way (``name``) in the same codec."""
        framed = self.framed
        if framed is None:
            framed = self.framed = {}
        key = (name, codec)
        frame = framed.get(key)
        if frame is None:
            frame = framed[key] = build(self.payload_for(codec))
        return frame


class Transport(Protocol):
    @property
    def remote(self) -> str:
        """The peer's address, for hooks and logs."""

    @property
    def headers(self) -> dict[str, str]:
        """Handshake headers (lower-case names), for hooks."""

    def write(self, payload: bytes) -> None:
        """Send ``payload`` as one text frame."""

    def write_shared(self, shared: Shared) -> int:
        """Send ``shared.payload`` as one text frame; return ``buffered()`` after it."""

    def buffered(self) -> int:
        """Bytes accepted by ``write`` and not yet handed to the kernel."""

    def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and ``reason`` and drop the connection."""


@runtime_checkable
class CommandInbox(Protocol):
    """A transport whose client sends its commands apart, in ``/emulation`` requests."""

    def deliver(self, frame: bytes | str) -> bool:
        """Queue a frame of commands for the session; False when too many wait."""
