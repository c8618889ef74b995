"""What the hub needs from a connection's transport (a WebSocket, or a test's pipe).

Rule: every call is synchronous and never blocks; ``write`` queues one text
frame in the transport's buffer, ``buffered`` tells how much is waiting there
(the hub disconnects a client whose buffer passes its limit), ``close`` starts
a close handshake in the background. ``write_shared`` sends a payload that many
connections get unchanged in this loop turn (a channel's publications): the
first transport to encode it keeps its encoding in the ``Shared`` for the rest
(``encoded``: the plain frame; ``deflated``: the frame compressed with
permessage-deflate, no context takeover, for transports sharing one compressor).
"""

from __future__ import annotations

from typing import Protocol


class Shared:
    """One frame payload for many connections, with a slot for its encoded form."""

    __slots__ = ("deflated", "encoded", "payload")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.encoded: bytes | None = None  # set by the first transport that encodes it
        self.deflated: bytes | None = None  # the same, compressed, by the first that compresses


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
