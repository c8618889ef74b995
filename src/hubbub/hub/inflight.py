"""A connection's publishes in flight together, their replies in arrival order.

A session runs its commands one at a time (session.py). On an engine whose
calls of one loop turn travel together (``engine.pipelined``: Redis), that
makes one connection's publish rate one Redis round trip per publish. This
module is the one exception to "one at a time", and everything about it lives
here:

Rule 1: only ``publish`` overlaps, and only with no publish hook (a hook's
awaits could reorder publications). Any other command first waits until every
publish in flight has replied (``drain``), so effects and replies keep the
order the commands arrived in.
Rule 2: a publish in flight does not write its reply: what it queues for its
own session is held in its slot (a context variable, so only code running for
that publish sees it) and goes out once every earlier publish's output has.
Rule 3: the engine receives the publishes in arrival order (each task reaches
the engine in the turn it starts, and the engine keeps call order, see
engines/redis_batch.py), so offsets follow the order the client sent them.
Rule 4: at most ``WINDOW`` publishes per connection are in flight; the next
waits for the oldest. A publish in flight after its session closed still
completes (it was received); its reply is dropped with the connection.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hubbub.hub.session import Session

#: Publishes one connection may have in flight at once.
WINDOW = 256

#: The slot of the command this code runs for: (its session, its held output).
#: Held output: (data, frame type, counted by a broadcast already), as ``Session.send``'s.
Held = list[tuple[bytes, str, bool]]
_slot: ContextVar[tuple[Session, Held] | None] = ContextVar("hubbub_reply_slot", default=None)


def held_output(session: Session) -> Held | None:
    """Where ``session``'s output goes instead of its outbox (in a publish in flight)."""
    slot = _slot.get()
    if slot is not None and slot[0] is session:
        return slot[1]
    return None


class InFlight:
    """The overlapping publishes of one session."""

    # No reference to the session (it holds this): no cycle, freed with it.
    __slots__ = ("_done",)

    def __init__(self) -> None:
        # Per publish in flight, oldest first: set once its output went out.
        self._done: deque[asyncio.Future[None]] = deque()

    def __bool__(self) -> bool:
        return bool(self._done)

    async def start(self, session: Session, run: Callable[[], Awaitable[None]]) -> None:
        """Run ``run`` (one publish) overlapping the others; return once it started."""
        done = self._done
        while done and done[0].done():
            done.popleft()
        if len(done) >= WINDOW:
            await asyncio.shield(done[0])
            done.popleft()
        previous = done[-1] if done else None
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.append(finished)
        session.hub.spawn(self._one(session, run, previous, finished))

    async def _one(
        self,
        session: Session,
        run: Callable[[], Awaitable[None]],
        previous: asyncio.Future[None] | None,
        finished: asyncio.Future[None],
    ) -> None:
        held: Held = []
        _slot.set((session, held))  # this task's context only
        try:
            await run()
        finally:
            _slot.set(None)
            try:
                if previous is not None and not previous.done():
                    await asyncio.shield(previous)
                for data, kind, batched in held:
                    session.send(data, kind, batched=batched)
            finally:
                if not finished.done():  # never left unset: drain() would wait forever
                    finished.set_result(None)

    async def drain(self) -> None:
        """Wait until every publish in flight has replied."""
        done = self._done
        while done:
            last = done[-1]
            if not last.done():
                await asyncio.shield(last)
            # Everything before ``last`` finished before it (outputs go out in order).
            if done and done[-1] is last:
                done.clear()
