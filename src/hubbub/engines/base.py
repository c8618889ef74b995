"""The Engine interface: the one door between a node and shared channel state.

Rule 1: an engine delivers every publication, join and leave of a channel the
node is subscribed to by calling the node's ``EventHandler`` (the hub),
including the node's own publications: there is one delivery path.
Rule 2: offsets are assigned by the engine, gap-free and increasing per
channel stream; an ``epoch`` names one life of a stream and changes when the
stream is lost, so a client can tell a gap from a quiet channel.
Rule 3: every engine passes the shared conformance suite (tests/test_engine_conformance.py
and its siblings, on the fixtures of tests/engine_fixtures.py).
Rule 4: a control message (``publish_control``) reaches every node, this one
included, or the one node named; it is at most once (a node that is away
misses it), and its bytes are the control plane's business, not the engine's.
Rule 5: whatever a backing server raises leaves an engine as ``EngineUnavailable``
(an expected outage: a clear message, never a traceback) or as a bug.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import msgspec

from hubbub.errors import HubbubError
from hubbub.protocol.messages import ClientInfo, Publication, StreamPosition


class EventHandler(Protocol):
    """What an engine calls on the node when something happens in a channel."""

    #: This node's id: control messages addressed to it are delivered to it.
    node_id: str

    def handle_publication(
        self, channel: str, publication: Publication, position: StreamPosition
    ) -> None: ...

    def handle_join(self, channel: str, info: ClientInfo) -> None: ...

    def handle_leave(self, channel: str, info: ClientInfo) -> None: ...

    def handle_broker_lost(self, channels: Iterable[str]) -> None:
        """Events of ``channels`` may have been lost (the broker connection broke):
        their subscribers must recover. The memory engine never calls it."""

    def handle_control(self, data: bytes) -> None:
        """A control message published by a node (maybe this one) for every node or this."""


class HistoryOptions(msgspec.Struct, frozen=True):
    """How a channel keeps history; size 0 or ttl 0 means no history (offset stays 0)."""

    size: int = 0
    ttl: float = 0.0
    meta_ttl: float = 0.0  # how long the stream position outlives its publications

    @property
    def enabled(self) -> bool:
        return self.size > 0 and self.ttl > 0


class PublishResult(msgspec.Struct, frozen=True):
    position: StreamPosition
    duplicate: bool = False  # the idempotency key was seen: nothing was published


class HistoryQuery(msgspec.Struct, frozen=True):
    """``since``: publications after (or, reversed, before) this position.

    ``limit``: 0 returns only the stream position, -1 everything kept, N at most N.
    """

    since: StreamPosition | None = None
    limit: int = 0
    reverse: bool = False


class HistoryPage(msgspec.Struct, frozen=True):
    publications: list[Publication]
    position: StreamPosition  # the top of the stream: last offset and current epoch


class EpochMismatch(Exception):
    """``since.epoch`` is not the stream's current epoch: the position is gone.

    ``position`` is the stream's current top, so that a caller who must tell
    the client where the stream stands needs no second read.
    """

    def __init__(self, channel: str, position: StreamPosition) -> None:
        super().__init__(channel)
        self.channel = channel
        self.position = position


class EngineUnavailable(HubbubError):
    """The engine's backend (Redis, NATS, ...) cannot be reached or failed a command.

    Engines map their library's connection and command errors to this, at the one
    place those enter (``raise EngineUnavailable(...) from exc``). It is an expected
    condition during an outage: callers answer error 100 (temporary) and log one
    line, never a traceback.
    """


class PresenceStats(msgspec.Struct, frozen=True):
    num_clients: int
    num_users: int


class Engine(Protocol):
    """Broker (publish/subscribe), history and presence for a node."""

    #: True when calls made in one loop turn travel together (one round trip), so a
    #: connection's publishes gain from being in flight at once (hub/inflight.py).
    pipelined: bool

    async def start(self, handler: EventHandler) -> None:
        """Begin delivering events to ``handler``."""

    async def close(self) -> None: ...

    @property
    def available(self) -> bool:
        """False while the backing server is unreachable (``/ready`` answers 503)."""

    async def publish_control(self, data: bytes, node: str = "") -> None:
        """Deliver ``data`` to ``handle_control`` of every node, or of the node ``node``."""

    async def subscribe(self, channel: str) -> None:
        """The node has a local subscriber: deliver this channel's events to it."""

    async def unsubscribe(self, channel: str) -> None:
        """The node's last local subscriber left."""

    async def publish(
        self,
        channel: str,
        publication: Publication,
        history: HistoryOptions,
        *,
        idempotency_key: str = "",
    ) -> PublishResult:
        """Store (when history is on) and deliver; the result holds the new position."""

    async def publish_join(self, channel: str, info: ClientInfo) -> None: ...

    async def publish_leave(self, channel: str, info: ClientInfo) -> None: ...

    async def history(
        self, channel: str, query: HistoryQuery, history: HistoryOptions
    ) -> HistoryPage:
        """Read a channel's stream; raises EpochMismatch when ``since`` is stale."""

    async def remove_history(self, channel: str) -> None: ...

    async def add_presence(
        self, channel: str, client_id: str, info: ClientInfo, expire: float
    ) -> None: ...

    async def remove_presence(self, channel: str, client_id: str) -> None: ...

    async def presence(self, channel: str) -> dict[str, ClientInfo]: ...

    async def presence_stats(self, channel: str) -> PresenceStats: ...
