"""The chaos run: real SDK clients and a publisher on a cluster while faults hit it.

``run_chaos(options)`` starts the cluster (tests/chaos_cluster.py), connects
centrifuge-python clients (some through nginx, some straight to a node through
its client link; some subscribing themselves, some with server-side
subscriptions from their connection token), publishes numbered publications
through the HTTP API of random live nodes at a bounded rate, runs the seeded
fault plan, heals, waits for every client to catch up, and accounts each
subscription (tests/chaos_accounting.py). ``render`` (tests/chaos_report.py)
makes the summary ``benchmarks/chaos.py`` prints and the test shows.

Rule: a publication counts as published only when the API answered it with a
stream position; everything is bounded in time (publish timeouts, the settle
wait) and every process is stopped by the cluster that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectingContext,
    DisconnectedContext,
    PublicationContext,
    ServerPublicationContext,
    ServerSubscribedContext,
    SubscribedContext,
    SubscribingContext,
    SubscriptionEventHandler,
)

from hubbub.auth.tokens import make_token
from tests.chaos_accounting import (
    Account,
    Ack,
    Event,
    Received,
    Subscribed,
    account,
    check_acks,
    epoch_ranks,
)
from tests.chaos_cluster import FAULT_KINDS, ChaosCluster, Done, LogScan, plan_faults
from tests.conftest import API_KEY, SECRET

PUBLISH_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    seed: int = 1
    seconds: float = 180.0  # faults are injected during this long
    nodes: int = 3
    channels: int = 2
    direct_clients: int = 2  # per node, through the node's client link
    nginx_clients: int = 3  # through nginx (0 and nginx=False: none)
    server_side_every: int = 3  # every Nth client gets server-side subscriptions
    rate: float = 20.0  # publications per second per channel
    gap: tuple[float, float] = (2.0, 6.0)  # quiet seconds between two faults
    kinds: tuple[str, ...] = FAULT_KINDS
    nginx: bool = True
    tail: float = 3.0  # healthy publishing after the last fault
    settle: float = 30.0  # at most this long for clients to catch up at the end


class ChaosClient(ClientEventHandler):
    """One centrifuge-python client and what it reported, per channel."""

    def __init__(self, name: str, url: str, channels: Sequence[str], server_side: bool) -> None:
        self.name = name
        self.route = url
        self.server_side = server_side
        self.logs: dict[str, list[Event]] = {channel: [] for channel in channels}
        self.last: dict[str, int] = {channel: 0 for channel in channels}  # highest n received
        self.connecting: Counter[int] = Counter()  # codes that made it reconnect
        self.unsubscribed: Counter[int] = Counter()  # unsubscribe codes (client-side subs)
        self.final: list[int] = []  # disconnected codes (it stopped reconnecting)
        self.connects = 0
        extra: dict[str, Any] = {"channels": list(channels)} if server_side else {}
        self.client = Client(
            url,
            events=self,
            token=make_token(SECRET, name, ttl=24 * 3600, extra=extra),
            proxy=None,
            timeout=3.0,
            max_server_ping_delay=3.0,
            min_reconnect_delay=0.1,
            max_reconnect_delay=1.0,
        )
        if not server_side:
            for channel in channels:
                self.client.new_subscription(
                    channel,
                    _Subscription(self, channel),
                    min_resubscribe_delay=0.1,
                    max_resubscribe_delay=1.0,
                )
        self.closing = False

    # --- what the SDK reports ----------------------------------------------------------

    def subscribed(self, channel: str, ctx: SubscribedContext | ServerSubscribedContext) -> None:
        position = ctx.stream_position
        self.logs[channel].append(
            Subscribed(
                was_recovering=ctx.was_recovering,
                recovered=ctx.recovered,
                epoch=position.epoch if position is not None else "",
                offset=position.offset if position is not None else 0,
                at=time.monotonic(),
            )
        )

    def received(self, channel: str, offset: int, data: Any) -> None:
        n = int(data["n"])
        self.logs[channel].append(Received(n=n, offset=offset))
        self.last[channel] = max(self.last[channel], n)

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        self.connecting[ctx.code] += 1

    async def on_connected(self, ctx: Any) -> None:
        self.connects += 1

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        if not self.closing:
            self.final.append(ctx.code)

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        self.subscribed(ctx.channel, ctx)

    async def on_publication(self, ctx: ServerPublicationContext) -> None:
        self.received(ctx.channel, ctx.pub.offset, ctx.pub.data)

    # --- start, stop -------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.wait_for(self.client.connect(), 10)
        for channel in self.logs:
            sub = self.client.get_subscription(channel)
            if sub is not None:
                await sub.subscribe()

    async def ready(self, within: float) -> None:
        """Every channel has a first subscribe result."""
        async with asyncio.timeout(within):
            while not all(self.logs.values()):  # noqa: ASYNC110 - polled, bounded
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self.closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.disconnect(), 5)


class _Subscription(SubscriptionEventHandler):
    def __init__(self, owner: ChaosClient, channel: str) -> None:
        self.owner = owner
        self.channel = channel

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.owner.subscribed(self.channel, ctx)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.owner.received(self.channel, ctx.pub.offset, ctx.pub.data)

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        if ctx.code >= 2000:  # not the first subscribe() call
            self.owner.unsubscribed[ctx.code] += 1


class Publisher:
    """Numbered publications to one channel through random live nodes' HTTP API."""

    def __init__(self, cluster: ChaosCluster, channel: str, rate: float, seed: int) -> None:
        self.cluster = cluster
        self.channel = channel
        self.rate = rate
        self.rng = random.Random(seed)
        self.acks: list[Ack] = []
        self.attempted = 0
        self.failures: Counter[str] = Counter()  # why publishes were not acknowledged

    async def run(self, stop: asyncio.Event) -> None:
        connector = aiohttp.TCPConnector(force_close=True)  # no stale keep-alive to a dead node
        async with aiohttp.ClientSession(connector=connector) as http:
            interval = 1.0 / self.rate
            due = time.monotonic()
            while not stop.is_set():
                up = sorted(self.cluster.up)
                if up:
                    self.attempted += 1
                    await self._publish(http, self.rng.choice(up), self.attempted)
                due = max(due + interval, time.monotonic() - 1.0)  # no bursts after a stall
                delay = due - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)

    async def _publish(self, http: aiohttp.ClientSession, index: int, n: int) -> None:
        node = self.cluster.nodes[index]
        try:
            async with http.post(
                f"http://127.0.0.1:{node.port}/api/publish",
                json={"channel": self.channel, "data": {"n": n}},
                headers={"X-API-Key": API_KEY},
                timeout=aiohttp.ClientTimeout(total=PUBLISH_TIMEOUT),
            ) as response:
                body = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            self.failures[type(exc).__name__] += 1
            return
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, dict) or "offset" not in result:
            error = body.get("error") if isinstance(body, dict) else None
            code = error.get("code") if isinstance(error, dict) else response.status
            self.failures[f"error {code}"] += 1
            return
        self.acks.append(
            Ack(n, str(result.get("epoch", "")), int(result["offset"]), time.monotonic())
        )


