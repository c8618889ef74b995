"""Every engine, through the Engine interface: control messages reach every node,
this one included, or the one node named (engines/base.py Rule 4).

Part of the conformance suite: each test runs once per engine (the ``engine``
fixture of tests/engine_fixtures.py).
"""

from __future__ import annotations

import asyncio

from hubbub.engines.base import Engine
from tests.engine_fixtures import Events, delivered

# --- control ------------------------------------------------------------------------


class TestControl:
    async def test_to_every_node_and_to_this_node_but_not_to_another(
        self, engine: Engine, events: Events
    ) -> None:
        assert engine.available
        await engine.publish_control(b"all")
        await engine.publish_control(b"someone else", node="another-node")
        await engine.publish_control(b"this one", node=events.node_id)
        async with asyncio.timeout(5):
            while len(events.controls) < 2:
                events.arrived.clear()
                await events.arrived.wait()
        await delivered(engine, events)
        assert events.controls == [b"all", b"this one"]
