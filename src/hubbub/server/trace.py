"""Live tracing for the admin UI: a stream of what happens in a channel or to a user.

Rule 1: the tracer is a hub ``Observer``; it costs nothing while nobody
traces (the hub checks ``Observers.traced_channels`` before building a
channel event; user events are a set lookup per command).
Rule 2: each watcher has a bounded queue; when it is full, events are
dropped and counted (the stream says how many), never buffered without
bound and never slowing the hub.
Rule 3: a traced channel without local subscribers is still delivered to
this node: the tracer subscribes the node to it in the engine, and lets go
when the last watcher leaves (unless clients of this node subscribed since).

A channel trace shows its publications, joins and leaves, and the subscribe,
unsubscribe and publish commands of this node's clients on it; a user trace
shows the user's connects, commands (with their parameters and outcome) and
disconnects on this node.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from hubbub.hub.observer import Observer

if TYPE_CHECKING:
    from hubbub.codes import DisconnectInfo
    from hubbub.hub.hub import Hub
    from hubbub.hub.session import Session
    from hubbub.protocol import Received

#: Events a slow watcher may have waiting before new ones are dropped.
QUEUE_LIMIT = 1000
#: Command methods whose parameters name a channel.
_CHANNEL_METHODS = frozenset(
    {"subscribe", "unsubscribe", "publish", "presence", "presence_stats", "history", "sub_refresh"}
)


@dataclass(eq=False)
class Watch:
    """One watcher's stream of trace events (JSON objects, encoded)."""

    channel: str = ""
    user: str = ""
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    dropped: int = 0

    def put(self, event: dict[str, Any]) -> None:
        queue = self.queue
        # Room for the event, and for the note of what was dropped before it.
        if queue.qsize() + (2 if self.dropped else 1) > queue.maxsize:
            self.dropped += 1
            return
        if self.dropped:
            queue.put_nowait(_encode({"kind": "dropped", "count": self.dropped}))
            self.dropped = 0
        queue.put_nowait(_encode(event))


def _command_json(received: Received) -> bytes:
    """The command as the client sent it: its id and its method's parameters."""
    params = getattr(received.command, received.method, None)
    return msgspec.json.encode({"id": received.command.id, received.method: params})


def _encode(event: dict[str, Any]) -> bytes:
    event.setdefault("time", round(time.time(), 3))
    return msgspec.json.encode(event)


class Tracer(Observer):
    """The trace watchers of one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._channels: dict[str, set[Watch]] = {}
        self._users: dict[str, set[Watch]] = {}
        self._engine_channels: set[str] = set()  # subscribed in the engine for a trace

    # --- watchers --------------------------------------------------------------------

    async def watch(self, *, channel: str = "", user: str = "") -> Watch:
        """Start a trace of ``channel`` or ``user`` (exactly one)."""
        watch = Watch(channel=channel, user=user)
        if channel:
            self._channels.setdefault(channel, set()).add(watch)
            self.hub.observers.trace_channel(channel)
            if channel not in self.hub.channel_counts() and channel not in self._engine_channels:
                self._engine_channels.add(channel)
                try:
                    await self.hub.engine.subscribe(channel)
                except BaseException:
                    self._engine_channels.discard(channel)
                    await self.unwatch(watch)
                    raise
        else:
            self._users.setdefault(user, set()).add(watch)
        watch.put({"kind": "tracing", "channel": channel, "user": user, "node": self.hub.node_id})
        return watch

    async def unwatch(self, watch: Watch) -> None:
        if watch.channel:
            watchers = self._channels.get(watch.channel)
            if watchers is None or watch not in watchers:
                return
            watchers.discard(watch)
            self.hub.observers.untrace_channel(watch.channel)
            if not watchers:
                del self._channels[watch.channel]
                await self._release(watch.channel)
        else:
            watchers = self._users.get(watch.user)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._users[watch.user]

    async def _release(self, channel: str) -> None:
        """Leave the engine subscription a trace made, unless clients need it now."""
        if channel in self._engine_channels:
            self._engine_channels.discard(channel)
            if channel not in self.hub.channel_counts():
                with contextlib.suppress(Exception):  # best effort: the engine may be down
                    await self.hub.engine.unsubscribe(channel)

    def close(self) -> None:
        """End every stream (the server is stopping)."""
        for watchers in (*self._channels.values(), *self._users.values()):
            for watch in watchers:
                with contextlib.suppress(asyncio.QueueFull):
                    watch.queue.put_nowait(None)

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
            }
            for watch in watchers:
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
            }
            for watch in watchers:
                watch.put(dict(event))

    def command_done(
        self, session: Session, received: Received, seconds: float, error: int
    ) -> None:
        user_watchers = self._users.get(session.user) if self._users else None
        channel_watchers: set[Watch] | None = None
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
        }
        for watch in (*(user_watchers or ()), *(channel_watchers or ())):
            watch.put(dict(event))

    def channel_event(self, channel: str, kind: str, payload: bytes) -> None:
        watchers = self._channels.get(channel)
        if watchers:
            for watch in watchers:
                # "message": the push exactly as the channel's clients receive it.
                watch.put({"kind": kind, "channel": channel, "message": msgspec.Raw(payload)})
