"""A Redis failover that loses acknowledged publications: every client is told.

Replication is asynchronous: a replica promoted after its master died may
lack the last publications the master acknowledged, and would hand their
offsets out again with other data. The scenario is made deterministic: the
replica is stopped (SIGSTOP) while the master acknowledges two more
publications, the master is killed (SIGKILL), and the replica is promoted
(Cluster: ``CLUSTER FAILOVER TAKEOVER``; Sentinel: its own failover). Then
hubbub publishes past the old top. Two raw WebSocket clients of a real hubbub
server had seen those lost publications: one stayed connected (it must be told
through an unsubscribe 2500 and then ``recovered: false``), one was away and
comes back with its position (``recovered: false``, never a silent
``recovered: true`` skipping the replacements).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hubbub.engines.base import EngineUnavailable
from tests.conftest import RunningServer, ServerFactory
from tests.redis_cluster_fixtures import RedisClusterProcesses, own_redis_cluster  # noqa: F401
from tests.redis_sentinel_fixtures import SentinelSetup, own_redis_sentinel  # noqa: F401
from tests.wsclient import WSClient, connected_client

pytestmark = pytest.mark.timeout(120)

CHANNEL = "chat:replaced"


async def publish(server: RunningServer, n: int, within: float = 20.0) -> dict[str, Any]:
    """Publish ``{"n": n}`` through the hub, retrying while Redis fails over."""
    deadline = time.monotonic() + within
    while True:
        try:
            position = await server.hub.publish(CHANNEL, {"n": n})
            return {"offset": position.offset, "epoch": position.epoch}
        except EngineUnavailable:
            assert time.monotonic() < deadline, "publishing did not resume"
            await asyncio.sleep(0.1)


async def recover(client: WSClient, offset: int, epoch: str, within: float = 20.0) -> Any:
    """Subscribe with recovery from (offset, epoch); a temporary error (100: the engine
    is still reaching the new master) is retried, as the SDKs do."""
    deadline = time.monotonic() + within
    params = {"channel": CHANNEL, "recover": True, "offset": offset, "epoch": epoch}
    while True:
        reply = await client.call("subscribe", params)
        if "error" not in reply:
            return reply["subscribe"]
        assert reply["error"].get("temporary"), reply
        assert time.monotonic() < deadline, reply
        await asyncio.sleep(0.2)


async def offsets_until(client: WSClient, last: int) -> list[int]:
    """The offsets of the publications ``client`` receives, up to ``last``."""
    seen: list[int] = []
    while not seen or seen[-1] < last:
        push = await client.push(CHANNEL, "pub")
        seen.append(push["offset"])
    return seen


async def lose_two_publications(
    server: RunningServer,
    failover: Callable[[], Awaitable[None]],
    before_loss: Callable[[], None],
) -> None:
    """Two clients see 1..12, 11 and 12 are lost by ``failover``, 13.. published after."""
    async with (
        connected_client(server.ws_url, channels=()) as live,
        connected_client(server.ws_url, channels=()) as away,
    ):
        epochs = set()
        for client in (live, away):
            result = await client.result("subscribe", {"channel": CHANNEL, "recover": True})
            assert result["recoverable"] is True
            epochs.add(result["epoch"])
        for n in range(1, 11):
            await publish(server, n)
        before_loss()  # the replica stops reading
        for n in (11, 12):
            await publish(server, n)
        assert await offsets_until(live, 12) == list(range(1, 13))
        assert await offsets_until(away, 12) == list(range(1, 13))
        [seen_epoch] = epochs
        await away.close()  # away while the master fails over

        await failover()
        after = [await publish(server, n) for n in range(100, 104)]
        assert after[-1]["offset"] >= 12, after  # offsets 11 and 12 handed out again
        assert after[0]["epoch"] != seen_epoch, (after, seen_epoch)

        # The live client is told (2500: the pub/sub connection to the dead master broke,
        # or the new epoch arrived as a gap) and recovers: recovered false.
        unsubscribe = await live.push(CHANNEL, "unsubscribe", within=20)
        assert unsubscribe["code"] == 2500
        again = await recover(live, 12, seen_epoch)
        assert again["was_recovering"] is True
        assert again.get("recovered", False) is False
        assert again["epoch"] == after[-1]["epoch"]

    # The client that was away comes back where it stood: told, not silently moved on.
    async with connected_client(server.ws_url) as back:
        result = await recover(back, 12, seen_epoch)
        assert result["was_recovering"] is True
        assert result.get("recovered", False) is False
        assert result["epoch"] == after[-1]["epoch"]
        assert result["offset"] == after[-1]["offset"]


async def test_cluster_failover_losing_publications_tells_every_client(
    own_redis_cluster: RedisClusterProcesses,  # noqa: F811
    start_server: ServerFactory,
) -> None:
    cluster = own_redis_cluster
    server = await start_server(
        {"engine": {"type": "redis", "redis": {"cluster_address": [cluster.seeds]}}}
    )
    tag = "{" + CHANNEL + "}"
    victim = cluster.owner_of(tag)
    replica = cluster.replica_of(victim)
    loop = asyncio.get_running_loop()

    def stop_replica() -> None:
        cluster.cut_off_replica(victim)

    async def failover() -> None:
        try:
            victim.kill()
        finally:
            replica.resume()
        replica.cli("CLUSTER", "FAILOVER", "TAKEOVER")
        await loop.run_in_executor(None, cluster.wait_ok)
        assert cluster.owner_of(tag) is replica

    try:
        await lose_two_publications(server, failover, stop_replica)
    finally:
        if replica.process is not None:
            replica.resume()


async def test_sentinel_failover_losing_publications_tells_every_client(
    own_redis_sentinel: SentinelSetup,  # noqa: F811
    start_server: ServerFactory,
) -> None:
    setup = own_redis_sentinel
    server = await start_server(
        {
            "engine": {
                "type": "redis",
                "redis": {
                    "sentinel_address": [setup.spec],
                    "sentinel_master_name": setup.master_name,
                },
            }
        }
    )
    loop = asyncio.get_running_loop()

    async def failover() -> None:
        try:
            setup.master.kill()
        finally:
            setup.resume_replica()
        await loop.run_in_executor(None, setup.wait_promoted, setup.replica)

    await lose_two_publications(server, failover, setup.cut_off_replica)