@dataclass(slots=True)
class ClientResult:
    client: ChaosClient
    route: str
    accounts: dict[str, Account]

    @property
    def total(self) -> Account:
        total = Account()
        for one in self.accounts.values():
            total.add(one)
        return total


@dataclass(slots=True)
class ChaosReport:
    options: ChaosOptions
    names: list[str]
    plan: list[str]
    faults: list[Done]
    publishers: list[Publisher]
    clients: list[ClientResult]
    logs: LogScan
    caught_up: bool
    ack_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> Account:
        total = Account()
        for result in self.clients:
            total.add(result.total)
        return total

    @property
    def dead_clients(self) -> list[str]:
        return [r.client.name for r in self.clients if r.client.final]

    @property
    def ok(self) -> bool:
        return (
            self.total.clean
            and not self.logs.tracebacks
            and not self.dead_clients
            and not self.ack_problems
        )


async def run_chaos(options: ChaosOptions, workdir: Path | None = None) -> ChaosReport:
    """The whole run; ``workdir`` keeps the node logs (a temporary one otherwise)."""
    if workdir is not None:
        return await _run(options, workdir)
    with tempfile.TemporaryDirectory(prefix="hubbub-chaos-") as directory:
        os.chmod(directory, 0o755)  # nginx workers read their temp dirs
        return await _run(options, Path(directory))


