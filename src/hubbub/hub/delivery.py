"""The hot path: queue encoded frames on connections and flush once per loop turn.

Rule 1: a publication is encoded once (by the caller). Publications of a
channel are queued once per channel (``broadcast``), not per subscriber: at
the end of the loop turn they become one frame payload, and the same bytes go
to every live subscriber (``Transport.write_shared``). Fan-out never awaits.
Rule 2: everything else (replies, pushes to one connection) goes to the
connection's own outbox; each connection with pending output gets one write
per loop turn: everything queued is joined with ``\\n`` into one frame.
Rule 3: order per connection is the order things were queued. A connection's
own outbox is written before its channels' shared frames; so when something
is queued for a connection after its channels already have publications this
turn, those publications are first moved into its outbox ("taking its share"),
and it gets the rest of them there too; so does a connection subscribed to
several channels that published in the same turn (their publications merged
in publication order). Subscribers that arrive or leave mid-turn get exactly
the publications queued while they were subscribed.
Rule 4: a batch holds its publications in the JSON protocol (``items``); a
subscriber with another codec (Protobuf, unidirectional JSON) gets the same
publications encoded once per codec for the whole batch (``items_for``), so a
channel with JSON and Protobuf subscribers encodes each publication at most
once per codec, and the JSON path is what it was.
Rule 5: a connection whose pending bytes (outbox plus the transport's buffer)
pass ``queue_max_size`` is disconnected with 3008 (slow); publishers never wait
for the slowest reader. A channel batch larger than that limit is written at
once, so that a burst reaches the transports and only the slow ones are cut.
Rule 6 (metrics): what is written is counted by frame type per batch, never
per subscriber of a broadcast: a channel batch once, a join or leave once (by
its caller), a reply or a push to one connection on its own. A connection of
another transport than the WebSocket adds its share apart (counters.py Rule
4): on the outbox path through its ``transport_apart`` flag, on the shared
path in its transport's own ``write_shared``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from hubbub.hub.counters import PUSH_PUBLICATION, SentCounts
from hubbub.hub.transport import Shared
from hubbub.protocol.codec import JSON, Codec

if TYPE_CHECKING:
    from hubbub.hub.session import Session
    from hubbub.protocol.messages import Publication


class ChannelBatch:
    """A channel's publications queued in this loop turn."""

    __slots__ = ("_others", "channel", "items", "members", "publications", "seqs", "size", "taken")

    def __init__(self, channel: str, members: Mapping[Session, Any]) -> None:
        self.channel = channel
        self.items: list[bytes] = []  # the publications' pushes in the JSON protocol
        self.publications: list[Publication] = []  # what they encode (for other codecs)
        self.seqs: list[int] = []  # each item's place among all channels' items this turn
        self.size = 0  # bytes in items
        self.members = members  # the channel's live subscribers (read again at flush)
        self.taken: dict[Session, int] = {}  # session -> items already in its own outbox
        self._others: dict[Codec, list[bytes]] | None = None  # items in other codecs

    def items_for(self, codec: Codec) -> list[bytes]:
        """``items`` in ``codec``, each encoded once (Rule 4)."""
        if codec is JSON:
            return self.items
        others = self._others
        if others is None:
            others = self._others = {}
        encoded = others.setdefault(codec, [])
        items = self.items
        for index in range(len(encoded), len(items)):  # the batch may have grown since
            encoded.append(
                codec.publication_push_from(items[index], self.channel, self.publications[index])
            )
        return encoded

    def payload_for(self, codec: Codec) -> bytes:
        """The whole batch as one frame payload in ``codec``."""
        items = self.items_for(codec)
        return items[0] if len(items) == 1 else codec.separator.join(items)


