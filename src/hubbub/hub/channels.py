"""The channel table: which local subscriptions of each channel receive what the engine delivers.

Rule 1: a subscription is in exactly one place of its channel's entry: joining
(its publications buffered with their offsets until its reply is queued),
live (delivered through the shared-frame broadcast), or catching up (its
reply positioned it past what this node has delivered so far: with pub/sub
lag, publications at or below its own position are still arriving, and it
must not get them twice; it joins the live ones when the channel passes it).
Rule 2: the channel tracks the last stream position it delivered. A jump in
offsets or a new epoch is a gap: positioned subscriptions lose state (the
``insufficient`` callback decides what they are told), joining ones are
marked and dropped when they would go live. The check costs one comparison
per publication; a publication is encoded once, whatever the subscribers.
Rule 3: nothing here awaits; the lifecycle module owns every state change
that spans an await and calls in here before and after.
Rule 4: a subscription with delta compression (``Subscription.delta``) is not
in the shared broadcast: it is in ``deltas`` and gets each publication through
its own outbox, the full data first and then, for publications published as
deltas, a Fossil patch against the publication before it (hub/deltas.py). The
patch and each encoding of it are made once per publication for every such
subscriber. In a map channel the base of a key's patch is that key's previous
publication (``keyed``), as the SDKs decode map deltas per key.
Rule 5: a channel with a sink (shared poll: each key has its own trackers)
hands its publications to the sink instead of broadcasting them.
Rule 6: a publication whose payload is not JSON (protocol/payload.py) has no
JSON push: before it is queued, every subscription of the channel whose
client speaks JSON is closed with 3506 (inappropriate protocol, as
Centrifugo), so the rest (Protobuf) share its frames as usual and no JSON
client is sent what it cannot read. The JSON encoding is tried as always:
the JSON hot path gains no check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import msgspec

from hubbub.codes import Disconnect
from hubbub.hub.counters import PUSH_JOIN, PUSH_LEAVE, PUSH_PUBLICATION
from hubbub.hub.deltas import DeltaFrames
from hubbub.protocol.codec import Codec, encode_publication_push
from hubbub.protocol.messages import Publication, Push, StreamPosition
from hubbub.protocol.payload import NotJSON

if TYPE_CHECKING:
    from hubbub.hub.delivery import Delivery
    from hubbub.hub.session import Session, Subscription

log = logging.getLogger("hubbub.hub")

#: A pending offset in ``ChannelEntry.joining`` that marks lost events.
GAP = -1
#: The JSON push of a publication that has none (Rule 6): never sent to anyone.
NOT_JSON = b""

#: A publication that arrived while a subscription was joining: its offset,
#: its JSON push, and the publication (to encode it for other codecs).
Pending = tuple[int, bytes, Publication | None]


class ChannelEntry:
    """The local subscriptions of one channel, and the engine's subscription for it."""

    __slots__ = (
        "catching_up",
        "deltas",
        "epoch",
        "joining",
        "keyed",
        "live",
        "offset",
        "previous",
        "ready",
        "sink",
    )

    def __init__(self, ready: asyncio.Future[None]) -> None:
        self.live: dict[Session, Subscription] = {}
        self.deltas: dict[Session, Subscription] = {}  # live, with delta compression (Rule 4)
        self.joining: dict[Session, list[Pending]] = {}
        self.catching_up: dict[Session, Subscription] = {}
        # The engine's subscribe for this channel: settled once; others joining wait on it.
        self.ready = ready
        # The last stream position delivered here (positioned channels), to detect gaps.
        self.epoch = ""
        self.offset = 0
        # The last publication delivered here: the base of the next one's delta.
        self.previous: Publication | None = None
        # Map channels with delta subscribers: each key's last publication (Rule 4).
        self.keyed: dict[str, Publication] | None = None
        # Shared poll channels: publications go here (to the key's trackers), not to all.
        self.sink: Callable[[Publication], None] | None = None

    def __bool__(self) -> bool:
        return bool(self.live or self.joining or self.catching_up or self.deltas)

    def __len__(self) -> int:
        return len(self.live) + len(self.joining) + len(self.catching_up) + len(self.deltas)

    def members(self, subscription: Subscription) -> dict[Session, Subscription]:
        """Where ``subscription`` is delivered once live: the broadcast or ``deltas``."""
        return self.deltas if subscription.delta else self.live


