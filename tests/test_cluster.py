"""Several hubbub processes on one Redis, driven by the centrifuge-python SDK.

Node processes run ``python -m hubbub.cli.main serve`` with ``engine.type =
redis``; clients are real SDK clients (``proxy=None``). The fault tests print,
per client, sent/received/lost/duplicated/out-of-order, and require no loss
the client was not told about.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from centrifuge import (
    Client,
    PublicationContext,
    SubscribedContext,
    SubscribingContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)

from tests.cluster_fixtures import Nginx, Node
from tests.nats_fixtures import NatsProcess, nats_server  # noqa: F401 (fixture)
from tests.redis_cluster_fixtures import RedisClusterProcesses, own_redis_cluster  # noqa: F401
from tests.redis_fixtures import RedisProcess, own_redis  # noqa: F401 (fixture)
from tests.sdk_helpers import DeliveryReport

pytestmark = pytest.mark.timeout(90)


class Recorder(SubscriptionEventHandler):
    """A centrifuge-python client and subscription that record what happens."""

    def __init__(self, url: str, channel: str) -> None:
        self.numbers: list[int] = []
        self.subscribed: list[SubscribedContext] = []
        self.subscribing: list[int] = []  # codes
        self.unsubscribed: list[int] = []
        self.changed = asyncio.Event()
        self.client = Client(
            url, proxy=None, min_reconnect_delay=0.05, max_reconnect_delay=0.5, timeout=3.0
        )
        self.subscription = self.client.new_subscription(
            channel, self, min_resubscribe_delay=0.05, max_resubscribe_delay=0.5
        )

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.numbers.append(ctx.pub.data["n"])
        self.changed.set()

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)
        self.changed.set()

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        self.subscribing.append(ctx.code)

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.unsubscribed.append(ctx.code)

    async def start(self) -> None:
        await asyncio.wait_for(self.client.connect(), 5)
        await self.subscription.subscribe()
        await self.subscription.ready(timeout=5)

    async def stop(self) -> None:
        await asyncio.wait_for(self.client.disconnect(), 5)

    async def wait_for(self, condition: Any, within: float) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self.changed.clear()
                try:
                    async with asyncio.timeout(0.1):
                        await self.changed.wait()
                except TimeoutError:
                    pass


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hubbub-cluster-") as directory:
        path = Path(directory)
        path.chmod(0o755)
        yield path


@pytest.fixture
async def nodes(
    own_redis: RedisProcess,  # noqa: F811
    workdir: Path,
) -> AsyncIterator[tuple[Node, Node]]:
    prefix = f"c{uuid.uuid4().hex[:6]}"
    a = Node(workdir, "a", [own_redis.address], prefix)
    b = Node(workdir, "b", [own_redis.address], prefix)
    try:
        await asyncio.gather(a.start(), b.start())
        yield a, b
    finally:
        a.stop()
        b.stop()
        for node in (a, b):
            print(f"--- node {node.name} log ---\n{node.log()[-3000:]}")


async def test_publications_presence_and_history_across_nodes(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    channel = "chat:cross"
    subscriber = Recorder(a.ws_url, channel)
    publisher = Recorder(b.ws_url, channel)
    await subscriber.start()
    await publisher.start()
    try:
        # Through the client protocol on node B...
        await publisher.subscription.publish({"n": 1}, timeout=5)
        # ...and through the HTTP API of node B.
        result = await b.api("publish", {"channel": channel, "data": {"n": 2}})
        assert result["offset"] == 2
        await subscriber.wait_for(lambda: len(subscriber.numbers) >= 2, 5)
        assert subscriber.numbers == [1, 2]
        await publisher.wait_for(lambda: len(publisher.numbers) >= 2, 5)
        # Presence: both clients, seen from both nodes.
        seen_a = await a.api("presence", {"channel": channel})
        seen_b = await b.api("presence", {"channel": channel})
        assert set(seen_a["presence"]) == set(seen_b["presence"])
        assert len(seen_a["presence"]) == 2
        stats = await b.api("presence_stats", {"channel": channel})
        assert stats["num_clients"] == 2
        # History: the same from both nodes.
        history_a = await a.api("history", {"channel": channel, "limit": -1})
        history_b = await b.api("history", {"channel": channel, "limit": -1})
        assert history_a == history_b
        assert [p["data"]["n"] for p in history_a["publications"]] == [1, 2]
    finally:
        await subscriber.stop()
        await publisher.stop()
    # The subscriber left: presence is empty from the other node too.
    for _ in range(100):  # at most ~5 s
        if not (await b.api("presence", {"channel": channel})).get("presence"):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("presence still lists clients that left")


def report(label: str, sent: list[int], recorder: Recorder) -> DeliveryReport:
    result = DeliveryReport.compare(sent, recorder.numbers)
    print(
        f"{label}: {result} subscribing codes={recorder.subscribing} "
        f"subscribed={[(s.was_recovering, s.recovered) for s in recorder.subscribed]}"
    )
    return result


async def publish_stream(
    node: Node, channel: str, count: int, rate: float, midway: Any, at: int
) -> list[int]:
    """Publish ``count`` numbers at ``rate``/s through ``node``'s API; call ``midway`` at ``at``."""
    sent: list[int] = []
    for n in range(1, count + 1):
        if n == at:
            midway()
        await node.api("publish", {"channel": channel, "data": {"n": n}})
        sent.append(n)
        await asyncio.sleep(1 / rate)
    return sent


