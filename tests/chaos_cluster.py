"""The chaos run's cluster and its faults: nodes on one Redis, link proxies, nginx.

Layout: one redis-server; per node, a LinkProxy from the node to Redis (the
node's only way to Redis) and a LinkProxy from clients to the node; nginx in
front of the nodes' own ports (round robin). The publisher reaches the nodes'
HTTP API directly.

Rule 1: the fault plan is a pure function of the seed (``plan_faults``): the
same seed gives the same faults, targets and durations in the same order.
Rule 2: faults run one after another; each ends by undoing itself (restart,
SIGCONT, Redis back, links flowing), so the run ends healed.
Rule 3: nothing here blocks the event loop (the clients and the proxies run on
it): waits on processes are polled, blocking calls go to a thread.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos_proxy import LinkProxy
from tests.cluster_fixtures import Nginx, Node
from tests.redis_fixtures import RedisProcess

#: Every kind of fault, and the range of its duration in seconds (how long a node
#: stays down, stopped or cut off; 0 for an instant event).
FAULT_DURATIONS: dict[str, tuple[float, float]] = {
    "kill": (0.5, 3.0),  # SIGKILL a node, restart it after the duration
    "term": (0.5, 3.0),  # SIGTERM a node (graceful 3001), restart after the duration
    "stop": (1.0, 5.0),  # SIGSTOP a node, SIGCONT after the duration
    "redis-restart": (0.2, 2.0),  # SIGKILL redis-server (its data is gone), start it again
    "redis-stop": (1.0, 5.0),  # SIGSTOP redis-server, SIGCONT after the duration
    "redis-link-cut": (0.0, 0.0),  # reset a node's connections to Redis
    "redis-link-stall": (1.0, 5.0),  # a node's Redis traffic stops moving
    "redis-link-partition": (1.0, 4.0),  # a node cannot reach Redis at all
    "client-link-cut": (0.0, 0.0),  # reset the direct clients' connections to a node
    "client-link-stall": (1.0, 5.0),  # their traffic stops moving
    "client-link-partition": (1.0, 3.0),  # they cannot reach the node at all
}
FAULT_KINDS = tuple(FAULT_DURATIONS)

#: Node configuration of the run: pings often enough that stalls are noticed.
NODE_CONFIG = {
    "log": {"level": "info"},
    "client": {"ping_interval": "5s", "pong_timeout": "3s"},
}

TERM_WAIT = 10.0  # a node that has not exited this long after SIGTERM is killed (and reported)


@dataclass(frozen=True, slots=True)
class Fault:
    at: float  # planned start, seconds after the run started
    kind: str
    target: int  # node index (unused by the redis-server faults)
    seconds: float
    stream: int = 0  # which of the concurrent fault streams planned it

    @property
    def on_redis(self) -> bool:
        return self.kind in ("redis-restart", "redis-stop")

    def resource(self) -> str:
        """What the fault acts on: two faults on one resource never overlap."""
        if self.on_redis:
            return "redis"
        if self.kind.startswith(("redis-link", "client-link")):
            return f"{self.kind.rsplit('-', 1)[0]} {self.target}"
        return f"node {self.target}"

    def describe(self, names: Sequence[str]) -> str:
        target = "redis" if self.on_redis else names[self.target]
        return f"{self.at:6.1f}s #{self.stream} {self.kind} {target} {self.seconds:.1f}s"


def plan_faults(
    seed: int,
    seconds: float,
    nodes: int,
    *,
    kinds: Sequence[str] = FAULT_KINDS,
    gap: tuple[float, float] = (2.0, 6.0),
    warmup: float = 3.0,
    cooldown: float = 3.0,
    stream: int = 0,
) -> list[Fault]:
    """Faults from ``warmup`` to ``seconds - cooldown``: each kind once per round, in a
    seeded order; targets, durations and gaps seeded too (Rule 1). Each ``stream``
    of one seed is a different plan."""
    rng = random.Random(seed * 1000 + stream)
    faults: list[Fault] = []
    bag: list[str] = []
    at = warmup
    while True:
        if not bag:
            bag = list(kinds)
            rng.shuffle(bag)
        kind = bag.pop()
        low, high = FAULT_DURATIONS[kind]
        duration = round(rng.uniform(low, high), 1)
        target = rng.randrange(nodes)
        if at + duration > seconds - cooldown:
            return faults
        faults.append(Fault(round(at, 1), kind, target, duration, stream))
        at += duration + rng.uniform(*gap)


@dataclass(slots=True)
class Done:
    """A fault as it ran."""

    fault: Fault
    started: float  # seconds after the run started
    took: float
    note: str = ""


@dataclass(slots=True)
class LogScan:
    tracebacks: int = 0
    errors: int = 0
    warnings: int = 0
    per_node: dict[str, Counter[str]] = field(default_factory=dict)
    # Distinct problems (the log line and, for a traceback, its exception): how often.
    kinds: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # kind: its first traceback


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ([A-Z]+) (.*)$")
_CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
_VARYING = re.compile(r"\b[0-9a-f]{32}\b|127\.0\.0\.1:\d+|0x[0-9a-f]+")  # ids, ports


def scan_log(name: str, text: str, scan: LogScan) -> None:
    """Count tracebacks (a chain of exceptions is one), error and warning lines of one
    node's log into ``scan``; group them by message and final exception."""
    counts: Counter[str] = Counter()
    lines = text.splitlines()
    message = ""  # the last log line's message: a traceback follows its line
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if line.lstrip().startswith("Traceback (most recent call last)"):
            # The traceback and every exception chained to it, up to the next log line;
            # indented as a whole when the log formatter keeps a record on one block.
            indent = len(line) - len(line.lstrip())
            first = index - 1
            exception = "?"
            while index < len(lines) and not _LOG_LINE.match(lines[index]):
                text_line = lines[index]
                text_line = text_line[indent:] if text_line[:indent].isspace() else text_line
                index += 1
                if (
                    text_line
                    and not text_line[:1].isspace()
                    and not text_line.startswith(("Traceback", *_CHAINED))
                ):
                    exception = text_line
            counts["traceback"] += 1
            kind = _VARYING.sub("*", f"traceback after {message!r}: {exception}")
            scan.kinds[kind] += 1
            scan.examples.setdefault(
                kind, f"{name}: " + "\n".join(lines[max(0, first - 1) : index])
            )
            continue
        match = _LOG_LINE.match(line)
        if match is None:
            continue
        level, message = match.groups()
        if level == "WARNING":
            counts["warning"] += 1
        elif level in ("ERROR", "CRITICAL"):
            counts["error"] += 1
    scan.tracebacks += counts["traceback"]
    scan.errors += counts["error"]
    scan.warnings += counts["warning"]
    scan.per_node[name] = counts