class ChannelTable:
    """Every channel with a local subscription on this node."""

    def __init__(
        self,
        delivery: Callable[[], Delivery],
        insufficient: Callable[[Subscription], None],
    ) -> None:
        self._delivery = delivery
        self._insufficient = insufficient  # a subscription lost state (gap, broker lost)
        self.entries: dict[str, ChannelEntry] = {}
        # Channels whose publications a sink takes instead of the broadcast (shared poll).
        self.sinks: dict[str, Callable[[Publication], None]] = {}

    # --- membership ------------------------------------------------------------------

    def add(self, subscription: Subscription) -> tuple[ChannelEntry, bool]:
        """Put a new subscription in the joining state; True when it is the channel's first."""
        name = subscription.name
        entry = self.entries.get(name)
        first = entry is None
        if entry is None:
            entry = self.entries[name] = ChannelEntry(asyncio.get_running_loop().create_future())
            entry.sink = self.sinks.get(name)
        entry.joining[subscription.session] = []
        return entry, first

    def baseline(self, subscription: Subscription) -> None:
        """The subscribe read the stream position: with nothing delivered here yet, that
        position is the channel's, so a loss before its first publication is seen."""
        entry = self.entries.get(subscription.name)
        if entry is not None and subscription.epoch and not entry.epoch:
            entry.epoch, entry.offset = subscription.epoch, subscription.live_from

    def go_live(self, subscription: Subscription) -> bool:
        """Deliver what was buffered after the reply's position, then deliver live.

        False when the stream broke while it joined: the caller must tell the client.
        """
        session = subscription.session
        name = subscription.name
        entry = self.entries.get(name)
        pending = entry.joining.pop(session, None) if entry is not None else None
        if entry is None or pending is None:
            return False
        if any(offset == GAP for offset, _, _ in pending):
            return False  # the caller's teardown takes it out of the table
        live_from = subscription.live_from
        codec = session.codec
        for offset, frame, publication in pending:
            if (offset == 0 or offset > live_from) and publication is not None:
                pending_frame = _pending_frame(subscription, codec, name, frame, publication)
                session.send(pending_frame, PUSH_PUBLICATION)
        if (
            subscription.positioned
            and entry.epoch
            and entry.epoch == subscription.epoch
            and live_from > entry.offset
        ):
            entry.catching_up[session] = subscription  # Rule 1: the channel is behind it
        else:
            entry.members(subscription)[session] = subscription
            self._delivery().joined(session, name)
        return True

    def remove(self, subscription: Subscription) -> bool:
        """Stop delivering to ``subscription``; True when its channel has no one left."""
        name = subscription.name
        entry = self.entries.get(name)
        if entry is None:
            return False
        session = subscription.session
        if entry.live.get(session) is subscription:
            self._delivery().take_share(session, name)  # publications queued before it left
            del entry.live[session]
        elif entry.deltas.get(session) is subscription:
            del entry.deltas[session]
        elif entry.catching_up.get(session) is subscription:
            del entry.catching_up[session]
        else:
            entry.joining.pop(session, None)
        return self._drop_if_empty(name, entry)

    def _drop_if_empty(self, name: str, entry: ChannelEntry) -> bool:
        if entry or self.entries.get(name) is not entry:
            return False
        del self.entries[name]
        self._delivery().channel_gone(name)
        return True

    def counts(self) -> dict[str, int]:
        """Channels with local subscriptions and how many."""
        return {name: len(entry) for name, entry in self.entries.items()}

    # --- engine events ---------------------------------------------------------------

    def publication(self, channel: str, publication: Publication, position: StreamPosition) -> None:
        entry = self.entries.get(channel)
        if entry is None:
            return
        if entry.sink is not None:
            entry.sink(publication)
            return
        as_delta = publication.delta  # published as a delta: never sent with the flag
        if as_delta:
            publication = msgspec.structs.replace(publication, delta=False)
        offset = position.offset
        if offset:
            if position.epoch == entry.epoch and offset <= entry.offset:
                # Published before this node's position, delivered after it (pub/sub lag):
                # live subscribers have it through their subscribe position; a joining
                # one may not (its position may be older), and filters it by its own.
                if entry.joining:
                    try:
                        frame = encode_publication_push(channel, publication)
                    except NotJSON as exc:
                        frame = self._close_json_clients(channel, entry, exc)
                    for pending in entry.joining.values():
                        pending.append((offset, frame, publication))
                return
            if offset != entry.offset + 1 or position.epoch != entry.epoch:
                if entry.epoch:  # not the first publication seen here: a gap
                    self._gap(channel, entry)
                    if self.entries.get(channel) is not entry:
                        return
                entry.epoch = position.epoch
            entry.offset = offset
            if entry.catching_up:
                self._catch_up(channel, entry, offset)
        try:
            frame = encode_publication_push(channel, publication)
        except NotJSON as exc:
            frame = self._close_json_clients(channel, entry, exc)
        if entry.live:
            self._delivery().broadcast(channel, entry.live, frame, publication)
        if entry.deltas:
            self._send_deltas(channel, entry, publication, as_delta)
        if publication.key:
            if entry.deltas or entry.keyed is not None:
                self._keep_keyed(entry, publication)
        else:
            entry.previous = publication
        if entry.joining:
            for pending in entry.joining.values():
                pending.append((offset, frame, publication))

    def _close_json_clients(self, channel: str, entry: ChannelEntry, exc: NotJSON) -> bytes:
        """Rule 6: close the JSON clients of ``channel`` before a publication they cannot
        read; return the (empty) JSON push that nobody left will be sent."""
        sessions = [
            session
            for members in (entry.live, entry.deltas, entry.joining, entry.catching_up)
            for session in members
            if not session.codec.binary
        ]
        if sessions:
            log.warning(
                "publication in %s is not JSON (%s): %d JSON clients closed with %d; "
                "publication_data_format refuses such publications instead",
                channel,
                exc,
                len(sessions),
                Disconnect.INAPPROPRIATE_PROTOCOL.code,
            )
        for session in sessions:
            # Synchronous: its subscriptions leave the entry (maybe the table) now.
            session.close(Disconnect.INAPPROPRIATE_PROTOCOL, detail="binary publication")
        return NOT_JSON

    def _send_deltas(
        self, channel: str, entry: ChannelEntry, publication: Publication, as_delta: bool
    ) -> None:
        """Rule 4: the first publication a delta subscriber gets is whole; after it, a
        publication published as a delta goes as a patch against the one before (in a
        map channel: the key's one before; its subscribers hold every key's value)."""
        if publication.key:
            if publication.removed:  # no payload: ends the key's chain at the subscribers
                frames = DeltaFrames(channel, publication, None, raw=True)
            else:
                keyed = entry.keyed.get(publication.key) if entry.keyed is not None else None
                frames = DeltaFrames(channel, publication, keyed if as_delta else None)
            for session in entry.deltas:
                session.send(frames.frame(session.codec, patch=True), PUSH_PUBLICATION)
            return
        frames = DeltaFrames(channel, publication, entry.previous if as_delta else None)
        count = size = 0  # counted once for the batch (counters Rule 4)
        for session, subscription in entry.deltas.items():
            frame = frames.frame(session.codec, patch=subscription.delta_ready)
            session.send(frame, PUSH_PUBLICATION, batched=True)
            count += 1
            size += len(frame)
            if not subscription.delta_ready:  # a Struct's attribute write costs 4 reads
                subscription.delta_ready = True
        self._delivery().sent.add(PUSH_PUBLICATION, count, size)

    @staticmethod
    def _keep_keyed(entry: ChannelEntry, publication: Publication) -> None:
        """A map key's last publication, the base of its next patch (Rule 4)."""
        keyed = entry.keyed
        if keyed is None:
            keyed = entry.keyed = {}
        if publication.removed:
            keyed.pop(publication.key, None)
        else:
            keyed[publication.key] = publication

    def _catch_up(self, channel: str, entry: ChannelEntry, offset: int) -> None:
        """Subscriptions positioned before ``offset`` are live from this publication on."""
        delivery = self._delivery()
        for session, subscription in list(entry.catching_up.items()):
            if subscription.live_from < offset:
                del entry.catching_up[session]
                entry.members(subscription)[session] = subscription
                delivery.joined(session, channel)

    def join_leave(self, channel: str, push: Push) -> None:
        """A join or leave push for the subscriptions that asked for them (encoded once
        per codec)."""
        entry = self.entries.get(channel)
        if entry is None:
            return
        frames: dict[Codec, bytes] = {}
        delivery = self._delivery()
        kind = PUSH_JOIN if push.join is not None else PUSH_LEAVE
        count = size = 0  # counted once for the batch (counters Rule 4)
        for members in (entry.live, entry.deltas, entry.catching_up):
            for session, subscription in members.items():
                if subscription.push_join_leave:
                    codec = session.codec
                    frame = frames.get(codec)
                    if frame is None:
                        frame = frames[codec] = codec.push(push)
                    delivery.send(session, frame, kind, batched=True)
                    count += 1
                    size += len(frame)
        delivery.sent.add(kind, count, size)

    def broker_lost(self, channels: Iterable[str]) -> None:
        """Events of ``channels`` may be lost: every subscription of them loses state."""
        self.lost(channels, "broker connection lost")

    def lost(self, channels: Iterable[str], why: str) -> None:
        """Every subscription of ``channels`` loses state (``why`` is logged)."""
        affected = [name for name in channels if name in self.entries]
        if affected:  # one line for the whole loss, however many channels it hit
            log.warning(
                "%s: %d subscribers of %d channels must recover",
                why,
                sum(len(self.entries[name]) for name in affected),
                len(affected),
            )
        for name in affected:
            entry = self.entries.get(name)
            if entry is None:
                continue
            for pending in entry.joining.values():
                pending.append((GAP, b"", None))
            entry.epoch, entry.offset, entry.previous, entry.keyed = "", 0, None, None
            for subscription in [
                *entry.live.values(),
                *entry.deltas.values(),
                *entry.catching_up.values(),
            ]:
                self._insufficient(subscription)

    def _gap(self, channel: str, entry: ChannelEntry) -> None:
        """Offsets of ``channel`` jumped: its positioned subscriptions lose state."""
        log.warning(
            "stream gap in %s after %s:%d: positioned subscribers must recover",
            channel,
            entry.epoch,
            entry.offset,
        )
        entry.previous, entry.keyed = None, None
        for pending in entry.joining.values():
            pending.append((GAP, b"", None))
        for subscription in [
            *entry.live.values(),
            *entry.deltas.values(),
            *entry.catching_up.values(),
        ]:
            if subscription.positioned:
                self._insufficient(subscription)


def _pending_frame(
    subscription: Subscription, codec: Codec, channel: str, frame: bytes, publication: Publication
) -> bytes:
    """A publication that arrived while ``subscription`` joined, in its session's encoding
    (whole, for a delta subscription: its first publications are never patches)."""
    if subscription.delta:
        return DeltaFrames(channel, publication, None).frame(codec, patch=False)
    return codec.publication_push_from(frame, channel, publication)
