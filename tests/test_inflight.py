"""A connection's publishes in flight together on the Redis engine (hub/inflight.py).

A real node on a real redis-server; a raw client sends many publishes in one
frame and across frames without waiting. Replies must come back in the order
the commands were sent, offsets must follow that order, an error in the middle
must be answered in its place, and a command after the publishes must see all
of them. The engine side (one pipeline per batch) is checked through its
counters.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hubbub.engines.redis import RedisEngine
from tests.conftest import RunningServer
from tests.redis_fixtures import redis_server  # noqa: F401 (fixture)
from tests.test_control import NodeFactory, redis_nodes  # noqa: F401 (fixture)
from tests.wsclient import WSClient, connected_client

CHANNEL = "chat:inflight"


async def replies_in_order(client: WSClient, ids: list[int]) -> list[dict[str, Any]]:
    """Every reply to ``ids``, asserting they arrive in exactly that order."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(15):
        while len(got) < len(ids):
            message = await client.take(lambda m: "id" in m, what="a reply")
            got.append(message)
    assert [m["id"] for m in got] == ids
    return got


async def test_publishes_overlap_with_replies_and_offsets_in_order(
    redis_nodes: NodeFactory,  # noqa: F811
) -> None:
    node: RunningServer = await redis_nodes()
    engine = node.hub.engine
    assert isinstance(engine, RedisEngine)
    async with (
        connected_client(node.ws_url, channels=(CHANNEL,)) as subscriber,
        connected_client(node.ws_url, node.token("writer")) as publisher,
    ):
        ids: list[int] = []
        expect_error: set[int] = set()
        # 150 publishes (within the command rate burst): 10 frames of 10, then 50
        # frames of one, nothing awaited; one in the middle is refused (no namespace
        # "nope"): its error keeps its place.
        commands = []
        for n in range(150):
            command_id = publisher.new_id()
            ids.append(command_id)
            channel = CHANNEL
            if n == 75:
                channel = "nope:x"
                expect_error.add(command_id)
            commands.append({"id": command_id, "publish": {"channel": channel, "data": {"n": n}}})
        for start in range(0, 100, 10):
            await publisher.send_frame(*commands[start : start + 10])
        for command in commands[100:]:
            await publisher.send_frame(command)
        # A history read right after: it must see every publish before it.
        history_id = publisher.new_id()
        await publisher.send_frame({"id": history_id, "history": {"channel": CHANNEL, "limit": -1}})
        replies = await replies_in_order(publisher, [*ids, history_id])
        for reply in replies[:-1]:
            if reply["id"] in expect_error:
                assert reply["error"]["code"] == 102, reply
            else:
                assert "error" not in reply, reply
        history = replies[-1]["history"]["publications"]
        sent = [n for n in range(150) if n != 75]
        assert [p["data"]["n"] for p in history] == sent
        offsets = [p["offset"] for p in history]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
        # The subscriber gets them in the same order.
        numbers: list[int] = []
        async with asyncio.timeout(15):
            while len(numbers) < len(sent):
                numbers.append((await subscriber.push(CHANNEL, "pub"))["data"]["n"])
        assert numbers == sent
    # Batched: far fewer round trips than publishes.
    batcher = engine._shards[0].publish
    assert batcher.calls >= 149
    assert batcher.batches < batcher.calls / 3, (batcher.batches, batcher.calls)


async def test_over_the_rate_limit_replies_keep_their_order(
    redis_nodes: NodeFactory,  # noqa: F811
) -> None:
    """Error 111 (too many requests) for some of a burst: still in arrival order."""
    node: RunningServer = await redis_nodes()
    async with connected_client(node.ws_url) as publisher:
        ids = [publisher.new_id() for _ in range(260)]  # over the burst of 200
        await publisher.send_frame(
            *({"id": i, "publish": {"channel": CHANNEL, "data": {"n": i}}} for i in ids)
        )
        replies = await replies_in_order(publisher, ids)
        codes = [r.get("error", {}).get("code") for r in replies]
        assert set(codes) == {None, 111}, codes
        assert codes.index(111) > 0


async def test_idempotent_publishes_in_flight_together_publish_once(
    redis_nodes: NodeFactory,  # noqa: F811
) -> None:
    """The API's idempotency key, with several identical publishes in one loop turn."""
    node: RunningServer = await redis_nodes()
    async with connected_client(node.ws_url, channels=(CHANNEL,)) as subscriber:
        results = await asyncio.gather(
            *(node.hub.publish(CHANNEL, {"n": 1}, idempotency_key="same") for _ in range(10))
        )
        assert len({(p.offset, p.epoch) for p in results}) == 1
        push = await subscriber.push(CHANNEL, "pub")
        assert push["data"] == {"n": 1}
        await asyncio.sleep(0.2)
        pubs = [m for m in subscriber.messages if "pub" in m.get("push", {})]
        assert pubs == [], pubs