async def test_kill_a_node_clients_recover_through_nginx_without_loss(
    nodes: tuple[Node, Node], workdir: Path
) -> None:
    a, b = nodes
    nginx = Nginx(workdir, [a.port, b.port])
    await nginx.start()
    channel = "chat:fault"
    clients = [Recorder(nginx.ws_url, channel) for _ in range(4)]
    try:
        for client in clients:  # round robin: a, b, a, b
            await client.start()
        on_a = (await a.api("channels", {})).get("channels", {}).get(channel, {})
        assert on_a.get("num_clients", 0) >= 1, f"no client landed on node a: {on_a}"
        sent = await publish_stream(b, channel, 200, 50.0, a.kill, at=70)
        for client in clients:
            await client.wait_for(lambda c=client: len(set(c.numbers)) >= 200, 20)
        reports = [report(f"client {i}", sent, c) for i, c in enumerate(clients)]
        moved = [c for c in clients if len(c.subscribed) > 1]
        assert moved, "no client was on the killed node"
        for moved_client in moved:
            assert moved_client.subscribed[-1].recovered
        for result in reports:
            assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0), result
    finally:
        for client in clients:
            await client.stop()
        nginx.stop()


async def test_redis_restart_tells_subscribers_and_never_loses_silently(
    nodes: tuple[Node, Node],
    own_redis: RedisProcess,  # noqa: F811
) -> None:
    a, b = nodes
    channel = "chat:restart"
    clients = [Recorder(a.ws_url, channel), Recorder(b.ws_url, channel)]
    for client in clients:
        await client.start()
    try:
        for n in range(1, 11):
            await b.api("publish", {"channel": channel, "data": {"n": n}})
        for client in clients:
            await client.wait_for(lambda c=client: len(c.numbers) >= 10, 5)
        own_redis.restart()  # the data is gone, and the nodes' pub/sub connections broke
        for client in clients:
            # Told: unsubscribe 2500, then the SDK resubscribes.
            await client.wait_for(
                lambda c=client: 2500 in c.subscribing and len(c.subscribed) >= 2, 15
            )
        # After the restart: a new epoch, publications flow again from offset 1.
        for n in range(11, 21):
            async with asyncio.timeout(10):
                while True:
                    try:
                        await b.api("publish", {"channel": channel, "data": {"n": n}})
                        break
                    except (AssertionError, OSError):
                        await asyncio.sleep(0.1)
        for client in clients:
            await client.wait_for(lambda c=client: 20 in c.numbers, 10)
        sent = list(range(1, 21))
        for i, client in enumerate(clients):
            result = report(f"client {i}", sent, client)
            resubscribed = client.subscribed[-1]
            assert resubscribed.was_recovering
            # The stream is gone: the SDK hears recovered=false, never a silent gap.
            assert not resubscribed.recovered
            assert (result.duplicated, result.out_of_order) == (0, 0)
            # Anything missing was published while the client was being told.
            assert result.lost == 0 or 2500 in client.subscribing
        for node in nodes:  # the outage is a few warning lines, never a traceback
            text = node.log()
            assert "Traceback" not in text and " ERROR " not in text, text[-3000:]
            assert text.count("broker connection lost") <= 2, text[-3000:]
    finally:
        for client in clients:
            await client.stop()


