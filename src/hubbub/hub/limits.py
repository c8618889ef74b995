"""Per-connection command rate limiting: a token bucket, refused commands counted.

Rule: each command takes one token; tokens come back at ``rate`` per second up
to ``burst``. A command without a token is answered with error 111 (too many
requests, temporary: the SDKs retry later); a client that keeps sending after
``burst`` refusals in a row is disconnected with 3013.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CommandRate:
    __slots__ = ("_burst", "_clock", "_rate", "_refused", "_tokens", "_updated")

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._refused = 0

    def take(self) -> bool:
        """Whether one more command may run now."""
        now = self._clock()
        tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            self._refused = 0
            return True
        self._tokens = tokens
        self._refused += 1
        return False

    @property
    def exhausted(self) -> bool:
        """Refused ``burst`` times in a row: the client ignores the 111 answers."""
        return self._refused > self._burst
