"""``broadcast`` (and ``batch`` with ``parallel``) publish together on a pipelined engine.

A server on a real redis-server: a 100-channel broadcast reaches Redis as ONE
batch of 100 publish scripts (the engine's own statistics say so), the
responses keep the channels' order (offsets and errors where they belong),
subscribers of the channels get the publication, and a channel whose publish
fails gets its own error while the others are answered. With Redis away,
every channel gets error 100 (the call itself is answered). A ``batch`` with
``parallel: true`` runs its commands at once (one Redis batch for its
publishes), its replies in command order; without it, one after another.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from hubbub.engines.redis import RedisEngine
from hubbub.engines.redis_shard import ServerShard
from tests.conftest import RunningServer, ServerFactory
from tests.redis_fixtures import RedisProcess, own_redis, redis_server  # noqa: F401
from tests.test_http_api import post
from tests.wsclient import connected_client

CHANNELS = [f"chat:b{i}" for i in range(100)]


async def redis_server_for(
    start_server: ServerFactory, redis: RedisProcess
) -> tuple[RunningServer, ServerShard]:
    server = await start_server(
        {
            "engine": {
                "type": "redis",
                "redis": {"address": redis.address, "prefix": f"b{uuid.uuid4().hex[:8]}"},
            }
        }
    )
    engine = server.hub.engine
    assert isinstance(engine, RedisEngine)
    shard = engine._shards[0]
    assert isinstance(shard, ServerShard)
    return server, shard


async def test_a_broadcast_is_one_redis_batch_with_responses_in_channel_order(
    start_server: ServerFactory,
    redis_server: RedisProcess,  # noqa: F811
) -> None:
    server, shard = await redis_server_for(start_server, redis_server)
    async with (
        connected_client(server.ws_url, channels=("chat:b0",)) as first,
        connected_client(server.ws_url, channels=("chat:b99",)) as last,
    ):
        # chat:b7 is one ahead of the others: its offset tells its response apart.
        status, body = await post(server, "publish", {"channel": "chat:b7", "data": {"early": 1}})
        assert status == 200 and body["result"]["offset"] == 1
        batches, calls = shard.publish.batches, shard.publish.calls
        channels = [*CHANNELS[:50], "nope:x", *CHANNELS[50:]]
        status, body = await post(server, "broadcast", {"channels": channels, "data": {"all": 1}})
        assert status == 200
        assert (shard.publish.batches - batches, shard.publish.calls - calls) == (1, 100)
        responses: list[dict[str, Any]] = body["result"]["responses"]
        assert len(responses) == 101
        assert responses[50] == {"error": {"code": 102, "message": "unknown channel"}}
        offsets = [r["result"]["offset"] for r in responses[:50] + responses[51:]]
        assert offsets == [2 if channel == "chat:b7" else 1 for channel in CHANNELS]
        assert len({r["result"]["epoch"] for i, r in enumerate(responses) if i != 50}) == 100
        assert (await first.push("chat:b0", "pub"))["data"] == {"all": 1}
        assert (await last.push("chat:b99", "pub"))["data"] == {"all": 1}


async def test_with_redis_away_each_channel_gets_error_100(
    start_server: ServerFactory,
    own_redis: RedisProcess,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _ = await redis_server_for(start_server, own_redis)
    own_redis.kill()
    status, body = await post(server, "broadcast", {"channels": CHANNELS[:3], "data": {"n": 1}})
    assert status == 200
    internal = {"error": {"code": 100, "message": "internal server error"}}
    assert body["result"]["responses"] == [internal] * 3
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("parallel", [True, False])
async def test_a_parallel_batch_publishes_together_and_replies_in_order(
    start_server: ServerFactory,
    redis_server: RedisProcess,  # noqa: F811
    parallel: bool,
) -> None:
    server, shard = await redis_server_for(start_server, redis_server)
    commands: list[dict[str, Any]] = [
        {"publish": {"channel": channel, "data": {"n": i}}}
        for i, channel in enumerate(CHANNELS[:20])
    ]
    commands.insert(3, {"nothing": {}})
    batches = shard.publish.batches
    status, body = await post(server, "batch", {"commands": commands, "parallel": parallel})
    assert status == 200
    replies = body["replies"]
    assert replies[3] == {"error": {"code": 104, "message": "method not found"}}
    assert [r["publish"]["offset"] for i, r in enumerate(replies) if i != 3] == [1] * 20
    if parallel:
        assert shard.publish.batches - batches == 1
    else:
        assert shard.publish.batches - batches == 20
