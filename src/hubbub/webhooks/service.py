"""The webhooks of one node: take events as they happen, queue them, POST them in batches.

Rule 1: the hub reports what happens through synchronous calls that only
append to an ordered buffer (a no-op for event types not in
``webhooks.events``); one task moves the buffer into the queue in order
(``accept``), retrying while the queue's store is down. Events wait in the
buffer up to ``webhooks.max_pending``; beyond, new events are dropped and
counted (channel transitions never are: they keep the cluster's count right).
Rule 2: one task takes batches from the queue and POSTs each until a 2xx
answer (backoff from ``retry_min_delay`` doubling to ``retry_max_delay``),
then acknowledges it; a batch is re-sent after a failure, never skipped.
Rule 3: an outage (queue store down, receiver failing, events dropped) logs
one line when it starts and one when it ends, never one per attempt, and
never a traceback.
Rule 4: ``close`` (SIGTERM) moves what is buffered into the queue and lets a
POST in flight finish; with the Redis queue nothing accepted is lost, with
the memory queue what is still queued after ``webhooks.timeout`` is.
Rule 5: the queue is bounded (``webhooks.queue_max_length``,
``queue_max_age``): while a receiver stays down, the oldest undelivered events
are dropped. Every event dropped (there, or beyond ``max_pending``) is counted
by reason in ``dropped`` (the metric ``hubbub_webhook_events_dropped_total``),
and the queue's drops are logged as errors: the first at once, then at most
one line per ``DROP_LOG_INTERVAL`` with the count, and one when they stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from typing import Any

from msgspec import Raw

from hubbub.config.model import Config
from hubbub.protocol.payload import Payload
from hubbub.webhooks.events import NO_DATA, WebhookEvent, batch_body, encode_event, now_ms
from hubbub.webhooks.queues import (
    OVER_AGE,
    OVER_LENGTH,
    Bounds,
    Dropped,
    EventQueue,
    Item,
    MemoryQueue,
    QueueUnavailable,
)
from hubbub.webhooks.sender import Sender

log = logging.getLogger("hubbub.webhooks")

BATCH_WAIT = 1.0  # a delivery task waits this long for a batch before looking again
DROP_LOG_INTERVAL = 10.0  # seconds between log lines while the queue drops events
#: ``dropped``'s reason for events refused beyond ``webhooks.max_pending``.
OVER_PENDING = "max_pending"
#: Every reason an event is dropped (``Webhooks.dropped``'s keys).
DROP_REASONS = (OVER_PENDING, OVER_LENGTH, OVER_AGE)


class _Outage:
    """One log line when something starts failing, one when it works again."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failures = 0

    def failed(self, why: str) -> None:
        if self.failures == 0:
            log.warning("webhooks: %s failed: %s; retrying", self.what, why)
        self.failures += 1

    def ok(self) -> None:
        if self.failures:
            log.warning("webhooks: %s works again (after %d failures)", self.what, self.failures)
            self.failures = 0