class ChaosCluster:
    """Redis, ``nodes`` hubbub nodes behind link proxies, and nginx (optional)."""

    def __init__(self, workdir: Path, nodes: int, *, nginx: bool, prefix: str) -> None:
        self.workdir = workdir
        self.redis = RedisProcess(workdir)
        self.redis_links: list[LinkProxy] = []
        self.client_links: list[LinkProxy] = []
        self.nodes: list[Node] = []
        self.node_count = nodes
        self.prefix = prefix
        self.use_nginx = nginx
        self.nginx: Nginx | None = None
        # Nodes the publisher may use now (not killed, stopping or stopped).
        self.up: set[int] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self.started = time.monotonic()

    @property
    def names(self) -> list[str]:
        return [node.name for node in self.nodes]

    async def start(self) -> None:
        await asyncio.to_thread(self.redis.start)
        for index in range(self.node_count):
            link = LinkProxy(f"redis<-{chr(97 + index)}", self.redis.port)
            await link.start()
            self.redis_links.append(link)
            node = Node(
                self.workdir,
                chr(97 + index),
                [f"127.0.0.1:{link.port}"],
                self.prefix,
                config=NODE_CONFIG,
            )
            self.nodes.append(node)
        await asyncio.gather(*(node.start() for node in self.nodes))
        for index, node in enumerate(self.nodes):
            link = LinkProxy(f"{node.name}<-clients", node.port)
            await link.start()
            self.client_links.append(link)
            self.up.add(index)
        if self.use_nginx:
            self.nginx = Nginx(self.workdir, [node.port for node in self.nodes])
            await self.nginx.start()
        self.started = time.monotonic()

    def direct_url(self, index: int) -> str:
        return f"ws://127.0.0.1:{self.client_links[index].port}/connection/websocket"

    async def close(self) -> None:
        if self.redis.process is not None:
            self.redis.process.send_signal(signal.SIGCONT)  # in case a fault was interrupted
        for index, node in enumerate(self.nodes):
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
                await self._terminate(index)
        if self.nginx is not None:
            await asyncio.to_thread(self.nginx.stop)
        for link in [*self.client_links, *self.redis_links]:
            await link.close()
        await asyncio.to_thread(self.redis.stop)

    # --- faults ------------------------------------------------------------------------

    async def run_faults(self, plan: Sequence[Fault]) -> list[Done]:
        """Run every fault of ``plan`` in order, each at its planned time or, when the
        previous one ran late (a slow restart) or its resource is busy with another
        stream's fault, as soon as it can."""
        done: list[Done] = []
        for fault in plan:
            delay = fault.at - self.elapsed()
            if delay > 0:
                await asyncio.sleep(delay)
            async with self._locks.setdefault(fault.resource(), asyncio.Lock()):
                started = self.elapsed()
                note = await self.inject(fault)
            done.append(Done(fault, started, self.elapsed() - started, note))
        return done

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def inject(self, fault: Fault) -> str:
        """Inflict ``fault`` and undo it (Rule 2); a note on anything unexpected."""
        index, seconds = fault.target, fault.seconds
        kind = fault.kind
        if kind == "kill":
            self.up.discard(index)
            await asyncio.to_thread(self.nodes[index].kill)
            await asyncio.sleep(seconds)
            return await self._restart(index)
        if kind == "term":
            self.up.discard(index)
            note = await self._terminate(index)
            await asyncio.sleep(seconds)
            return note + await self._restart(index)
        if kind == "stop":
            process = self.nodes[index].process
            assert process is not None
            self.up.discard(index)
            process.send_signal(signal.SIGSTOP)
            await asyncio.sleep(seconds)
            process.send_signal(signal.SIGCONT)
            self.up.add(index)
            return ""
        if kind == "redis-restart":
            await asyncio.to_thread(self.redis.kill)
            await asyncio.sleep(seconds)
            await asyncio.to_thread(self.redis.start)
            return ""
        if kind == "redis-stop":
            redis = self.redis.process
            assert redis is not None
            redis.send_signal(signal.SIGSTOP)
            await asyncio.sleep(seconds)
            redis.send_signal(signal.SIGCONT)
            return ""
        link = (self.redis_links if kind.startswith("redis-link") else self.client_links)[index]
        action = kind.rsplit("-", 1)[1]
        if action == "cut":
            return f"{link.cut()} links"
        if action == "stall":
            link.stall(seconds)
        else:
            link.partition(seconds)
        await asyncio.sleep(seconds)
        return ""

    async def _terminate(self, index: int) -> str:
        """SIGTERM node ``index`` and wait for it to exit (polled, Rule 3)."""
        node = self.nodes[index]
        process, node.process = node.process, None
        if process is None or process.poll() is not None:
            return ""
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + TERM_WAIT
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                await asyncio.to_thread(process.wait, 5)
                return f"did not exit within {TERM_WAIT:g}s of SIGTERM (killed); "
            await asyncio.sleep(0.05)
        return "" if process.returncode == 0 else f"exit status {process.returncode}; "

    async def _restart(self, index: int) -> str:
        node = self.nodes[index]
        note = ""
        for attempt in range(5):
            try:
                # Not ready=True: chaos may have stopped Redis meanwhile; the node must
                # come back anyway (its clients get error 100 until Redis answers).
                await node.start(ready=False)
            except (RuntimeError, TimeoutError) as exc:
                if node.process is not None:
                    await asyncio.to_thread(node.kill)
                await asyncio.sleep(0.5)
                note = f"restart attempt {attempt + 1} failed: {exc}; "
                continue
            self.up.add(index)
            return note
        raise RuntimeError(f"node {node.name} did not restart")

    async def heal(self) -> None:
        """Every node up, Redis up, every link flowing (after the last fault)."""
        if self.redis.process is None:
            await asyncio.to_thread(self.redis.start)
        for index, node in enumerate(self.nodes):
            if node.process is None or node.process.poll() is not None:
                await self._restart(index)

    # --- logs --------------------------------------------------------------------------

    def scan_logs(self) -> LogScan:
        scan = LogScan()
        for node in self.nodes:
            scan_log(node.name, node.log(), scan)
        return scan
