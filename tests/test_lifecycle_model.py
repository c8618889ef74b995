"""A model-based test of the subscription lifecycle: interleavings and failures at every await.

Hypothesis drives several clients (each with its commands run in order, as a
WebSocket connection runs them) through connect (some with server-side
channels), subscribe, unsubscribe, close, API unsubscribe and publish, while
the engine holds its calls at gates and answers them, in any order, with
success or an injected failure. Whenever everything has settled, the
invariants of the lifecycle must hold:

* no subscription is stuck joining, and every live one is in the channel table
  (and nothing else is);
* presence equals the live subscriptions of presence channels;
* a channel with a live subscription is subscribed at the engine;
* every command of an open connection got exactly one reply, and no command
  ever got two;
* no buffer of a joining subscription outlives it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from hubbub.codes import Disconnect
from hubbub.config.loader import load_config
from hubbub.hub.hub import Hub
from hubbub.hub.local import LocalClient
from hubbub.hub.session import SubState
from tests.conftest import DEFAULT_CONFIG, SECRET
from tests.faults import FaultyEngine

CHANNELS = ("chat:a", "chat:b", "plain")  # chat: presence, join/leave, history; plain: none
CLIENTS = 3
#: Engine calls the machine can hold and fail. Removal of presence is held but never
#: failed: a failed removal leaves an entry to its TTL by design (test_lifecycle covers it).
GATED = ("subscribe", "history", "add_presence", "publish_join", "remove_presence", "publish_leave")
FAILABLE = ("subscribe", "history", "add_presence", "publish_join")


class Driver:
    """One client: its frames are run one after another, as a WebSocket connection does."""

    def __init__(self, hub: Hub, loop: asyncio.AbstractEventLoop) -> None:
        self.client = LocalClient(hub)
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.sent: list[int] = []  # command ids, in order
        self.replies: dict[int, int] = {}  # command id -> replies seen
        self.next_id = 1
        self.runner = loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            frame = await self.queue.get()
            await self.client.send(frame)
            self.queue.task_done()

    def command(self, method: str, **params: Any) -> None:
        command_id = self.next_id
        self.next_id += 1
        self.sent.append(command_id)
        self.queue.put_nowait(json.dumps({"id": command_id, method: params}))

    def collect(self) -> None:
        for frame in self.client.frames:
            for line in frame.split(b"\n"):
                if line:
                    message = json.loads(line)
                    if "id" in message:
                        self.replies[message["id"]] = self.replies.get(message["id"], 0) + 1
        self.client.frames.clear()

    @property
    def closed(self) -> bool:
        return self.client.session.closed


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = FaultyEngine()
        config = load_config(None, env={}, base=DEFAULT_CONFIG).config
        self.hub = Hub(config, engine=self.engine)
        self.loop.run_until_complete(self.hub.start())
        self.drivers: list[Driver] = []
        self.gates: dict[str, asyncio.Event] = {}

    def teardown(self) -> None:
        try:
            self.settle()
            for driver in self.drivers:
                driver.runner.cancel()
            self.loop.run_until_complete(self.hub.close())
            self.loop.run_until_complete(asyncio.sleep(0))
        finally:
            self.loop.close()

    # --- helpers -----------------------------------------------------------------------

    def spin(self, turns: int = 3) -> None:
        for _ in range(turns):
            self.loop.run_until_complete(asyncio.sleep(0))
        self.hub.delivery.flush()
        for driver in self.drivers:
            driver.collect()

    def settle(self) -> None:
        """Open every gate, stop failing, and run until nothing is left to do."""
        self.engine.heal()
        for method in list(self.gates):
            self.engine.release(method)
        self.gates.clear()
        for _ in range(50):
            self.spin()
            idle = all(d.queue._unfinished_tasks == 0 for d in self.drivers)  # type: ignore[attr-defined]
            if idle and not self.hub._background and not any(self.engine.waiting.values()):
                break
            self.loop.run_until_complete(self.hub.wait_idle())
        self.spin()

    def inside(self, action: Any) -> None:
        """Run a synchronous hub action inside the loop, as the server always does."""

        async def run() -> None:
            action()

        self.loop.run_until_complete(run())

    def driver(self, index: int) -> Driver | None:
        """The index-th open client (counting round), if any is open."""
        open_ones = [d for d in self.drivers if not d.closed]
        return open_ones[index % len(open_ones)] if open_ones else None

    # --- rules -------------------------------------------------------------------------

    @initialize()
    def two_clients(self) -> None:
        self.connect([])
        self.connect([])

    @precondition(lambda self: len(self.drivers) < CLIENTS * 3)
    @rule(server_side=st.lists(st.sampled_from(CHANNELS), max_size=2, unique=True))
    def connect(self, server_side: list[str]) -> None:
        driver = Driver(self.hub, self.loop)
        self.drivers.append(driver)
        claims = {"sub": f"u{len(self.drivers) % CLIENTS}", "exp": int(time.time()) + 3600}
        if server_side:
            claims["channels"] = server_side
        driver.command("connect", token=jwt.encode(claims, SECRET, algorithm="HS256"))
        self.spin(1)

    @rule(index=st.integers(0, 3), channel=st.sampled_from(CHANNELS))
    def subscribe(self, index: int, channel: str) -> None:
        driver = self.driver(index)
        if driver is not None:
            driver.command("subscribe", channel=channel)
            self.spin(1)

    @rule(index=st.integers(0, 3), channel=st.sampled_from(CHANNELS))
    def unsubscribe(self, index: int, channel: str) -> None:
        driver = self.driver(index)
        if driver is not None:
            driver.command("unsubscribe", channel=channel)
            self.spin(1)

    @rule(index=st.integers(0, 3), by_peer=st.booleans())
    def close(self, index: int, by_peer: bool) -> None:
        driver = self.driver(index)
        if driver is None:
            return
        session = driver.client.session
        if by_peer:
            self.inside(driver.client.disconnect)
        else:
            force = Disconnect.FORCE_DISCONNECT
            self.inside(
                lambda: self.hub.disconnect_user(session.user, force, client=session.client_id)
            )
        self.spin(1)

    @rule(index=st.integers(0, 3))
    def refresh_presence(self, index: int) -> None:
        """What each ping does: re-add the presence entries of live subscriptions."""
        driver = self.driver(index)
        if driver is not None:
            self.inside(lambda: self.hub.lifecycle.refresh_presence(driver.client.session))
            self.spin(1)

    @rule(user=st.integers(0, CLIENTS - 1), channel=st.sampled_from(CHANNELS))
    def api_unsubscribe(self, user: int, channel: str) -> None:
        self.inside(lambda: self.hub.unsubscribe_user(f"u{user}", channel))
        self.spin(1)

    @rule(channel=st.sampled_from(CHANNELS))
    def publish(self, channel: str) -> None:
        self.loop.create_task(self.hub.publish(channel, {"t": time.monotonic()}))
        self.spin(1)

    @rule(method=st.sampled_from(GATED))
    def hold(self, method: str) -> None:
        if method not in self.gates:
            self.gates[method] = self.engine.hold(method)

    @rule(method=st.sampled_from(GATED), fail=st.booleans())
    def answer(self, method: str, fail: bool) -> None:
        if method in self.gates:
            if fail and method in FAILABLE:
                self.engine.fail_next(method, max(self.engine.waiting.get(method, 0), 1))
            self.engine.release(method)
            del self.gates[method]
            self.spin()
            self.engine.heal(method)

    @rule()
    def step(self) -> None:
        self.spin()

    # --- invariants --------------------------------------------------------------------

    @invariant()
    def never_two_replies(self) -> None:
        for driver in self.drivers:
            assert all(count == 1 for count in driver.replies.values()), driver.replies

    @rule()
    def everything_settles_consistently(self) -> None:
        self.settle()
        hub = self.hub
        live: dict[str, set[str]] = {name: set() for name in CHANNELS}
        for driver in self.drivers:
            session = driver.client.session
            if driver.closed:
                assert not session.subscriptions
                continue
            # every command of an open connection was answered exactly once
            assert sorted(driver.replies) == driver.sent, (driver.sent, driver.replies)
            for name, subscription in session.subscriptions.items():
                assert subscription.state is SubState.LIVE, subscription.state
                live[name].add(session.client_id)
        table = hub.channels.entries
        for name in CHANNELS:
            entry = table.get(name)
            members = (
                set()
                if entry is None
                else {s.client_id for s in entry.live} | {s.client_id for s in entry.catching_up}
            )
            assert members == live[name], (name, members, live[name])
            assert entry is None or not entry.joining  # no buffer outlives its subscription
            if live[name]:
                assert name in self.engine.subscribed
            presence = self.loop.run_until_complete(self.engine.inner.presence(name))
            expected = live[name] if name.startswith("chat:") else set()
            assert set(presence) == expected, (name, set(presence), expected)


LifecycleMachine.TestCase.settings = settings(
    max_examples=400,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_lifecycle_model = LifecycleMachine.TestCase
