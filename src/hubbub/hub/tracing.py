"""Live tracing (the admin UI's): a stream of what happens in a channel or to a user,
on every node of the cluster.

Rule 1: the tracer is a hub ``Observer`` only while something is traced (by a
watcher here or another node's); otherwise it costs nothing. A channel event
is built only for channels the hub was told are traced
(``Observers.traced_channels``); user events are a set lookup per command.
Rule 2: each watcher has a bounded queue; when it is full, events are dropped
and counted (the stream says how many), never buffered without bound and never
slowing the hub. The same holds for the events a node sends to another.
Rule 3: a traced channel without local subscribers is still delivered to the
watcher's node: the tracer subscribes the node to it in the engine, and lets go
when the last watcher leaves (unless clients of this node subscribed since). So
a channel's publications, joins and leaves come from every node through the
engine, whatever node the watcher is on.
Rule 4: what only the node of a connection sees (its connects, commands and
disconnects) is traced on every node through the control plane (control.py
Rule 5): the watcher's node asks the others to follow the trace (a lease,
renewed every ``ANNOUNCE_INTERVAL``, lapsing after ``NODE_TTL`` unheard), and
they send their events back in small batches (``FORWARD_DELAY``). Each event
names the node it happened on.

A channel trace shows its publications, joins and leaves, and the subscribe,
unsubscribe and publish commands of clients on it; a user trace shows the
user's connects, commands (with their parameters and outcome) and disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from hubbub.hub.nodes import ANNOUNCE_INTERVAL, NODE_TTL
from hubbub.hub.observer import Observer
from hubbub.protocol.codec import JSON
from hubbub.protocol.messages import Publication
from hubbub.protocol.payload import NotJSON, display_hook, to_container

if TYPE_CHECKING:
    from hubbub.codes import DisconnectInfo
    from hubbub.hub.hub import Hub
    from hubbub.hub.session import Session
    from hubbub.protocol import Received

#: Events a slow watcher (or a node's batch for another) may have waiting before new
#: ones are dropped.
QUEUE_LIMIT = 1000
#: Seconds a node gathers a remote trace's events before sending them on.
FORWARD_DELAY = 0.05
#: Command methods whose parameters name a channel.
_CHANNEL_METHODS = frozenset(
    {"subscribe", "unsubscribe", "publish", "presence", "presence_stats", "history", "sub_refresh"}
)


class Watch(msgspec.Struct, eq=False):
    """One watcher's stream of trace events (JSON objects, encoded)."""

    channel: str = ""
    user: str = ""
    queue: asyncio.Queue[bytes | None] = msgspec.field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT)
    )
    dropped: int = 0
    id: str = msgspec.field(default_factory=lambda: uuid.uuid4().hex)

    def put(self, event: dict[str, Any]) -> None:
        self.put_encoded(_encode(event))

    def put_encoded(self, data: bytes) -> None:
        queue = self.queue
        # Room for the event, and for the note of what was dropped before it.
        if queue.qsize() + (2 if self.dropped else 1) > queue.maxsize:
            self.dropped += 1
            return
        if self.dropped:
            queue.put_nowait(_encode({"kind": "dropped", "count": self.dropped}))
            self.dropped = 0
        queue.put_nowait(data)