class _Drops:
    """Rule 5's log lines: loud, but never one per event or per batch."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.total = 0  # dropped since the drops began
        self.unlogged = 0
        self._logged_at = -DROP_LOG_INTERVAL

    def dropped(self, counts: Dropped, queued: int) -> None:
        if not counts:
            if self.total:
                log.error(
                    "webhooks: the queue is within its bounds again (%d events were dropped "
                    "in all, %d wait)",
                    self.total,
                    queued,
                )
                self.total = self.unlogged = 0
            return
        n = sum(counts.values())
        self.total += n
        self.unlogged += n
        now = time.monotonic()
        if now - self._logged_at >= DROP_LOG_INTERVAL:
            reasons = ", ".join(f"webhooks.{reason}" for reason in sorted(counts))
            log.error(
                "webhooks: DROPPED %d undelivered events, the oldest: the queue passed %s "
                "(%d wait; is %s down?); %d dropped since this began",
                self.unlogged,
                reasons,
                queued,
                self.endpoint,
                self.total,
            )
            self._logged_at, self.unlogged = now, 0


class _Backoff:
    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high
        self.current = low

    def next(self) -> float:
        delay = self.current
        self.current = min(self.current * 2, self.high)
        return delay * random.uniform(0.8, 1.0)  # spread the nodes' retries

    def reset(self) -> None:
        self.current = self.low


class Webhooks:
    """The webhook service of a hub (disabled: every call returns at once)."""

    def __init__(self, config: Config) -> None:
        self.config = config.webhooks
        self.enabled = self.config.enabled
        self._wants = frozenset(self.config.events) if self.enabled else frozenset()
        self._channels = bool(self._wants & {"occupied", "vacated"})
        bounds = Bounds(self.config.queue_max_length, self.config.queue_max_age)
        self.queue: EventQueue = MemoryQueue(bounds)
        if self.enabled and config.engine.type == "redis":
            from hubbub.webhooks.redis_queue import RedisQueue  # redis-py only when asked for

            self.queue = RedisQueue(
                config.engine.redis, claim_after=self.config.claim_after, bounds=bounds
            )
        self.dropped: Counter[str] = Counter()  # events dropped, by reason (Rule 5)
        self._drops = _Drops(self.config.endpoint)
        self._sender = Sender(self.config)
        self._buffer: list[Item] = []
        self._node = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._buffered = asyncio.Event()
        self._stopping = asyncio.Event()
        self._accept_outage = _Outage("queueing events")
        self._read_outage = _Outage("reading queued events")
        self._post_outage = _Outage(f"POST to {self.config.endpoint}")
        self._drop_outage = _Outage(f"keeping events (more than {self.config.max_pending} wait)")

    # --- what happened (called by the hub, synchronous) -------------------------------

    def connected(self, client: str, user: str, info: Raw | None) -> None:
        if "connect" in self._wants:
            self._event(
                WebhookEvent("connect", now_ms(), client=client, user=user, info=info or NO_DATA)
            )

    def disconnected(self, client: str, user: str, code: int, reason: str) -> None:
        if "disconnect" in self._wants:
            self._event(
                WebhookEvent(
                    "disconnect", now_ms(), client=client, user=user, code=code, reason=reason
                )
            )

    def joined(
        self, channel: str, client: str, user: str, info: Raw | None, chan_info: Raw | None
    ) -> None:
        if "join" in self._wants:
            self._event(_membership("join", channel, client, user, info, chan_info))

    def left(
        self, channel: str, client: str, user: str, info: Raw | None, chan_info: Raw | None
    ) -> None:
        if "leave" in self._wants:
            self._event(_membership("leave", channel, client, user, info, chan_info))

    def published(self, channel: str, client: str, user: str, data: Payload, offset: int) -> None:
        if "publication" in self._wants:
            self._event(
                WebhookEvent(
                    "publication",
                    now_ms(),
                    channel=channel,
                    client=client,
                    user=user,
                    data=data,
                    offset=offset,
                )
            )

    def channel_active(self, channel: str) -> None:
        """This node has its first subscription of ``channel``."""
        if self._channels:
            self._transition("occupy", "occupied", channel)

    def channel_idle(self, channel: str) -> None:
        """This node's last subscription of ``channel`` ended."""
        if self._channels:
            self._transition("vacate", "vacated", channel)

    def _event(self, event: WebhookEvent) -> None:
        if len(self._buffer) >= self.config.max_pending:
            self._drop_outage.failed("the queue does not take them: new events are dropped")
            self.dropped[OVER_PENDING] += 1
            return
        self._drop_outage.ok()
        event.node = self._node
        self._buffer.append(Item("event", encode_event(event)))
        self._buffered.set()

    def _transition(self, kind: str, event_type: str, channel: str) -> None:
        # Kept even when the buffer is full: the cluster's count of holders depends on it.
        # The event itself is appended only if this is the cluster's transition (and wanted).
        wanted = event_type in self._wants
        payload = encode_event(WebhookEvent(event_type, now_ms(), node=self._node, channel=channel))
        self._buffer.append(Item(kind, payload if wanted else b"", channel))
        self._buffered.set()

    # --- running ----------------------------------------------------------------------

    async def start(self, node: str) -> None:
        if not self.enabled:
            return
        self._node = node
        try:
            await self.queue.open(node)
        except QueueUnavailable as exc:
            self._accept_outage.failed(str(exc))  # the tasks retry (the group is made then)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._accept_loop(), name="webhooks-accept"),
            loop.create_task(self._deliver_loop(), name="webhooks-deliver"),
            loop.create_task(self._heartbeat_loop(), name="webhooks-heartbeat"),
        ]

    async def close(self) -> None:
        if not self.enabled or self._stopping.is_set():
            return
        timeout = self.config.timeout
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._accept_all()
        if isinstance(self.queue, MemoryQueue):  # Rule 4: deliver what is queued in time
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.queue.wait_empty()
            if self.queue.waiting:
                log.warning("webhooks: %d events not delivered at shutdown", self.queue.waiting)
        self._stopping.set()
        self._buffered.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.queue.close()
        await self._sender.close()

    async def _accept_all(self) -> None:
        backoff = _Backoff(self.config.retry_min_delay, self.config.retry_max_delay)
        while self._buffer:
            items, self._buffer = self._buffer, []
            try:
                dropped = await self.queue.accept(items)
            except QueueUnavailable as exc:
                self._buffer = items + self._buffer  # keep the order
                self._accept_outage.failed(str(exc))
                if await self._stopped_within(backoff.next()):
                    return
                continue
            self._accept_outage.ok()
            self._count_drops(dropped)
            backoff.reset()

    def _count_drops(self, dropped: Dropped) -> None:
        self.dropped.update(dropped)
        self._drops.dropped(dropped, self.queue.queued)

    async def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            await self._buffered.wait()
            self._buffered.clear()
            await self._accept_all()

    async def _deliver_loop(self) -> None:
        backoff = _Backoff(self.config.retry_min_delay, self.config.retry_max_delay)
        while not self._stopping.is_set():
            try:
                batch = await self.queue.next_batch(self.config.batch_max_size, BATCH_WAIT)
            except QueueUnavailable as exc:
                self._read_outage.failed(str(exc))
                await self._stopped_within(backoff.next())
                continue
            self._read_outage.ok()
            if batch:
                await self._deliver(batch, backoff)

    async def _deliver(self, batch: list[tuple[str, bytes]], backoff: _Backoff) -> None:
        body = batch_body(batch)
        ids = [event_id for event_id, _ in batch]
        backoff.reset()
        while not await self._sender.post(body):
            self._post_outage.failed(self._sender.last_failure)
            if await self._stopped_within(backoff.next()):
                return  # unacknowledged: another node (or the next start) sends it
            with contextlib.suppress(QueueUnavailable):
                await self.queue.hold(ids)  # still ours: nobody else takes it meanwhile
        self._post_outage.ok()
        backoff.reset()
        try:
            await self.queue.ack(ids)
        except QueueUnavailable as exc:
            # Delivered but not acknowledged: it will be delivered again (documented).
            self._read_outage.failed(f"acknowledging a delivered batch: {exc}")

    async def _heartbeat_loop(self) -> None:
        interval = self.config.claim_after / 4
        while not await self._stopped_within(interval):
            try:
                dropped = await self.queue.heartbeat()
            except QueueUnavailable as exc:
                self._read_outage.failed(str(exc))
                continue
            self._count_drops(dropped)

    async def _stopped_within(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the service stops first; whether it stopped."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        return self._stopping.is_set()

    def statistics(self) -> dict[str, Any]:
        return {
            "buffered": len(self._buffer),
            "enabled": self.enabled,
            "queued": self.queue.queued,
            "dropped": dict(self.dropped),
        }


def _membership(
    kind: str, channel: str, client: str, user: str, info: Raw | None, chan_info: Raw | None
) -> WebhookEvent:
    """A ``join`` or ``leave`` event (the two carry the same fields)."""
    return WebhookEvent(
        kind,
        now_ms(),
        channel=channel,
        client=client,
        user=user,
        info=info or NO_DATA,
        chan_info=chan_info or NO_DATA,
    )
