"""One timer wheel for every per-connection deadline (ping, pong, stale, expiry).

Rule: connections own no task and no loop timer handle; a deadline is a
callback in a bucket of the wheel, and one task advances the wheel every
``resolution`` seconds, calling what fell due. A callback that is no longer
relevant (the connection closed, the pong came) checks that itself and
returns: cancelling is never needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

log = logging.getLogger("hubbub.timers")


class TimerWheel:
    def __init__(self, *, resolution: float = 0.25, clock: Callable[[], float] = time.monotonic):
        self.resolution = resolution
        self._clock = clock
        self._origin = clock()
        self._buckets: dict[int, list[Callable[[], None]]] = {}
        self._next_tick = 0
        self._task: asyncio.Task[None] | None = None

    def _tick_of(self, when: float) -> int:
        return max(math.ceil((when - self._origin) / self.resolution), self._next_tick)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, ``delay`` seconds from now (rounded up to the resolution)."""
        tick = self._tick_of(self._clock() + delay)
        bucket = self._buckets.get(tick)
        if bucket is None:
            self._buckets[tick] = [callback]
        else:
            bucket.append(callback)

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` at monotonic time ``when``."""
        self.call_later(when - self._clock(), callback)

    def advance(self) -> None:
        """Run every callback that is due now."""
        now_tick = math.floor((self._clock() - self._origin) / self.resolution)
        while self._next_tick <= now_tick:
            bucket = self._buckets.pop(self._next_tick, None)
            self._next_tick += 1
            if bucket:
                for callback in bucket:
                    try:
                        callback()
                    except Exception:
                        log.exception("timer callback failed")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="timer-wheel")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.resolution)
            self.advance()

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())