def test_nginx_config_is_shown_in_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in readme


# --- on a Redis Cluster (engine.redis.cluster_address) ---------------------------------


@pytest.fixture
async def cluster_nodes(
    own_redis_cluster: RedisClusterProcesses,  # noqa: F811
    workdir: Path,
) -> AsyncIterator[tuple[Node, Node]]:
    prefix = f"c{uuid.uuid4().hex[:6]}"
    seeds = own_redis_cluster.seeds
    a = Node(workdir, "a", [], prefix, cluster_seeds=seeds)
    b = Node(workdir, "b", [], prefix, cluster_seeds=seeds)
    try:
        await asyncio.gather(a.start(), b.start())
        yield a, b
    finally:
        a.stop()
        b.stop()
        for node in (a, b):
            print(f"--- node {node.name} log ---\n{node.log()[-3000:]}")


async def publish_acknowledged(
    node: Node, channel: str, count: int, rate: float, midway: Any, at: int
) -> list[int]:
    """Like ``publish_stream``, but a refused publish (an outage) is not counted as sent."""
    sent: list[int] = []
    for n in range(1, count + 1):
        if n == at:
            await asyncio.get_running_loop().run_in_executor(None, midway)
        try:
            await node.api("publish", {"channel": channel, "data": {"n": n}})
            sent.append(n)
        except (AssertionError, OSError, TimeoutError):
            pass  # error 100 while the slot has no master: the publisher is told
        await asyncio.sleep(1 / rate)
    return sent


async def test_cluster_master_failover_mid_stream_loss_counted_and_told(
    cluster_nodes: tuple[Node, Node],
    own_redis_cluster: RedisClusterProcesses,  # noqa: F811
) -> None:
    a, b = cluster_nodes
    channel = "chat:failover"
    clients = [Recorder(a.ws_url, channel), Recorder(b.ws_url, channel)]
    for client in clients:
        await client.start()
    try:
        victim = own_redis_cluster.owner_of("{" + channel + "}")
        sent = await publish_acknowledged(b, channel, 300, 50.0, victim.kill, at=80)
        assert len(sent) > 200, f"publishing did not resume: {len(sent)} acknowledged"
        for client in clients:
            await client.wait_for(lambda c=client: sent[-1] in c.numbers, 20)
        for i, client in enumerate(clients):
            result = report(f"client {i}", sent, client)
            # The slot's master died: every subscriber was told (2500) and resubscribed.
            assert 2500 in client.subscribing, client.subscribing
            assert (result.duplicated, result.out_of_order, result.unexpected) == (0, 0, 0)
            # A loss is allowed only where the client was told it could not recover.
            told = any(s.was_recovering and not s.recovered for s in client.subscribed)
            assert result.lost == 0 or told, result
    finally:
        for client in clients:
            await client.stop()


