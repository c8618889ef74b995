"""Whether an engine's backing server is reachable, and the few log lines that say so.

Rule 1: an outage is logged as events, not per failure: one warning line when
a server is lost (with the error), one when it is back (with how long it was
away), and while it stays away at most one summary line per
``SUMMARY_INTERVAL`` counting what failed meanwhile. Never a traceback: an
outage is expected, and the error text says what happened.
Rule 2: a server is not available until it has answered once, so a node that
starts while its Redis is down is not ready (``/ready`` answers 503) and says
so in its log at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: While a server stays away, failures are summed up in one line this often (seconds).
SUMMARY_INTERVAL = 10.0


class Reachability:
    """The up/down state of one backing server (a Redis shard, a NATS server)."""

    __slots__ = (
        "_clock",
        "_down_since",
        "_failures",
        "_log",
        "_name",
        "_summary_at",
        "explain",
        "up",
    )

    def __init__(
        self, name: str, log: logging.Logger, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._name = name
        self._log = log
        self._clock = clock
        self.up = False  # not until it answered once
        self._down_since: float | None = None  # None: never lost (or back)
        self._failures = 0  # failures since the last line
        self._summary_at = 0.0
        #: Rewrites an error's text with its likely cause (TLS failures), or None.
        self.explain: Callable[[str], str] | None = None

    @property
    def down_since(self) -> float | None:
        return self._down_since

    def succeeded(self) -> None:
        """The server answered."""
        if self.up:
            return
        self.up = True
        if self._down_since is None:
            self._log.info("%s: connected", self._name)
        else:
            away = self._clock() - self._down_since
            self._log.warning(
                "%s: reachable again after %.1f s (%d operations failed meanwhile)",
                self._name,
                away,
                self._failures,
            )
        self._down_since = None
        self._failures = 0

    def failed(self, error: BaseException | str) -> None:
        """An operation failed because the server could not be reached (or timed out)."""
        text = error if isinstance(error, str) else (str(error) or type(error).__name__)
        if self.explain is not None:
            text = self.explain(text)
        now = self._clock()
        if self.up or self._down_since is None:
            self.up = False
            self._down_since = now
            self._failures = 1
            self._summary_at = now + SUMMARY_INTERVAL
            self._log.warning("%s: unreachable: %s", self._name, text)
            return
        self._failures += 1
        if now >= self._summary_at:
            self._summary_at = now + SUMMARY_INTERVAL
            self._log.warning(
                "%s: still unreachable after %.0f s (%d operations failed): %s",
                self._name,
                now - self._down_since,
                self._failures,
                text,
            )
