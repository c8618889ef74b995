"""One timer wheel for every per-connection deadline (ping, pong, stale, expiry).

Rule: connections own no task and no loop timer handle; a deadline is a
``Timer`` in a bucket of the wheel, and one task advances the wheel every
``resolution`` seconds, calling what fell due. ``Timer.cancel`` takes the
timer out of its bucket and drops its callback at once, so a closed
connection is not kept alive by deadlines it will never meet (a 24-hour token
must not hold a closed session for 24 hours). ``call_later_for(delay, f, arg)``
calls ``f(arg)``: with ``f`` shared by every connection (a method bound once),
an idle connection's deadline costs one ``Timer``, not a closure and its cells.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hubbub.tasks import stop_task

log = logging.getLogger("hubbub.timers")

T = TypeVar("T")
_NO_ARG: Any = object()  # the callback takes no argument


class Timer:
    """A callback due at one tick; ``cancel()`` forgets it (idempotent)."""

    __slots__ = ("_bucket", "arg", "callback")

    def __init__(
        self, callback: Callable[..., None], bucket: dict[Timer, None], arg: Any = _NO_ARG
    ) -> None:
        self.callback: Callable[..., None] | None = callback
        self.arg = arg  # what the callback is called with (_NO_ARG: nothing)
        self._bucket: dict[Timer, None] | None = bucket

    def cancel(self) -> None:
        bucket = self._bucket
        if bucket is not None:
            bucket.pop(self, None)
            self._bucket = None
        self.callback = None
        self.arg = None

    @property
    def pending(self) -> bool:
        return self.callback is not None


class TimerWheel:
    def __init__(self, *, resolution: float = 0.25, clock: Callable[[], float] = time.monotonic):
        self.resolution = resolution
        self._clock = clock
        self._origin = clock()
        # A dict per tick: insertion-ordered like a list, removal in O(1) like a set.
        self._buckets: dict[int, dict[Timer, None]] = {}
        self._next_tick = 0
        self._task: asyncio.Task[None] | None = None

    def _tick_of(self, when: float) -> int:
        return max(math.ceil((when - self._origin) / self.resolution), self._next_tick)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback`` once, ``delay`` seconds from now (rounded up to the resolution)."""
        return self._add(delay, callback, _NO_ARG)

    def call_later_for(self, delay: float, callback: Callable[[T], None], arg: T) -> Timer:
        """Call ``callback(arg)`` once, ``delay`` seconds from now."""
        return self._add(delay, callback, arg)

    def _add(self, delay: float, callback: Callable[..., None], arg: Any) -> Timer:
        tick = self._tick_of(self._clock() + delay)
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = {}
        timer = Timer(callback, bucket, arg)
        bucket[timer] = None
        return timer

    def advance(self) -> None:
        """Run every callback that is due now."""
        now_tick = math.floor((self._clock() - self._origin) / self.resolution)
        while self._next_tick <= now_tick:
            bucket = self._buckets.pop(self._next_tick, None)
            self._next_tick += 1
            if not bucket:
                continue
            # A copy: a callback may cancel another timer of this tick (it is then skipped).
            for timer in list(bucket):
                callback, arg = timer.callback, timer.arg
                timer.callback = timer.arg = None
                if callback is None:
                    continue
                try:
                    if arg is _NO_ARG:
                        callback()
                    else:
                        callback(arg)
                except Exception:
                    log.exception("timer callback failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="timer-wheel")

    async def stop(self) -> None:
        await stop_task(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.resolution)
            self.advance()

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())
