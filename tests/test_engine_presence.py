"""Every engine, through the Engine interface: presence (add, remove, stats, expiry).

Part of the conformance suite: each test runs once per engine (the ``engine``
fixture of tests/engine_fixtures.py).
"""

from __future__ import annotations

import msgspec

from hubbub.engines.base import Engine, PresenceStats
from hubbub.protocol.messages import ClientInfo
from tests.engine_fixtures import FakeClock, info

# --- presence ------------------------------------------------------------------------


class TestPresence:
    async def test_add_remove_and_stats(self, engine: Engine) -> None:
        await engine.add_presence("a", "c1", info("alice", "c1"), 60)
        await engine.add_presence("a", "c2", info("alice", "c2"), 60)
        await engine.add_presence("a", "c3", info("bob", "c3"), 60)
        await engine.add_presence("b", "c4", info("carol", "c4"), 60)
        assert await engine.presence("a") == {
            "c1": info("alice", "c1"),
            "c2": info("alice", "c2"),
            "c3": info("bob", "c3"),
        }
        assert await engine.presence_stats("a") == PresenceStats(num_clients=3, num_users=2)
        await engine.remove_presence("a", "c1")
        assert set(await engine.presence("a")) == {"c2", "c3"}
        assert await engine.presence_stats("a") == PresenceStats(2, 2)
        await engine.remove_presence("a", "c2")
        assert await engine.presence_stats("a") == PresenceStats(1, 1)
        await engine.remove_presence("a", "c3")
        await engine.remove_presence("a", "unknown")  # no error
        assert await engine.presence("a") == {}
        assert await engine.presence_stats("a") == PresenceStats(0, 0)
        assert await engine.presence_stats("b") == PresenceStats(1, 1)

    async def test_adding_again_replaces_the_entry(self, engine: Engine) -> None:
        await engine.add_presence("a", "c1", info("alice", "c1"), 60)
        await engine.add_presence("a", "c1", ClientInfo("alice", "c1", msgspec.Raw(b"1")), 60)
        assert await engine.presence_stats("a") == PresenceStats(1, 1)
        assert bytes((await engine.presence("a"))["c1"].conn_info) == b"1"

    async def test_entries_expire(self, engine: Engine, clock: FakeClock) -> None:
        await engine.add_presence("a", "c1", info("alice", "c1"), 10)
        await engine.add_presence("a", "c2", info("bob", "c2"), 30)
        clock.advance(11)
        assert set(await engine.presence("a")) == {"c2"}
        assert await engine.presence_stats("a") == PresenceStats(1, 1)
        clock.advance(20)
        assert await engine.presence("a") == {}

    async def test_adding_again_refreshes_the_expiry(
        self, engine: Engine, clock: FakeClock
    ) -> None:
        await engine.add_presence("a", "c1", info("alice", "c1"), 10)
        clock.advance(8)
        await engine.add_presence("a", "c1", info("alice", "c1"), 10)
        clock.advance(8)
        assert set(await engine.presence("a")) == {"c1"}

    async def test_unknown_channel_has_no_presence(self, engine: Engine) -> None:
        assert await engine.presence("nobody") == {}
        assert await engine.presence_stats("nobody") == PresenceStats(0, 0)
