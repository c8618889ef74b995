"""The hot path: queue encoded frames on connections and flush once per loop turn.

Rule 1: a publication is encoded once (by the caller) and the same bytes object
is appended to every subscriber's outbox; fan-out never awaits and wakes no task.
Rule 2: each connection with pending output gets one write per event-loop turn:
everything queued is joined with ``\\n`` into one WebSocket frame.
Rule 3: a connection whose pending bytes (outbox plus the transport's buffer)
pass ``queue_max_size`` is disconnected with 3008 (slow); publishers never wait
for the slowest reader.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hubbub.hub.session import Session


class Delivery:
    """Outbox bookkeeping for every connection of a hub."""

    __slots__ = ("_dirty", "_flush_handle", "_loop", "_on_slow", "limit", "stats_frames")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        limit: int,
        on_slow: Callable[[Session], None],
    ) -> None:
        self._loop = loop
        self.limit = limit
        self._on_slow = on_slow
        self._dirty: list[Session] = []
        self._flush_handle: asyncio.Handle | None = None
        self.stats_frames = 0  # WebSocket frames written (for metrics and benchmarks)

    def send(self, session: Session, data: bytes) -> None:
        """Queue one encoded reply or push for ``session``."""
        protocol = session.protocol
        if not protocol.outbox:
            self._dirty.append(session)
            if self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self.flush)
        if protocol.queue(data) > self.limit:
            self._on_slow(session)

    def fanout(self, sessions: Iterable[Session], data: bytes) -> None:
        """Queue the same frame for many sessions (the publication hot path)."""
        size = len(data)
        limit = self.limit
        dirty = self._dirty
        slow: list[Session] | None = None
        for session in sessions:
            protocol = session.protocol
            outbox = protocol.outbox
            if not outbox:
                dirty.append(session)
            outbox.append(data)
            protocol.outbox_bytes += size
            if protocol.outbox_bytes > limit:
                if slow is None:
                    slow = []
                slow.append(session)
        if dirty and self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self.flush)
        if slow is not None:
            for session in slow:
                self._on_slow(session)

    def flush(self) -> None:
        """Write each pending outbox as one frame; runs once per loop turn."""
        self._flush_handle = None
        dirty = self._dirty
        if not dirty:
            return
        self._dirty = []
        limit = self.limit
        frames = 0
        for session in dirty:
            if session.closed:
                continue
            data = session.protocol.data_to_send()
            if not data:
                continue
            transport = session.transport
            transport.write(data)
            frames += 1
            if transport.buffered() > limit:
                self._on_slow(session)
        self.stats_frames += frames

    def flush_session(self, session: Session) -> None:
        """Write what ``session`` has pending now (before a close frame)."""
        data = session.protocol.data_to_send()
        if data:
            session.transport.write(data)
