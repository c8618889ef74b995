"""Background tasks: the one way a component stops the task it started.

Rule: a component that owns a long-running task stops it with ``stop_task`` in
its ``close``/``stop``: the task is cancelled and awaited, so that nothing of it
runs after the component says it is closed; its cancellation is not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (nothing when None) and wait until it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