async def _run(options: ChaosOptions, workdir: Path) -> ChaosReport:
    begun = time.monotonic()
    cluster = ChaosCluster(
        workdir, options.nodes, nginx=options.nginx, prefix=f"chaos{uuid.uuid4().hex[:6]}"
    )
    channels = [f"chat:chaos-{i}" for i in range(options.channels)]
    clients: list[ChaosClient] = []
    publishers: list[Publisher] = []
    stop_publishing = asyncio.Event()
    try:
        await cluster.start()
        plan = plan_faults(
            options.seed, options.seconds, options.nodes, kinds=options.kinds, gap=options.gap
        )
        clients = _make_clients(cluster, options, channels)
        await asyncio.gather(*(client.start() for client in clients))
        await asyncio.gather(*(client.ready(15) for client in clients))
        publishers = [
            Publisher(cluster, channel, options.rate, options.seed * 1000 + i)
            for i, channel in enumerate(channels)
        ]
        publishing = [asyncio.create_task(p.run(stop_publishing)) for p in publishers]
        cluster.started = time.monotonic()  # fault times count from here
        done = await cluster.run_faults(plan)
        remaining = options.seconds - cluster.elapsed()
        if remaining > 0:
            await asyncio.sleep(remaining)
        await cluster.heal()
        await asyncio.sleep(options.tail)
        stop_publishing.set()
        await asyncio.gather(*publishing)
        caught_up = await _catch_up(clients, publishers, options.settle)
    finally:
        stop_publishing.set()
        for client in clients:
            await client.stop()
        await cluster.close()
    ranks_by_channel = {
        p.channel: epoch_ranks(p.acks, [c.logs[p.channel] for c in clients]) for p in publishers
    }
    results = [
        ClientResult(
            client,
            client.route,
            {
                p.channel: account(p.acks, client.logs[p.channel], ranks_by_channel[p.channel])
                for p in publishers
            },
        )
        for client in clients
    ]
    problems = [
        f"{p.channel}: {problem}"
        for p in publishers
        for problem in check_acks(p.acks, ranks_by_channel[p.channel])
    ]
    return ChaosReport(
        options=options,
        names=cluster.names,
        plan=[fault.describe(cluster.names) for fault in plan],
        faults=done,
        publishers=publishers,
        clients=results,
        logs=cluster.scan_logs(),
        caught_up=caught_up,
        ack_problems=problems,
        seconds=time.monotonic() - begun,
    )


def _make_clients(
    cluster: ChaosCluster, options: ChaosOptions, channels: list[str]
) -> list[ChaosClient]:
    routes: list[tuple[str, str]] = []
    for index, node in enumerate(cluster.nodes):
        routes += [(f"direct {node.name}", cluster.direct_url(index))] * options.direct_clients
    if cluster.nginx is not None:
        routes += [("nginx", cluster.nginx.ws_url)] * options.nginx_clients
    clients = []
    for number, (route, url) in enumerate(routes):
        server_side = options.server_side_every > 0 and number % options.server_side_every == (
            options.server_side_every - 1
        )
        client = ChaosClient(f"c{number:02d}", url, channels, server_side)
        client.route = route + (" server-side" if server_side else "")
        clients.append(client)
    return clients


async def _catch_up(
    clients: Sequence[ChaosClient], publishers: Sequence[Publisher], within: float
) -> bool:
    """Wait until every client received each channel's last acknowledged publication."""
    last = {p.channel: p.acks[-1].n for p in publishers if p.acks}
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(c.last.get(channel, 0) >= n for c in clients for channel, n in last.items()):
            return True
        await asyncio.sleep(0.1)
    return False
