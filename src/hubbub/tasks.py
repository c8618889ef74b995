"""Background tasks: the one way a component stops the task it started.

Rule: a component that owns a long-running task stops it with ``stop_task`` in
its ``close``/``stop``: the task is cancelled and awaited, so that nothing of it
runs after the component says it is closed; its cancellation is not an error.
A ``close`` that must release resources whatever its tasks met stops them with
``stop_tasks``, which returns what they raised instead of raising it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (nothing when None) and wait until it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def stop_tasks(tasks: Iterable[asyncio.Task[Any] | None]) -> list[BaseException]:
    """Cancel ``tasks`` (None ones skipped) and wait until every one has ended; what
    they raised other than their cancellation (a task may have failed meanwhile)."""
    started = [task for task in tasks if task is not None]
    for task in started:
        task.cancel()
    results = await asyncio.gather(*started, return_exceptions=True)
    return [
        result
        for result in results
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError)
    ]
