"""Engine failures as the hub sees them: one log line per burst, never a traceback.

Rule: an unreachable engine is an expected condition. Every command or
background step that fails with ``EngineUnavailable`` reports it here; the
first failure is logged at once (with the error), then at most one line per
``every`` seconds says how many more failed meanwhile. The engine itself logs
when it loses and regains its backend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("hubbub.hub")


class Outages:
    __slots__ = ("_clock", "_every", "_last", "_unlogged", "failures")

    def __init__(self, *, every: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._every = every
        self._clock = clock
        self._last = float("-inf")  # when the last line was logged
        self._unlogged = 0  # failures since that line
        self.failures = 0  # every failure reported (for metrics and tests)

    def failed(self, what: str, error: Exception) -> None:
        """``what`` failed because the engine is unavailable."""
        self.failures += 1
        now = self._clock()
        if now - self._last < self._every:
            self._unlogged += 1
            return
        more = f" ({self._unlogged} more failures since the last report)" if self._unlogged else ""
        log.warning("engine unavailable: %s failed: %s%s", what, error, more)
        self._last = now
        self._unlogged = 0
