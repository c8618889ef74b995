"""An in-process client of a hub: protocol bytes in, protocol bytes out, no socket.

Rule: ``LocalClient`` is a real Transport, not a stand-in: frames go through
the same session, command handlers, outboxes and flush as a WebSocket's, so
applications can test their hooks without a network, and hubbub's own tests
can check the whole command path byte for byte.

    async with Hub(config) as hub:
        client = LocalClient(hub)
        await client.send(b'{"id":1,"connect":{}}')
        replies = await client.receive()      # [b'{"id":1,"connect":{...}}']
"""

from __future__ import annotations

import asyncio

from hubbub.codes import Disconnect
from hubbub.hub.hub import Hub
from hubbub.hub.session import Session
from hubbub.hub.transport import Shared
from hubbub.protocol.codec import JSON, Codec
from hubbub.protocol.protowire import split_delimited


class LocalClient:
    """A connection to ``hub`` whose frames are kept in memory."""

    def __init__(
        self,
        hub: Hub,
        *,
        remote: str = "local",
        headers: dict[str, str] | None = None,
        codec: Codec = JSON,
    ):
        self.remote = remote
        self.headers = dict(headers or {})
        self.frames: list[bytes] = []  # every frame the hub wrote, in order
        self.close_code: int | None = None
        self.close_reason = ""
        self._arrived = asyncio.Event()
        self.session: Session = hub.open_session(self, codec=codec)

    # --- Transport -------------------------------------------------------------------

    def write(self, payload: bytes) -> None:
        self.frames.append(payload)
        self._arrived.set()

    def write_shared(self, shared: Shared) -> int:
        self.write(shared.payload_for(self.session.codec))
        return self.buffered()

    def buffered(self) -> int:
        """Bytes written and not yet taken by ``receive``: a client that never
        receives is a slow reader, as a socket that is never read."""
        return sum(len(frame) for frame in self.frames)

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self._arrived.set()

    # --- client side -----------------------------------------------------------------

    async def send(self, frame: bytes | str) -> None:
        """Deliver one text frame to the hub and run its commands."""
        await self.session.handle_frame(frame)

    async def receive(self) -> list[bytes]:
        """The messages (replies and pushes) of the next frame(s), split on ``\\n``
        (or, with the Protobuf codec, into its length-prefixed messages, without
        their prefixes).

        Waits until the hub writes something; bound it with ``asyncio.timeout``.
        """
        if not self.frames and self.close_code is None:
            self._arrived.clear()
            await self._arrived.wait()
        if self.session.codec.binary:
            messages = [m for frame in self.frames for m in split_delimited(frame)]
        else:
            messages = [line for frame in self.frames for line in frame.split(b"\n")]
        self.frames.clear()
        return messages

    def disconnect(self) -> None:
        """The client goes away (as a peer closing its socket)."""
        self.session.transport_closed(Disconnect.CONNECTION_CLOSED)
