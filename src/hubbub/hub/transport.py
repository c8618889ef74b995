"""What the hub needs from a connection's transport (a WebSocket, or a test's pipe).

Rule: every call is synchronous and never blocks; ``write`` queues one text
frame in the transport's buffer, ``buffered`` tells how much is waiting there
(the hub disconnects a client whose buffer passes its limit), ``close`` starts
a close handshake in the background.
"""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    @property
    def remote(self) -> str:
        """The peer's address, for hooks and logs."""

    @property
    def headers(self) -> dict[str, str]:
        """Handshake headers (lower-case names), for hooks."""

    def write(self, payload: bytes) -> None:
        """Send ``payload`` as one text frame."""

    def buffered(self) -> int:
        """Bytes accepted by ``write`` and not yet handed to the kernel."""

    def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and ``reason`` and drop the connection."""
