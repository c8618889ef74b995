"""Where accepted webhook events wait for delivery: in memory, or in Redis.

Rule: ``accept`` takes the node's events and channel transitions in the
order they happened; once it returns, the events are accepted (in Redis:
they survive this node). ``next_batch`` hands out a batch that stays this
node's until ``ack``; an unacknowledged batch of a node that died is handed
out again (at-least-once: a receiver may see an event twice, never zero
times). A channel transition becomes an occupied/vacated event only when it
is the cluster's (the first node to hold the channel, the last to drop it).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Sequence
from typing import NamedTuple, Protocol


class QueueUnavailable(Exception):
    """The queue's store did not answer; ``str()`` says why (one log line)."""


class Item(NamedTuple):
    """Something that happened on this node, in order."""

    kind: str  # "event", "occupy" (the node holds a channel now), "vacate" (no longer)
    payload: bytes  # the event's JSON (for occupy/vacate: the event, if cluster-wide)
    channel: str = ""


class EventQueue(Protocol):
    durable: bool  # accepted events survive the node

    async def open(self, node: str) -> None: ...

    async def close(self) -> None: ...

    async def accept(self, items: Sequence[Item]) -> None: ...

    async def next_batch(self, size: int, wait: float) -> list[tuple[str, bytes]]: ...

    async def ack(self, ids: Sequence[str]) -> None: ...

    async def hold(self, ids: Sequence[str]) -> None: ...

    async def heartbeat(self) -> None: ...


class MemoryQueue:
    """One node (memory engine): events wait in this process and die with it."""

    durable = False

    def __init__(self) -> None:
        self._ready: deque[tuple[str, bytes]] = deque()
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

    async def accept(self, items: Sequence[Item]) -> None:
        for item in items:
            if item.kind == "occupy":
                if item.channel in self._occupied:
                    continue
                self._occupied.add(item.channel)
            elif item.kind == "vacate":
                if item.channel not in self._occupied:
                    continue
                self._occupied.discard(item.channel)
            self._ready.append((f"{self._node}-{next(self._ids)}", item.payload))
        if self._ready:
            self._arrived.set()
            self._empty.clear()

    async def next_batch(self, size: int, wait: float) -> list[tuple[str, bytes]]:
        if not self._ready:
            self._arrived.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._arrived.wait()
            except TimeoutError:
                return []
        batch = [self._ready.popleft() for _ in range(min(size, len(self._ready)))]
        self._held.update(batch)
        return batch

    async def ack(self, ids: Sequence[str]) -> None:
        for event_id in ids:
            self._held.pop(event_id, None)
        if not self.waiting:
            self._empty.set()

    async def hold(self, ids: Sequence[str]) -> None:
        return None

    async def heartbeat(self) -> None:
        return None

    async def wait_empty(self) -> None:
        """Until every accepted event was delivered."""
        await self._empty.wait()
