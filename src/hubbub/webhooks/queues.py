"""Where accepted webhook events wait for delivery: in memory, or in Redis.

Rule: ``accept`` takes the node's events and channel transitions in the
order they happened; once it returns, the events are accepted (in Redis:
they survive this node). ``next_batch`` hands out a batch that stays this
node's until ``ack``; an unacknowledged batch of a node that died is handed
out again (at-least-once: a receiver may see an event twice, never zero
times). A channel transition becomes an occupied/vacated event only when it
is the cluster's (the first node to hold the channel, the last to drop it).
Rule 2: a queue is bounded (``Bounds``: ``webhooks.queue_max_length`` and
``queue_max_age``), so a receiver that stays down cannot fill Redis or the
node's memory: ``accept`` and ``heartbeat`` drop the oldest undelivered events
beyond the bounds and return how many, by reason (the service logs and counts
them); ``queued`` is the queue's length as last seen.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple, Protocol

#: Reasons accepted events are dropped before delivery (the metric's ``reason`` label).
OVER_LENGTH = "queue_max_length"
OVER_AGE = "queue_max_age"

Dropped = dict[str, int]


class Bounds(NamedTuple):
    """How much an event queue may hold (Rule 2)."""

    max_length: int  # events
    max_age: float = 0.0  # seconds since accepted; 0: no age limit


class QueueUnavailable(Exception):
    """The queue's store did not answer; ``str()`` says why (one log line)."""


class Item(NamedTuple):
    """Something that happened on this node, in order."""

    kind: str  # "event", "occupy" (the node holds a channel now), "vacate" (no longer)
    payload: bytes  # the event's JSON (for occupy/vacate: the event, if cluster-wide)
    channel: str = ""


class EventQueue(Protocol):
    durable: bool  # accepted events survive the node

    @property
    def queued(self) -> int:
        """Events waiting for delivery (or being delivered), as last seen."""

    async def open(self, node: str) -> None: ...

    async def close(self) -> None: ...

    async def accept(self, items: Sequence[Item]) -> Dropped: ...

    async def next_batch(self, size: int, wait: float) -> list[tuple[str, bytes]]: ...

    async def ack(self, ids: Sequence[str]) -> None: ...

    async def hold(self, ids: Sequence[str]) -> None: ...

    async def heartbeat(self) -> Dropped: ...


class MemoryQueue:
    """One node (memory engine): events wait in this process and die with it."""

    durable = False

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self._ready: deque[tuple[str, bytes, float]] = deque()  # id, event, accepted at
        self._held: dict[str, bytes] = {}
        self._occupied: set[str] = set()
        self._ids = itertools.count(1)
        self._node = ""
        self._arrived = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()

    async def open(self, node: str) -> None:
        self._node = node

    async def close(self) -> None:
        self._arrived.set()

    @property
    def waiting(self) -> int:
        return len(self._ready) + len(self._held)

    @property
    def queued(self) -> int:
        return self.waiting

    async def accept(self, items: Sequence[Item]) -> Dropped:
        now = time.monotonic()
        for item in items:
            if item.kind == "occupy":
                if item.channel in self._occupied:
                    continue
                self._occupied.add(item.channel)
            elif item.kind == "vacate":
                if item.channel not in self._occupied:
                    continue
                self._occupied.discard(item.channel)
            self._ready.append((f"{self._node}-{next(self._ids)}", item.payload, now))
        dropped = self._trim()
        if self._ready:
            self._arrived.set()
            self._empty.clear()
        return dropped

    def _trim(self) -> Dropped:
        """Rule 2: the oldest waiting events beyond the bounds go (not those in flight)."""
        ready = self._ready
        dropped: Dropped = {}
        if self.bounds.max_age > 0:
            oldest = time.monotonic() - self.bounds.max_age
            aged = 0
            while ready and ready[0][2] < oldest:
                ready.popleft()
                aged += 1
            if aged:
                dropped[OVER_AGE] = aged
        over = self.waiting - self.bounds.max_length
        if over > 0:
            over = min(over, len(ready))
            for _ in range(over):
                ready.popleft()
            dropped[OVER_LENGTH] = over
        if dropped and not self.waiting:
            self._empty.set()
        return dropped

    async def next_batch(self, size: int, wait: float) -> list[tuple[str, bytes]]:
        if not self._ready:
            self._arrived.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._arrived.wait()
            except TimeoutError:
                return []
        batch = [self._ready.popleft()[:2] for _ in range(min(size, len(self._ready)))]
        self._held.update(batch)
        return batch

    async def ack(self, ids: Sequence[str]) -> None:
        for event_id in ids:
            self._held.pop(event_id, None)
        if not self.waiting:
            self._empty.set()

    async def hold(self, ids: Sequence[str]) -> None:
        return None

    async def heartbeat(self) -> Dropped:
        return self._trim()

    async def wait_empty(self) -> None:
        """Until every accepted event was delivered."""
        await self._empty.wait()