class RemoteWatch:
    """Another node's trace followed on this node: its events go back to that node."""

    def __init__(self, hub: Hub, trace_id: str, node: str, channel: str, user: str) -> None:
        self.hub = hub
        self.id = trace_id
        self.node = node
        self.channel = channel
        self.user = user
        self.until = time.monotonic() + NODE_TTL  # the lease (Rule 4)
        self._pending: list[msgspec.Raw] = []
        self._dropped = 0
        self._flush: asyncio.TimerHandle | None = None

    def put(self, event: dict[str, Any]) -> None:
        if len(self._pending) >= QUEUE_LIMIT:
            self._dropped += 1
            return
        self._pending.append(msgspec.Raw(_encode(event)))
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FORWARD_DELAY, self.send)

    def send(self) -> None:
        """Send what is gathered to the watcher's node (one control message)."""
        self._flush = None
        events, self._pending = self._pending, []
        if self._dropped:
            note = {"kind": "dropped", "count": self._dropped, "node": self.hub.node_id}
            events.append(msgspec.Raw(_encode(note)))
            self._dropped = 0
        if events:
            self.hub.spawn(self.hub.control.trace_events(self.node, self.id, events))

    def cancel(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None


Watcher = Watch | RemoteWatch


_encode_display = msgspec.json.Encoder(enc_hook=display_hook).encode


def publication_frame(channel: str, publication: Publication) -> bytes:
    """A traced publication's push as JSON; binary data shows as b64data (as the API)."""
    try:
        return JSON.publication_push(channel, publication)
    except NotJSON:
        return JSON.publication_push(channel, to_container(publication))


def _command_json(received: Received) -> bytes:
    """The command as the client sent it: its id and its method's parameters."""
    params = getattr(received.command, received.method, None)
    # A binary payload (a Protobuf client's) shows as base64.
    return _encode_display({"id": received.command.id, received.method: params})


def _encode(event: dict[str, Any]) -> bytes:
    event.setdefault("time", round(time.time(), 3))
    return msgspec.json.encode(event)


class Tracer(Observer):
    """The traces of one hub: its own watchers and other nodes' (``TraceRelay``)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._channels: dict[str, set[Watcher]] = {}
        self._users: dict[str, set[Watcher]] = {}
        self._local: dict[str, Watch] = {}  # this node's watchers, by trace id
        self._remote: dict[str, RemoteWatch] = {}  # other nodes' traces, by trace id
        self._engine_channels: set[str] = set()  # subscribed in the engine for a trace
        self._observing = False
        self._renewer: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None

    # --- this node's watchers ---------------------------------------------------------

    async def watch(self, *, channel: str = "", user: str = "") -> Watch:
        """Start a trace of ``channel`` or ``user`` (exactly one), on every node."""
        watch = Watch(channel=channel, user=user)
        self._local[watch.id] = watch
        self._add(watch)
        if channel:
            self.hub.observers.trace_channel(channel)
            if channel not in self.hub.channel_counts() and channel not in self._engine_channels:
                self._engine_channels.add(channel)
                try:
                    await self.hub.engine.subscribe(channel)
                except BaseException:
                    self._engine_channels.discard(channel)
                    await self.unwatch(watch)
                    raise
        watch.put({"kind": "tracing", "channel": channel, "user": user, "node": self.hub.node_id})
        await self.hub.control.trace_start(watch.id, channel=channel, user=user)
        if watch.id not in self._local:  # unwatched meanwhile: its stop may have gone first
            await self.hub.control.trace_stop(watch.id)
            return watch
        if self._renewer is None:
            self._renewer = asyncio.get_running_loop().create_task(
                self._renew_forever(), name="hubbub-trace-renew"
            )
        return watch

    async def unwatch(self, watch: Watch) -> None:
        if self._local.pop(watch.id, None) is None:
            return
        self._discard(watch)
        if watch.channel:
            self.hub.observers.untrace_channel(watch.channel)
            others = self._channels.get(watch.channel, ())
            if not any(isinstance(w, Watch) for w in others):  # the last one here
                await self._release(watch.channel)
        if not self._local and self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        await self.hub.control.trace_stop(watch.id)

    async def _renew_forever(self) -> None:
        """Rule 4: renew the other nodes' leases while this node traces."""
        try:
            while self._local:
                await asyncio.sleep(ANNOUNCE_INTERVAL)
                for watch in list(self._local.values()):
                    await self.hub.control.trace_start(
                        watch.id, channel=watch.channel, user=watch.user
                    )
        finally:
            if self._renewer is asyncio.current_task():
                self._renewer = None

    async def _release(self, channel: str) -> None:
        """Leave the engine subscription a trace made, unless clients need it now."""
        if channel in self._engine_channels:
            self._engine_channels.discard(channel)
            if channel not in self.hub.channel_counts():
                with contextlib.suppress(Exception):  # best effort: the engine may be down
                    await self.hub.engine.unsubscribe(channel)

    def close(self) -> None:
        """End every stream (the server is stopping) and stop following others' traces."""
        for watch in self._local.values():
            with contextlib.suppress(asyncio.QueueFull):
                watch.queue.put_nowait(None)
        for remote in list(self._remote.values()):
            self.remote_unwatch(remote.id)
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def statistics(self) -> dict[str, Any]:
        """Traces of this node's watchers, other nodes' traces followed here, and
        whether the tracer observes the hub at all (Rule 1)."""
        return {
            "watching": len(self._local),
            "following": len(self._remote),
            "observing": self._observing,
        }

    # --- other nodes' traces (control.TraceRelay) -------------------------------------

    def remote_watch(self, trace_id: str, node: str, channel: str, user: str) -> None:
        known = self._remote.get(trace_id)
        if known is not None:
            known.until = time.monotonic() + NODE_TTL
            return
        if bool(channel) == bool(user):
            return  # not a trace this node can follow
        remote = self._remote[trace_id] = RemoteWatch(self.hub, trace_id, node, channel, user)
        self._add(remote)
        self._schedule_expiry()

    def remote_unwatch(self, trace_id: str) -> None:
        remote = self._remote.pop(trace_id, None)
        if remote is not None:
            remote.send()  # what was gathered still goes
            self._discard(remote)

    def remote_events(self, trace_id: str, events: list[msgspec.Raw]) -> None:
        watch = self._local.get(trace_id)
        if watch is not None:
            for event in events:
                watch.put_encoded(bytes(event))

    def _schedule_expiry(self) -> None:
        if self._expiry is None and self._remote:
            self._expiry = asyncio.get_running_loop().call_later(NODE_TTL, self._expire)

    def _expire(self) -> None:
        """Drop the traces of nodes that stopped renewing them (gone without a word)."""
        self._expiry = None
        now = time.monotonic()
        for remote in [r for r in self._remote.values() if r.until <= now]:
            self._remote.pop(remote.id, None)
            remote.cancel()
            self._discard(remote)
        self._schedule_expiry()

    # --- the tables -------------------------------------------------------------------

    def _add(self, watcher: Watcher) -> None:
        table = self._channels if watcher.channel else self._users
        table.setdefault(watcher.channel or watcher.user, set()).add(watcher)
        if not self._observing:  # Rule 1
            self._observing = True
            self.hub.observers.add(self)

    def _discard(self, watcher: Watcher) -> None:
        table = self._channels if watcher.channel else self._users
        key = watcher.channel or watcher.user
        watchers = table.get(key)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del table[key]
        if self._observing and not self._channels and not self._users:
            self._observing = False
            self.hub.observers.remove(self)

    # --- Observer --------------------------------------------------------------------

    def connected(self, session: Session) -> None:
        watchers = self._users.get(session.user) if self._users else None
        if watchers:
            event = {
                "kind": "connect",
                "client": session.client_id,
                "user": session.user,
                "addr": session.remote,
                "name": session.name,
                "version": session.version,
                "transport": session.transport_name,
                "node": self.hub.node_id,
            }
            for watch in tuple(watchers):
                watch.put(dict(event))

    def disconnected(
        self, session: Session, disconnect: DisconnectInfo, *, by_server: bool, detail: str
    ) -> None:
        watchers = self._users.get(session.user) if self._users and session.user else None
        if watchers:
            event = {
                "kind": "disconnect",
                "client": session.client_id,
                "user": session.user,
                "code": disconnect.code,
                "reason": disconnect.reason,
                "by": "server" if by_server else "client",
                "detail": detail,
                "node": self.hub.node_id,
            }
            for watch in tuple(watchers):
                watch.put(dict(event))

    def command_done(
        self, session: Session, received: Received, seconds: float, error: int
    ) -> None:
        user_watchers = self._users.get(session.user) if self._users else None
        channel_watchers: set[Watcher] | None = None
        if self._channels and received.method in _CHANNEL_METHODS:
            params = getattr(received.command, received.method, None)
            channel_watchers = self._channels.get(getattr(params, "channel", ""))
        if not user_watchers and not channel_watchers:
            return
        event = {
            "kind": "command",
            "client": session.client_id,
            "user": session.user,
            "method": received.method,
            "command": msgspec.Raw(_command_json(received)),
            "error": error,
            "ms": round(seconds * 1000, 3),
            "node": self.hub.node_id,
        }
        for watch in (*(user_watchers or ()), *(channel_watchers or ())):
            watch.put(dict(event))

    def channel_event(self, channel: str, kind: str, payload: bytes) -> None:
        watchers = self._channels.get(channel)
        if watchers:
            for watch in watchers:
                # Only this node's watchers: every node's publications, joins and
                # leaves reach the watcher's node through the engine (Rule 3).
                if isinstance(watch, Watch):
                    # "message": the push exactly as the channel's clients receive it.
                    watch.put({"kind": kind, "channel": channel, "message": msgspec.Raw(payload)})
