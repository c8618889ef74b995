"""Background tasks: the one way a component stops the task it started.

Rule 1: a component that owns a long-running task stops it with ``stop_task`` in
its ``close``/``stop``: the task is cancelled and awaited, so that nothing of it
runs after the component says it is closed; its cancellation is not an error.
A ``close`` that must release resources whatever its tasks met stops them with
``stop_tasks``, which returns what they raised instead of raising it.
Rule 2: a cancellation can be lost, so a task that is still running
``RECANCEL_AFTER`` seconds after being cancelled is cancelled again, until it
ends. On Python 3.11, ``asyncio.wait_for`` (which redis-py wraps around every
write to a socket) returns the inner operation's result, or raises its error,
when the cancellation lands in the loop turn where that operation ended: the
task never sees its CancelledError, takes the error for a lost connection and
reconnects in a loop. A close that awaited it once sat idle for good (the Redis
engine's pub/sub task, cancelled while a refused TLS connection failed).
Rule 3: the caller's own cancellation is not swallowed: when the task that
calls ``stop_task`` is cancelled, it raises CancelledError (the task being
stopped stays cancelled).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

#: How long a cancelled task may run on before it is cancelled again (seconds).
#: Long enough for a task's own cleanup after its cancellation (a socket closed, a
#: reply written), short enough that a close does not seem to hang.
RECANCEL_AFTER = 0.1


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (nothing when None) and wait until it has ended; what it
    raised other than its cancellation is raised here."""
    if task is None:
        return
    await _cancel_until_done(task)
    if not task.cancelled():
        task.result()  # its error, if it failed meanwhile


async def stop_tasks(tasks: Iterable[asyncio.Task[Any] | None]) -> list[BaseException]:
    """Cancel ``tasks`` (None ones skipped) and wait until every one has ended; what
    they raised other than their cancellation (a task may have failed meanwhile)."""
    started = [task for task in tasks if task is not None]
    await asyncio.gather(*(_cancel_until_done(task) for task in started))
    failed: list[BaseException] = []
    for task in started:
        if not task.cancelled() and (error := task.exception()) is not None:
            failed.append(error)
    return failed


async def _cancel_until_done(task: asyncio.Task[Any]) -> None:
    while not task.done():
        task.cancel()
        # asyncio.wait never cancels ``task`` nor swallows our own cancellation.
        await asyncio.wait((task,), timeout=RECANCEL_AFTER)