async def test_cluster_node_kill_clients_recover_through_nginx_without_loss(
    cluster_nodes: tuple[Node, Node], workdir: Path
) -> None:
    a, b = cluster_nodes
    nginx = Nginx(workdir, [a.port, b.port])
    await nginx.start()
    channel = "chat:cluster-kill"
    clients = [Recorder(nginx.ws_url, channel) for _ in range(4)]
    try:
        for client in clients:
            await client.start()
        sent = await publish_stream(b, channel, 150, 50.0, a.kill, at=50)
        for client in clients:
            await client.wait_for(lambda c=client: len(set(c.numbers)) >= 150, 20)
        reports = [report(f"client {i}", sent, c) for i, c in enumerate(clients)]
        moved = [c for c in clients if len(c.subscribed) > 1]
        assert moved, "no client was on the killed node"
        for moved_client in moved:
            assert moved_client.subscribed[-1].recovered
        for result in reports:
            assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0), result
    finally:
        for client in clients:
            await client.stop()
        nginx.stop()


# --- NATS broker in front of Redis (broker.type = "nats") ------------------------------


@pytest.fixture
async def nats_nodes(
    own_redis: RedisProcess,  # noqa: F811
    nats_server: NatsProcess,  # noqa: F811
    workdir: Path,
) -> AsyncIterator[tuple[Node, Node]]:
    prefix = f"n{uuid.uuid4().hex[:6]}"
    a = Node(workdir, "a", [own_redis.address], prefix, nats_url=nats_server.url)
    b = Node(workdir, "b", [own_redis.address], prefix, nats_url=nats_server.url)
    try:
        await asyncio.gather(a.start(), b.start())
        yield a, b
    finally:
        a.stop()
        b.stop()
        for node in (a, b):
            print(f"--- node {node.name} log ---\n{node.log()[-3000:]}")


async def test_nats_carries_plain_channels_and_redis_keeps_history_across_nodes(
    nats_nodes: tuple[Node, Node],
) -> None:
    a, b = nats_nodes
    plain = Recorder(a.ws_url, "news")  # no history: through NATS
    chat = Recorder(a.ws_url, "chat:nats")  # history and recovery: through Redis
    for client in (plain, chat):
        await client.start()
    try:
        for n in range(1, 51):
            await b.api("publish", {"channel": "news", "data": {"n": n}})
            result = await b.api("publish", {"channel": "chat:nats", "data": {"n": n}})
            assert result["offset"] == n
        for client in (plain, chat):
            await client.wait_for(lambda c=client: len(c.numbers) >= 50, 10)
            assert client.numbers == list(range(1, 51))
        # Presence is Redis's: the subscriber on node A is seen from node B.
        seen = await b.api("presence", {"channel": "chat:nats"})
        assert len(seen["presence"]) == 1
        # Node info travels as NATS control messages: each node lists both.
        for _ in range(100):  # at most ~10 s
            if len((await b.api("info", {}))["nodes"]) == 2:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(await b.api("info", {}))
        # A server API action on node B reaches the client on node A.
        await b.api("unsubscribe", {"user": "", "channel": "news"})
        await plain.wait_for(lambda: bool(plain.unsubscribed), 10)
        assert plain.unsubscribed == [2000]
    finally:
        for client in (plain, chat):
            await client.stop()


async def test_nats_node_kill_history_channel_clients_recover_without_loss(
    nats_nodes: tuple[Node, Node], workdir: Path
) -> None:
    a, b = nats_nodes
    nginx = Nginx(workdir, [a.port, b.port])
    await nginx.start()
    channel = "chat:nats-kill"
    clients = [Recorder(nginx.ws_url, channel) for _ in range(4)]
    try:
        for client in clients:
            await client.start()
        sent = await publish_stream(b, channel, 150, 50.0, a.kill, at=50)
        for client in clients:
            await client.wait_for(lambda c=client: len(set(c.numbers)) >= 150, 20)
        reports = [report(f"client {i}", sent, c) for i, c in enumerate(clients)]
        assert [c for c in clients if len(c.subscribed) > 1], "no client was on the killed node"
        for result in reports:
            assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0), result
    finally:
        for client in clients:
            await client.stop()
        nginx.stop()
