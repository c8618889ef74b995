"""The MapEngine interface: keyed state per channel, with a change stream.

Rule 1: a map channel holds entries (key -> the latest publication of that key)
and a change stream: every accepted publish or removal (by a client, the API,
or a key's TTL running out) gets the next offset of the channel's stream and
is delivered to the node's ``EventHandler`` exactly like a stream
publication (with ``key``, and ``removed`` for a removal), so the hub's
channel table and shared-frame broadcast deliver map updates too.
Rule 2: an entry remembers the offset of its last change. A state page read
with ``revision`` leaves out entries changed after that offset: those reach
the reader through the stream from ``revision`` on, so paging a snapshot
while it changes and then reading the stream converges exactly.
Rule 3: a position outlives the entries (``meta_ttl``); a channel whose stream
is lost gets a new epoch, so a reader from the old one learns (EpochMismatch)
that it must load the state again, never that nothing happened.
Rule 4: conditions that make a publish do nothing (``key_mode``, an older
``version``, an idempotency key seen before, removing a missing key) are not
errors: the result says ``suppressed`` and why, with Centrifugo's reasons.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from hubbub.engines.base import EventHandler, HistoryPage, HistoryQuery
from hubbub.protocol.messages import Publication, StreamPosition

#: Map modes: only ``ephemeral`` tells subscribers they cannot recover.
MAP_MODES = ("ephemeral", "durable", "recoverable", "persistent")
#: Key modes of a publish: insert only, update only.
KEY_MODES = ("", "if_new", "if_exists")

# Suppress reasons (Centrifugo's words).
SUPPRESS_IDEMPOTENCY = "idempotency"
SUPPRESS_VERSION = "version"
SUPPRESS_KEY_EXISTS = "key_exists"
SUPPRESS_KEY_NOT_FOUND = "key_not_found"

#: Defaults Centrifugo derives for a map's change stream.
DEFAULT_STREAM_SIZE = 100
DEFAULT_STREAM_TTL = 60.0
#: How long an idempotency key is remembered (Centrifugo: 5 minutes).
IDEMPOTENCY_WINDOW = 300.0


class MapStore(msgspec.Struct, frozen=True):
    """How one map channel keeps its state and stream (from its namespace)."""

    key_ttl: float = 0.0  # 0: entries never expire
    stream_size: int = DEFAULT_STREAM_SIZE
    stream_ttl: float = DEFAULT_STREAM_TTL
    meta_ttl: float = 30 * 24 * 3600.0
    ordered: bool = False


class MapWrite(msgspec.Struct, frozen=True):
    """Conditions and extras of one publish or removal."""

    key_mode: str = ""  # "if_new" / "if_exists"
    idempotency_key: str = ""
    version: int = 0  # > 0: a publish not newer than the key's version is suppressed
    version_epoch: str = ""  # a new version epoch resets the key's version
    refresh_ttl_on_suppress: bool = False  # an if_new that finds the key renews its TTL


class MapResult(msgspec.Struct, frozen=True):
    position: StreamPosition  # the stream's top after the operation
    suppressed: bool = False
    reason: str = ""  # one of the SUPPRESS_* names when suppressed


class StatePage(msgspec.Struct, frozen=True):
    """A page of a map's state: entries, the cursor of the next page ("" at the
    end) and the stream position the page was read at."""

    entries: list[Publication]
    cursor: str
    position: StreamPosition


class MapEngine(Protocol):
    """Keyed state, its change stream and its pub/sub for a node's map channels."""

    async def start(self, handler: EventHandler) -> None: ...

    async def close(self) -> None: ...

    async def subscribe(self, channel: str) -> None:
        """The node has a local subscriber of map channel ``channel``."""

    async def unsubscribe(self, channel: str) -> None: ...

    async def publish(
        self, channel: str, publication: Publication, store: MapStore, write: MapWrite
    ) -> MapResult:
        """Set ``publication.key`` to ``publication`` (a removal when ``removed``)."""

    async def read_state(
        self,
        channel: str,
        store: MapStore,
        *,
        cursor: str = "",
        limit: int = 0,
        key: str = "",
        asc: bool = False,
        revision: StreamPosition | None = None,
    ) -> StatePage:
        """A page of entries; EpochMismatch when ``revision`` names a lost stream."""

    async def read_stream(self, channel: str, store: MapStore, query: HistoryQuery) -> HistoryPage:
        """The change stream, as ``Engine.history`` reads a channel's stream."""

    async def stats(self, channel: str, store: MapStore) -> int:
        """The number of entries."""

    async def clear(self, channel: str) -> None:
        """Drop state and stream; the next write starts a new epoch."""
