"""stop_task / stop_tasks (hubbub.tasks): a task is stopped even when it loses its
cancellation, and the caller's own cancellation is not swallowed.

Each stop is bounded here with ``asyncio.wait`` (which cancels nothing): a stop
that never returns fails the test instead of holding the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from typing import Any

import pytest

from hubbub.tasks import RECANCEL_AFTER, stop_task, stop_tasks

#: Plenty for a stop that re-cancels a few times, on a loaded machine.
STOP_LIMIT = 5.0


async def _within_limit(stopping: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(stopping)
    done, _ = await asyncio.wait((task,), timeout=STOP_LIMIT)
    if not done:
        task.cancel()
        pytest.fail(f"the stop did not return within {STOP_LIMIT} s")
    return task


async def test_a_task_that_loses_its_cancellation_in_wait_for_is_stopped() -> None:
    """The race that held the Redis engine's close: on Python 3.11 ``wait_for``
    returns the result of an operation that ended in the loop turn its caller was
    cancelled in (redis-py wraps every socket write in it). The task loops on, as a
    reconnect loop does after an error; it is cancelled again and stopped."""
    loop = asyncio.get_running_loop()
    operations: list[asyncio.Future[int]] = [loop.create_future() for _ in range(2)]
    lost: list[bool] = []

    async def reconnecting() -> None:
        for operation in operations:
            await asyncio.wait_for(operation, 3600)
            task = asyncio.current_task()
            assert task is not None
            lost.append(task.cancelling() > 0)  # a result, with a cancellation pending

    task = loop.create_task(reconnecting())
    await asyncio.sleep(0)  # it waits on the first operation
    operations[0].set_result(1)
    # The operation's callback releases wait_for's waiter: the task's wake-up is
    # scheduled but has not run when this task resumes and stop_task cancels it
    # (synchronously: stop_task's first step runs in this task).
    await asyncio.sleep(0)
    async with asyncio.timeout(STOP_LIMIT) as limit:
        await stop_task(task)
    assert not limit.expired(), "the stop waited for the task until the test's limit"
    assert task.cancelled()
    if sys.version_info < (3, 12):
        assert lost == [True], "the race was not run: the first cancellation was not lost"


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again() -> None:
    ended = asyncio.Event()

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # swallowed: it waits on
            await asyncio.sleep(3600)
        try:
            await asyncio.sleep(3600)
        finally:
            ended.set()

    task = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    await _within_limit(stop_task(task))
    assert ended.is_set() and task.cancelled()
    # Cancelled again after RECANCEL_AFTER, not at once, not much later.
    assert asyncio.get_running_loop().time() - started >= RECANCEL_AFTER * 0.9


async def test_a_cancelled_task_may_finish_its_cleanup_first() -> None:
    cleaned = asyncio.Event()

    async def tidy() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.01)  # e.g. a socket closed: well under RECANCEL_AFTER
            cleaned.set()

    task = asyncio.get_running_loop().create_task(tidy())
    await asyncio.sleep(0)
    await _within_limit(stop_task(task))
    assert cleaned.is_set()


async def test_stop_task_raises_what_the_task_raised_and_skips_none() -> None:
    await stop_task(None)

    async def failing() -> None:
        raise ValueError("broken")

    task = asyncio.get_running_loop().create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken"):
        await stop_task(task)


async def test_the_callers_cancellation_is_not_swallowed() -> None:
    give_in = False

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if give_in:
                    raise

    loop = asyncio.get_running_loop()
    task = loop.create_task(stubborn())
    await asyncio.sleep(0)
    stopper = loop.create_task(stop_task(task))
    try:
        await asyncio.sleep(RECANCEL_AFTER * 2)  # it has been cancelled twice, in vain
        stopper.cancel()
        done, _ = await asyncio.wait((stopper,), timeout=STOP_LIMIT)
        assert done and stopper.cancelled()
        assert not task.done()
    finally:
        give_in = True
        task.cancel()
        await asyncio.wait((task, stopper), timeout=STOP_LIMIT)
    assert task.cancelled()


async def test_stop_tasks_returns_what_they_raised_besides_their_cancellation() -> None:
    loop = asyncio.get_running_loop()

    async def failing() -> None:
        raise ValueError("broken")

    async def swallowing() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(3600)

    tasks = [
        loop.create_task(failing()),
        loop.create_task(asyncio.sleep(3600)),
        loop.create_task(swallowing()),
    ]
    await asyncio.sleep(0)
    stopping = await _within_limit(stop_tasks([*tasks, None]))
    errors = stopping.result()
    assert [type(e) for e in errors] == [ValueError]
    assert all(task.done() for task in tasks)