class Delivery:
    """Outbox bookkeeping for every connection of a hub."""

    __slots__ = (
        "_batches",
        "_dirty",
        "_flush_handle",
        "_loop",
        "_on_slow",
        "_seq",
        "limit",
        "sent",
        "stats_bytes",
        "stats_frames",
        "stats_messages",
        "stats_shared_bytes",
        "stats_shared_messages",
    )

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
        self._batches: dict[str, ChannelBatch] = {}
        self._seq = 0  # counts publications queued, to merge channels in their order
        self._flush_handle: asyncio.Handle | None = None
        # What was written, for metrics and benchmarks (counted per batch, Rule 1):
        self.stats_frames = 0  # WebSocket frames (writes)
        self.stats_messages = 0  # replies and pushes written through connections' outboxes
        self.stats_bytes = 0  # their payload bytes
        self.stats_shared_messages = 0  # publications written in shared channel frames
        self.stats_shared_bytes = 0  # their payload bytes (a frame's, times its writes)
        self.sent = SentCounts()  # messages queued or written, by frame type (Rule 6)

    # --- queueing --------------------------------------------------------------------

    def broadcast(
        self,
        channel: str,
        members: Mapping[Session, Any],
        data: bytes,
        publication: Publication,
    ) -> None:
        """Queue a publication (``data``: its JSON push) for every live subscriber of
        ``channel`` (``members``)."""
        batch = self._batches.get(channel)
        if batch is None:
            batch = self._batches[channel] = ChannelBatch(channel, members)
            if self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self.flush)
        batch.items.append(data)
        batch.publications.append(publication)
        batch.seqs.append(self._seq)
        self._seq += 1
        batch.size += len(data) or len(publication.data)  # b"": not JSON (channels Rule 6)
        if batch.size > self.limit:
            # One turn published more than a subscriber may have pending: write it now,
            # so that transports' buffers (not this batch) tell who is slow.
            self.flush()

    def send(self, session: Session, data: bytes, kind: str, *, batched: bool = False) -> None:
        """Queue one encoded reply or push of frame type ``kind`` for ``session``;
        ``batched``: one of a broadcast, whose caller counts them all at once (Rule 6)."""
        if not batched:
            sent = self.sent
            sent.messages[kind] += 1
            sent.bytes[kind] += len(data)
        if session.transport_apart:
            self.sent.add_apart(session.transport_name, kind, 1, len(data))
        if self._batches and session.subscriptions:
            self.take_share(session)
        protocol = session.protocol
        if not protocol.outbox:
            self._dirty.append(session)
            if self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self.flush)
        # The limit is on everything pending for the peer: this outbox plus what
        # the transport holds unsent (each alone could reach it, twice in all).
        if protocol.queue(data) + session.transport.buffered() > self.limit:
            self._on_slow(session)

    def fanout(self, sessions: Iterable[Session], data: bytes, kind: str) -> None:
        """Queue the same frame (of frame type ``kind``) for some sessions."""
        count = 0
        for session in sessions:
            self.send(session, data, kind, batched=True)
            count += 1
        self.sent.add(kind, count, count * len(data))

    def take_share(self, session: Session, leaving: str | None = None) -> None:
        """Move the publications queued so far for ``session``'s channels into its
        outbox, in the order they were published (across channels too).

        Called before anything else is queued for it, before it stops being a
        subscriber (``leaving``: the channel it leaves, already out of its
        subscriptions), before its output is flushed ahead of a close, and at
        flush for connections with a share taken or in several channel batches.
        """
        batches = self._batches
        if not batches or session.closed:
            return
        names: Iterable[str] = session.subscriptions
        if leaving is not None:
            names = (*session.subscriptions, leaving)
        share: list[tuple[int, bytes]] = []
        channels = 0
        for name in names:
            batch = batches.get(name)
            if batch is None or session not in batch.members:
                continue
            start = batch.taken.get(session, 0)
            end = len(batch.items)
            if start < end:
                items = batch.items_for(session.codec)
                share += zip(batch.seqs[start:end], items[start:end], strict=True)
                channels += 1
            batch.taken[session] = end
        if not share:
            return
        if channels > 1:
            share.sort(key=_first)
        protocol = session.protocol
        if not protocol.outbox:
            self._dirty.append(session)
        size = 0
        for _, data in share:
            protocol.queue(data)
            size += len(data)
        self.sent.add(PUSH_PUBLICATION, len(share), size)
        if session.transport_apart:
            self.sent.add_apart(session.transport_name, PUSH_PUBLICATION, len(share), size)

    def joined(self, session: Session, channel: str) -> None:
        """``session`` just became a live subscriber: it gets only what comes next."""
        batch = self._batches.get(channel)
        if batch is not None:
            batch.taken[session] = len(batch.items)

    def channel_gone(self, channel: str) -> None:
        """The last subscriber left: a later batch must follow the next subscriber set."""
        self._batches.pop(channel, None)

    # --- writing ---------------------------------------------------------------------

    def flush(self) -> None:
        """Write every pending outbox, then every channel's shared frame; once per turn."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()  # when called early, the scheduled one has nothing
            self._flush_handle = None
        batches = self._batches
        if batches:
            for session in self._merged_sessions(batches):
                self.take_share(session)
            self._batches = {}
        dirty = self._dirty
        if dirty:
            self._dirty = []
            self._flush_outboxes(dirty)
        for batch in batches.values():
            self._write_shared(batch)

    def flush_session(self, session: Session) -> None:
        """Write what ``session`` has pending now (before a close frame)."""
        self.take_share(session)
        protocol = session.protocol
        messages = len(protocol.outbox or ())
        data = protocol.data_to_send()
        if data:
            session.transport.write(data)
            self.stats_frames += 1
            self.stats_messages += messages
            self.stats_bytes += len(data)

    @staticmethod
    def _merged_sessions(batches: dict[str, ChannelBatch]) -> set[Session]:
        """Sessions whose publications cannot be one shared frame: those that already
        took a share this turn, and those in more than one channel batch."""
        merged: set[Session] = set()
        for batch in batches.values():
            merged.update(batch.taken)
        if len(batches) > 1:
            seen: set[Session] = set()
            for batch in batches.values():
                for session in batch.members:
                    if session in seen:
                        merged.add(session)
                    else:
                        seen.add(session)
        return merged

    def _flush_outboxes(self, dirty: list[Session]) -> None:
        limit = self.limit
        frames = messages = size = 0
        for session in dirty:
            if session.closed:
                continue
            protocol = session.protocol
            queued = len(protocol.outbox or ())
            data = protocol.data_to_send()
            if not data:
                continue
            transport = session.transport
            transport.write(data)
            frames += 1
            messages += queued
            size += len(data)
            if transport.buffered() > limit:
                self._on_slow(session)
        self.stats_frames += frames
        self.stats_messages += messages
        self.stats_bytes += size

    def _write_shared(self, batch: ChannelBatch) -> None:
        items = batch.items
        count = len(items)
        shared = Shared(
            items[0] if count == 1 else b"\n".join(items), batch.payload_for, messages=count
        )
        limit = self.limit
        taken = batch.taken
        slow: list[Session] = []
        frames = 0
        # A copy: a write never calls back into the hub, but a slow close would
        # change the live subscribers while they are iterated.
        for session in tuple(batch.members):
            if session.closed or (taken and session in taken):
                continue
            frames += 1
            if session.transport.write_shared(shared) > limit:
                slow.append(session)
        self.stats_frames += frames
        self.stats_shared_messages += frames * count
        self.stats_shared_bytes += frames * len(shared.payload)
        self.sent.add(PUSH_PUBLICATION, frames * count, frames * batch.size)
        for session in slow:
            self._on_slow(session)


def _first(pair: tuple[int, bytes]) -> int:
    return pair[0]
