"""An engine that fails or pauses on demand, for lifecycle tests.

Users never run this: it wraps the real MemoryEngine and, per method name,
can make the next N calls raise ``EngineUnavailable`` (as a Redis outage does)
or hold every call at a gate until the test opens it, so that a test can put
a close, an unsubscribe or a publish exactly at an await point of the hub.

    engine = FaultyEngine()
    engine.fail_next("add_presence")          # the next add_presence raises
    gate = engine.hold("subscribe")           # subscribe waits for gate.set()
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hubbub.engines.base import EngineUnavailable, EventHandler
from hubbub.engines.memory import MemoryEngine

#: The engine methods a hub awaits (start/close pass straight through).
METHODS = (
    "subscribe",
    "unsubscribe",
    "publish",
    "publish_join",
    "publish_leave",
    "history",
    "remove_history",
    "add_presence",
    "remove_presence",
    "presence",
    "presence_stats",
    "publish_control",
)


class FaultyEngine:
    def __init__(self, inner: MemoryEngine | None = None) -> None:
        self.inner = inner or MemoryEngine()
        self.calls: list[str] = []  # every call, in order
        self._failures: dict[str, int] = {}
        self._gates: dict[str, asyncio.Event] = {}
        self.waiting: dict[str, int] = {}  # calls held at a gate now
        self.subscribed: set[str] = set()  # channels the node is subscribed to, as engine sees
        self._lagging: list[tuple[str, Any, Any]] | None = None  # publications held back
        self._handler: EventHandler | None = None

    # --- control ---------------------------------------------------------------------

    def fail_next(self, method: str, times: int = 1) -> None:
        self._failures[method] = self._failures.get(method, 0) + times

    def fail_always(self, method: str) -> None:
        self._failures[method] = 1 << 30

    def heal(self, method: str | None = None) -> None:
        if method is None:
            self._failures.clear()
        else:
            self._failures.pop(method, None)

    def hold(self, method: str) -> asyncio.Event:
        """Hold every call of ``method`` until the returned event is set."""
        gate = self._gates[method] = asyncio.Event()
        return gate

    def release(self, method: str) -> None:
        gate = self._gates.pop(method, None)
        if gate is not None:
            gate.set()

    async def wait_held(self, method: str, count: int = 1) -> None:
        """Wait (at most 2 s) until ``count`` calls of ``method`` are held at its gate."""
        async with asyncio.timeout(2.0):
            while self.waiting.get(method, 0) < count:  # noqa: ASYNC110 - polled by design
                await asyncio.sleep(0.001)

    def lag(self) -> None:
        """Hold publications back from the hub (a broker's pub/sub lag) until ``catch_up``."""
        self._lagging = []

    def catch_up(self) -> None:
        """Deliver the publications held back, in order, and stop lagging."""
        held, self._lagging = self._lagging or [], None
        assert self._handler is not None
        for channel, publication, position in held:
            self._handler.handle_publication(channel, publication, position)

    # --- Engine ----------------------------------------------------------------------

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        await self.inner.start(_LagHandler(self, handler))

    async def close(self) -> None:
        await self.inner.close()

    @property
    def available(self) -> bool:
        return self.inner.available

    @property
    def pipelined(self) -> bool:
        return self.inner.pipelined

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in METHODS:
            raise AttributeError(name)
        target = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            gate = self._gates.get(name)
            if gate is not None:
                self.waiting[name] = self.waiting.get(name, 0) + 1
                try:
                    await gate.wait()
                finally:
                    self.waiting[name] -= 1
            left = self._failures.get(name, 0)
            if left:
                self._failures[name] = left - 1
                raise EngineUnavailable(f"injected failure of {name}")
            result = await target(*args, **kwargs)
            if name == "subscribe":
                self.subscribed.add(args[0])
            elif name == "unsubscribe":
                self.subscribed.discard(args[0])
            return result

        return call


class _LagHandler:
    """Passes engine events to the hub, holding publications while the engine lags."""

    def __init__(self, engine: FaultyEngine, handler: EventHandler) -> None:
        self._engine = engine
        self._handler = handler

    def handle_publication(self, channel: str, publication: Any, position: Any) -> None:
        held = self._engine._lagging
        if held is not None:
            held.append((channel, publication, position))
        else:
            self._handler.handle_publication(channel, publication, position)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handler, name)
