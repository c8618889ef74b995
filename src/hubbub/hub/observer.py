"""What the hub tells the outside about its connections: one interface for logs,
metrics and live traces.

Rule 1: the hub calls its ``Observers`` at a few points only: a connection
accepted, a connection gone, a command answered, and an event of a channel
someone traces. The fan-out hot path calls nothing: figures the hub keeps
anyway (sessions, subscribers, ``Delivery``'s counters) are read when asked.
Rule 2: an observer records and returns: it never awaits and never raises
(``Observers`` logs a failing one and goes on).
Rule 3: a channel event costs one truthiness check while nobody traces:
the hub looks at ``Observers.traced_channels`` before building anything.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hubbub.codes import DisconnectInfo
    from hubbub.hub.session import Session
    from hubbub.protocol import Received

log = logging.getLogger("hubbub.hub")


class Observer:
    """Base class: each method does nothing; override what you need."""

    def connected(self, session: Session) -> None:
        """``session`` sent a connect the hub accepted."""

    def disconnected(
        self, session: Session, disconnect: DisconnectInfo, *, by_server: bool, detail: str
    ) -> None:
        """``session`` is gone: closed by the server (``by_server``, with ``detail``
        saying why when the client misbehaved) or by the peer. Also called for
        connections that never completed connect (``session.user`` is "" then)."""

    def command_done(
        self, session: Session, received: Received, seconds: float, error: int
    ) -> None:
        """A command ran for ``seconds``; ``error`` is the reply's error code (0: none)."""

    def channel_event(self, channel: str, kind: str, payload: bytes) -> None:
        """An event of a traced channel: ``kind`` is "publication", "join" or "leave",
        ``payload`` the push as clients get it."""


class Observers(Observer):
    """The hub's observers, called in the order they were added."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []
        # channel -> how many tracers watch it; empty while nobody traces.
        self.traced_channels: dict[str, int] = {}

    def add(self, observer: Observer) -> None:
        self._observers.append(observer)

    def remove(self, observer: Observer) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def trace_channel(self, channel: str) -> None:
        self.traced_channels[channel] = self.traced_channels.get(channel, 0) + 1

    def untrace_channel(self, channel: str) -> None:
        left = self.traced_channels.get(channel, 0) - 1
        if left > 0:
            self.traced_channels[channel] = left
        else:
            self.traced_channels.pop(channel, None)

    def connected(self, session: Session) -> None:
        for observer in self._observers:
            try:
                observer.connected(session)
            except Exception:
                log.exception("observer %r failed", observer)

    def disconnected(
        self, session: Session, disconnect: DisconnectInfo, *, by_server: bool, detail: str
    ) -> None:
        for observer in self._observers:
            try:
                observer.disconnected(session, disconnect, by_server=by_server, detail=detail)
            except Exception:
                log.exception("observer %r failed", observer)

    def command_done(
        self, session: Session, received: Received, seconds: float, error: int
    ) -> None:
        for observer in self._observers:
            try:
                observer.command_done(session, received, seconds, error)
            except Exception:
                log.exception("observer %r failed", observer)

    def channel_event(self, channel: str, kind: str, payload: bytes) -> None:
        for observer in self._observers:
            try:
                observer.channel_event(channel, kind, payload)
            except Exception:
                log.exception("observer %r failed", observer)
