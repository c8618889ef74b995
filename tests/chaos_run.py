"""The chaos run: real SDK clients and a publisher on a cluster while faults hit it.

``run_chaos(options)`` starts the cluster (tests/chaos_cluster.py), connects
SDK clients (tests/chaos_clients.py: centrifuge-python and centrifuge-js; some
through nginx, some straight to a node through its client link; some
subscribing themselves, some with server-side subscriptions from their
connection token), publishes numbered publications through the HTTP API of
random live nodes at a bounded rate, runs the seeded fault plan (or several
concurrent ones), heals, waits for every client to catch up, and accounts
each subscription (tests/chaos_accounting.py). ``render``
(tests/chaos_report.py) makes the summary ``benchmarks/chaos.py`` prints and
the test shows.

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

from tests.chaos_accounting import (
    Account,
    Ack,
    Event,
    Subscribed,
    account,
    check_acks,
    epoch_ranks,
)
from tests.chaos_clients import ClientRecord, JsClient, PythonClient
from tests.chaos_cluster import FAULT_KINDS, ChaosCluster, Done, LogScan, plan_faults
from tests.conftest import API_KEY

PUBLISH_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    seed: int = 1
    seconds: float = 180.0  # faults are injected during this long
    nodes: int = 3
    channels: int = 2
    direct_clients: int = 2  # per node, through the node's client link
    nginx_clients: int = 3  # through nginx (0 and nginx=False: none)
    js_clients: int = 2  # centrifuge-js clients under Node (through nginx, else direct)
    server_side_every: int = 3  # every Nth client gets server-side subscriptions
    rate: float = 20.0  # publications per second per channel
    gap: tuple[float, float] = (2.0, 6.0)  # quiet seconds between two faults
    kinds: tuple[str, ...] = FAULT_KINDS
    nginx: bool = True
    streams: int = 1  # concurrent fault streams (faults on one resource never overlap)
    tail: float = 3.0  # healthy publishing after the last fault
    settle: float = 30.0  # at most this long for clients to catch up at the end


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
    client: ClientRecord
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
    started: float = 0.0  # time.monotonic() when the faults' clock started

    def dump(self) -> dict[str, Any]:
        """Everything the accounting read, as JSON data (times relative to ``started``)."""

        def event(e: Event) -> list[Any]:
            if isinstance(e, Subscribed):
                return [
                    "sub",
                    e.was_recovering,
                    e.recovered,
                    e.epoch,
                    e.offset,
                    e.at - self.started,
                ]
            return ["pub", e.n, e.offset]

        return {
            "faults": [
                [d.started, d.fault.kind, d.fault.target, d.fault.seconds, d.note]
                for d in self.faults
            ],
            "acks": {
                p.channel: [[a.n, a.epoch, a.offset, a.at - self.started] for a in p.acks]
                for p in self.publishers
            },
            "clients": {
                r.client.name: {
                    "route": r.route,
                    "logs": {ch: [event(e) for e in log] for ch, log in r.client.logs.items()},
                }
                for r in self.clients
            },
        }

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
    clients: list[ClientRecord] = []
    publishers: list[Publisher] = []
    stop_publishing = asyncio.Event()
    try:
        await cluster.start()
        plans = [
            plan_faults(
                options.seed,
                options.seconds,
                options.nodes,
                kinds=options.kinds,
                gap=options.gap,
                stream=stream,
            )
            for stream in range(options.streams)
        ]
        clients = _make_clients(cluster, options, channels)
        await asyncio.gather(*(client.start() for client in clients))
        await asyncio.gather(*(client.ready(15) for client in clients))
        publishers = [
            Publisher(cluster, channel, options.rate, options.seed * 1000 + i)
            for i, channel in enumerate(channels)
        ]
        publishing = [asyncio.create_task(p.run(stop_publishing)) for p in publishers]
        cluster.started = time.monotonic()  # fault times count from here
        streams = await asyncio.gather(*(cluster.run_faults(plan) for plan in plans))
        done = sorted((one for stream in streams for one in stream), key=lambda d: d.started)
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
        p.channel: epoch_ranks(p.acks, [c.logs[p.channel] for c in clients if p.channel in c.logs])
        for p in publishers
    }
    results = [
        ClientResult(
            client,
            client.route,
            {
                p.channel: account(p.acks, client.logs[p.channel], ranks_by_channel[p.channel])
                for p in publishers
                if p.channel in client.logs
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
        plan=[fault.describe(cluster.names) for plan in plans for fault in plan],
        faults=done,
        publishers=publishers,
        clients=results,
        logs=cluster.scan_logs(),
        caught_up=caught_up,
        ack_problems=problems,
        seconds=time.monotonic() - begun,
        started=cluster.started,
    )


def _make_clients(
    cluster: ChaosCluster, options: ChaosOptions, channels: list[str]
) -> list[ClientRecord]:
    routes: list[tuple[str, str]] = []
    for index, node in enumerate(cluster.nodes):
        routes += [(f"direct {node.name}", cluster.direct_url(index))] * options.direct_clients
    if cluster.nginx is not None:
        routes += [("nginx", cluster.nginx.ws_url)] * options.nginx_clients
    clients: list[ClientRecord] = []
    every = options.server_side_every
    for number, (route, url) in enumerate(routes):
        server_side = every > 0 and number % every == every - 1
        route += " server-side" if server_side else ""
        clients.append(PythonClient(f"c{number:02d}", url, route, channels, server_side))
    for number in range(options.js_clients):
        if cluster.nginx is not None:
            route, url = "nginx", cluster.nginx.ws_url
        else:
            index = number % len(cluster.nodes)
            route, url = f"direct {cluster.nodes[index].name}", cluster.direct_url(index)
        channel = channels[number % len(channels)]
        clients.append(JsClient(f"j{number:02d}", url, f"{route} js", channel))
    return clients


async def _catch_up(
    clients: Sequence[ClientRecord], publishers: Sequence[Publisher], within: float
) -> bool:
    """Wait until every client received each channel's last acknowledged publication."""
    last = {p.channel: p.acks[-1].n for p in publishers if p.acks}
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(
            c.last[channel] >= n
            for c in clients
            for channel, n in last.items()
            if channel in c.last
        ):
            return True
        await asyncio.sleep(0.1)
    return False
