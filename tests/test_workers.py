"""``hubbub serve --workers 2``: two processes on one port, sharing channels through Redis
(and with a NATS broker: NATS carries channels without history and the control
messages, Redis keeps history and presence).

Rule: the parent is started here (through ``cluster_fixtures.Node``) and its
workers are found as its children in /proc, each held by a pidfd from the moment
it is seen (``Workers``); every one of them still running in ``finally`` is
killed through its pidfd, never by a bare PID: a worker's PID is free for any new
process once the parent has reaped it. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hubbub.auth.tokens import make_token
from tests.cluster_fixtures import Node
from tests.conftest import DEFAULT_CONFIG, SECRET, merge
from tests.nats_fixtures import NatsProcess, nats_server  # noqa: F401 (fixture)
from tests.redis_fixtures import RedisProcess, free_port, redis_server  # noqa: F401 (fixture)

CHANNEL = "workers"  # without namespace: no history, no join/leave pushes
TIMEOUT = aiohttp.ClientWSTimeout(ws_close=5)


class WorkersNode(Node):
    """A ``Node`` (Redis engine, fixed port) launched with ``--workers 2``."""

    serve_args = ("--workers", "2")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workers: Workers | None = None  # once launched


def children(pid: int) -> set[int]:
    """The child PIDs of ``pid``, from /proc/<pid>/task/*/children."""
    found: set[int] = set()
    task_dir = Path(f"/proc/{pid}/task")
    with contextlib.suppress(OSError):
        for task in task_dir.iterdir():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (task / "children").read_text().split())
    return found


class Workers:
    """The workers of one ``hubbub serve --workers`` parent, each held by a pidfd.

    A PID names a process only until it has exited and been reaped (the parent
    reaps its workers): then the kernel may give it to any new process, such as
    a nats-server another test starts a moment later. A SIGKILL sent to a
    worker's PID after that killed whatever had it (all of that server's
    clients dropped at once, shortly after it started). A pidfd names one
    process for good: whether it still runs, and a signal through it, can never
    concern another. A child is taken only if /proc shows it running the
    parent's command line (a forked worker keeps it; the config path in it is
    the test's own).
    """

    def __init__(self, parent: subprocess.Popen[bytes]) -> None:
        self.parent = parent.pid
        args = parent.args
        assert isinstance(args, list)
        self._cmdline = b"".join(os.fsencode(str(arg)) + b"\0" for arg in args)
        self._fds: dict[int, int] = {}  # pid -> its pidfd

    @property
    def pids(self) -> set[int]:
        return set(self._fds)

    def scan(self) -> None:
        """Take the parent's children not seen before (the parent must not be reaped yet)."""
        for pid in children(self.parent) - self._fds.keys():
            try:
                fd = os.pidfd_open(pid)
            except OSError:  # exited meanwhile
                continue
            try:  # read after pidfd_open: a match is the process the pidfd holds
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                cmdline = b""
            if cmdline == self._cmdline:
                self._fds[pid] = fd
            else:  # exited (a zombie has none) or not ours
                os.close(fd)

    def running(self) -> set[int]:
        """The workers that have not exited."""
        poller = select.poll()
        for fd in self._fds.values():
            poller.register(fd, select.POLLIN)
        exited = {fd for fd, _ in poller.poll(0)}  # a pidfd is readable once it exited
        return {pid for pid, fd in self._fds.items() if fd not in exited}

    def kill(self) -> None:
        """SIGKILL every worker still running, through its pidfd."""
        for fd in self._fds.values():
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


async def wait_workers(node: WorkersNode, count: int, within: float = 15.0) -> Workers:
    assert node.process is not None
    workers = node.workers = Workers(node.process)
    deadline = time.monotonic() + within
    while True:
        workers.scan()
        if len(workers.running()) >= count:
            return workers
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"parent {workers.parent} has workers {workers.running()}, wanted {count}"
            )
        await asyncio.sleep(0.05)


async def connect(http: aiohttp.ClientSession, url: str) -> tuple[Any, str]:
    """A connected WebSocket client and the ``node`` of its connect result."""
    # autoclose off: aiohttp's automatic close reply, failing on a socket the exited
    # worker already closed, would overwrite the received code with 1006.
    async with asyncio.timeout(10):  # a handshake never waits unbounded
        ws = await http.ws_connect(url, timeout=TIMEOUT, autoclose=False)
    await ws.send_str(json.dumps({"id": 1, "connect": {}}))
    reply = await reply_to(ws, 1)
    return ws, reply["connect"]["node"]


async def reply_to(ws: Any, command_id: int) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            for line in msg.data.split("\n"):
                if line and (data := json.loads(line)).get("id") == command_id:
                    assert "error" not in data, data
                    result: dict[str, Any] = data
                    return result


async def next_pub(ws: Any) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            for line in msg.data.split("\n"):
                if line and "pub" in (push := json.loads(line).get("push", {})):
                    result: dict[str, Any] = push
                    return result


@contextlib.asynccontextmanager
async def started_workers(redis: RedisProcess, nats_url: str = "") -> AsyncIterator[WorkersNode]:
    with tempfile.TemporaryDirectory(prefix="hubbub-workers-") as directory:
        node = WorkersNode(
            Path(directory),
            "workers",
            [redis.address],
            f"w{uuid.uuid4().hex[:8]}:",
            nats_url=nats_url,
        )
        try:
            await node.start()
            await wait_workers(node, 2)
            if nats_url:
                await wait_nodes_see_each_other(node, 2)
            yield node
        finally:
            node.stop()  # SIGTERM, then SIGKILL: the parent we started
            if node.workers is not None:  # its workers, if still there
                node.workers.kill()
                node.workers.close()


async def wait_nodes_see_each_other(node: WorkersNode, count: int, within: float = 15.0) -> None:
    """Until the API's ``info`` lists ``count`` nodes. Through a NATS broker, that is when
    every worker is connected to NATS (a worker serves before: its broker connects in
    the background, and ``/ready``, answered by either worker, cannot tell for both):
    a node is listed by another once its announcement crossed NATS."""
    deadline = time.monotonic() + within
    while len((await node.api("info", {}))["nodes"]) < count:
        assert time.monotonic() < deadline, await node.api("info", {})
        await asyncio.sleep(0.1)


@pytest.fixture
async def workers_node(redis_server: RedisProcess) -> AsyncIterator[WorkersNode]:  # noqa: F811
    async with started_workers(redis_server) as node:
        yield node


@pytest.fixture
async def nats_workers_node(
    redis_server: RedisProcess,  # noqa: F811
    nats_server: NatsProcess,  # noqa: F811
) -> AsyncIterator[WorkersNode]:
    """Two workers with the NATS broker in front of the Redis engine."""
    async with started_workers(redis_server, nats_server.url) as node:
        yield node


async def test_two_workers_share_port_channels_and_stop_on_sigterm(
    workers_node: WorkersNode,
) -> None:
    node = workers_node
    assert node.process is not None and node.workers is not None
    workers = node.workers
    assert len(workers.pids) == 2
    clients: list[tuple[Any, str]] = []
    # No connection cap: aiohttp's default (100) made a connect wait forever when
    # the kernel gave one worker every connection for a while (the other starting).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        try:
            # The kernel spreads connections over both workers: two distinct nodes.
            deadline = time.monotonic() + 15
            while len({n for _, n in clients}) < 2 or len(clients) < 20:
                assert time.monotonic() < deadline, f"nodes seen: {[n for _, n in clients]}"
                clients.append(await connect(http, node.ws_url))
            nodes = {n for _, n in clients}
            assert len(nodes) == 2, nodes
            # Both serve; what is served was printed once, not once per worker.
            served = [line for line in node.log().splitlines() if "serving on" in line]
            assert len(served) == 1 and served[0].endswith("/ (2 workers)"), node.log()
            assert node.log().count("  websocket   ws://") == 1
            for ws, _ in clients:
                await ws.send_str(json.dumps({"id": 2, "subscribe": {"channel": CHANNEL}}))
                await reply_to(ws, 2)
            # One publication through the HTTP API (served by either worker) reaches all.
            await node.api("publish", {"channel": CHANNEL, "data": {"hello": "workers"}})
            for ws, _ in clients:
                push = await next_pub(ws)
                assert push["channel"] == CHANNEL
                assert push["pub"]["data"] == {"hello": "workers"}
            # SIGTERM to the parent: it forwards it; clients get 3001; workers exit.
            node.process.send_signal(signal.SIGTERM)
            codes = []
            for ws, _ in clients:
                async with asyncio.timeout(10):
                    while True:
                        msg = await ws.receive()
                        if msg.type is aiohttp.WSMsgType.CLOSE:
                            codes.append(msg.data)
                            break
                        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            codes.append(None)  # no close frame at all
                            break
            nodes_codes = list(zip(codes, [n for _, n in clients], strict=True))
            assert set(codes) == {3001}, (nodes_codes, node.log()[-3000:])
            assert node.process.wait(timeout=10) == 0  # the parent has exited
            deadline = time.monotonic() + 10
            while workers.running():
                assert time.monotonic() < deadline, workers.running()
                await asyncio.sleep(0.05)
        finally:
            for ws, _ in clients:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await ws.close()


def test_workers_with_memory_engine_exit_1_naming_the_options() -> None:
    with tempfile.TemporaryDirectory(prefix="hubbub-workers-") as directory:
        config_path = Path(directory) / "memory.json"
        config = merge(DEFAULT_CONFIG, {"http_server": {"port": free_port()}})
        config_path.write_text(json.dumps(config))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "hubbub.cli.main",
                "serve",
                "--config",
                str(config_path),
                "--workers",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "--workers" in done.stderr and "engine.type" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr + done.stdout


async def connect_as(http: aiohttp.ClientSession, url: str, user: str) -> tuple[Any, str, str]:
    """A client connected with a token for ``user``: (ws, node, client id)."""
    async with asyncio.timeout(10):  # a handshake never waits unbounded
        ws = await http.ws_connect(url, timeout=TIMEOUT, autoclose=False)
    token = make_token(SECRET, user, ttl=3600)
    await ws.send_str(json.dumps({"id": 1, "connect": {"token": token}}))
    reply = await reply_to(ws, 1)
    return ws, reply["connect"]["node"], reply["connect"]["client"]


async def next_push(ws: Any, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            for line in msg.data.split("\n"):
                if line and kind in (push := json.loads(line).get("push", {})):
                    result: dict[str, Any] = push
                    return result


async def close_code(ws: Any) -> int | None:
    async with asyncio.timeout(10):
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.CLOSE:
                code: int = msg.data
                return code
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                return None


async def test_api_actions_info_and_channels_reach_both_workers(
    workers_node: WorkersNode,
) -> None:
    """Whichever worker answers the API call, the action reaches the other one too."""
    # pytest-timeout cannot interrupt an idle uvloop: the bound is the test's own.
    async with asyncio.timeout(90):
        await api_actions_reach_both_workers(workers_node)


async def api_actions_reach_both_workers(node: WorkersNode) -> None:
    clients: dict[str, tuple[Any, str]] = {}  # node -> (ws, client id), one per worker
    # No connection cap: aiohttp's default (100) made a connect wait forever when
    # the kernel gave one worker every connection for a while (the other starting).
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        spare: list[Any] = []
        try:
            deadline = time.monotonic() + 15
            while len(clients) < 2:
                assert time.monotonic() < deadline, f"nodes seen: {list(clients)}"
                ws, worker, client = await connect_as(http, node.ws_url, "alice")
                if worker in clients:
                    spare.append(ws)
                else:
                    clients[worker] = (ws, client)
            for ws in spare:
                await ws.close()
            for index, (ws, _) in enumerate(clients.values()):
                channel = f"chat:w{index}"
                await ws.send_str(json.dumps({"id": 2, "subscribe": {"channel": channel}}))
                await reply_to(ws, 2)

            # info: both workers, each with one client (announced every 3 s).
            async def info_ok() -> bool:
                nodes = (await node.api("info", {}))["nodes"]
                return {n["uid"] for n in nodes} == set(clients) and all(
                    n["num_clients"] == 1 for n in nodes
                )

            deadline = time.monotonic() + 15
            while not await info_ok():
                assert time.monotonic() < deadline, await node.api("info", {})
                await asyncio.sleep(0.2)
            # channels: both workers' channels, whichever answers.
            for _ in range(4):
                channels = (await node.api("channels", {}))["channels"]
                assert set(channels) == {"chat:w0", "chat:w1"}, channels
            # unsubscribe, subscribe, refresh: every client of alice, on both workers.
            for index, (ws, _) in enumerate(clients.values()):
                await node.api("unsubscribe", {"user": "alice", "channel": f"chat:w{index}"})
                push = await next_push(ws, "unsubscribe")
                assert push["channel"] == f"chat:w{index}"
            await node.api("subscribe", {"user": "alice", "channel": "chat:all"})
            for ws, _ in clients.values():
                assert (await next_push(ws, "subscribe"))["channel"] == "chat:all"
            await node.api("refresh", {"user": "alice", "expire_at": int(time.time()) + 600})
            for ws, _ in clients.values():
                assert (await next_push(ws, "refresh"))["refresh"]["expires"] is True
            # disconnect: both workers' clients close with the code given.
            await node.api("disconnect", {"user": "alice", "disconnect": {"code": 4100}})
            for ws, _ in clients.values():
                assert await close_code(ws) == 4100
        finally:
            for ws, _ in clients.values():
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await ws.close()


@pytest.mark.parametrize("workers", [2, 4])
def test_sigterm_during_start_up_leaves_no_worker_behind(
    redis_server: RedisProcess,  # noqa: F811
    workers: int,
) -> None:
    """SIGTERM as soon as the first worker exists (the others still being forked)."""
    with tempfile.TemporaryDirectory(prefix="hubbub-workers-") as directory:
        node = WorkersNode(
            Path(directory), "early", [redis_server.address], f"e{uuid.uuid4().hex[:8]}:"
        )
        node.serve_args = ("--workers", str(workers))
        seen: Workers | None = None
        try:
            node.launch()
            assert node.process is not None
            seen = Workers(node.process)
            deadline = time.monotonic() + 30
            while not seen.pids:  # a tight loop: the window between forks is short
                assert time.monotonic() < deadline, node.log()
                assert node.process.poll() is None, node.log()
                seen.scan()
            node.process.send_signal(signal.SIGTERM)
            # poll() reaps the parent once it exited: no scan after that (its PID is free).
            while node.process.poll() is None:
                seen.scan()
                assert time.monotonic() < deadline, "the parent did not exit"
                time.sleep(0.001)
            deadline = time.monotonic() + 10
            while seen.running():
                assert time.monotonic() < deadline, (
                    f"orphaned workers {seen.running()}",
                    node.log(),
                )
                time.sleep(0.05)
            assert "Traceback" not in node.log(), node.log()
        finally:
            node.stop()
            if seen is not None:
                seen.kill()
                seen.close()


async def test_with_a_nats_broker_api_actions_reach_both_workers(
    nats_workers_node: WorkersNode,
) -> None:
    """The control messages travel on NATS: every API action still reaches both."""
    assert "nats" in nats_workers_node.config_path.read_text()
    async with asyncio.timeout(90):
        await api_actions_reach_both_workers(nats_workers_node)


async def test_with_a_nats_broker_a_burst_crosses_workers_with_none_lost(
    nats_workers_node: WorkersNode,
) -> None:
    """A burst published through the API reaches subscribers on both workers, all of
    it, in order: channels without history through NATS, with history through Redis
    (gap-free offsets)."""
    async with asyncio.timeout(90):
        await burst_reaches_both_workers(nats_workers_node, count=600)


async def burst_reaches_both_workers(node: WorkersNode, count: int) -> None:
    channels = (CHANNEL, "chat:burst")  # no history (NATS), history (Redis)
    clients: list[tuple[Any, str]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        try:
            deadline = time.monotonic() + 15
            while len({n for _, n in clients}) < 2 or len(clients) < 6:
                assert time.monotonic() < deadline, f"nodes seen: {[n for _, n in clients]}"
                clients.append(await connect(http, node.ws_url))
            for ws, _ in clients:
                for index, channel in enumerate(channels):
                    command_id = 10 + index
                    subscribe = {"id": command_id, "subscribe": {"channel": channel}}
                    await ws.send_str(json.dumps(subscribe))
                    await reply_to(ws, command_id)
            # The burst: batches of publish commands (in order within a batch), as
            # fast as the API takes them, over fresh connections (either worker).
            started = time.monotonic()
            for first in range(0, count, 100):
                for channel in channels:
                    commands = [
                        {"publish": {"channel": channel, "data": {"n": n}}}
                        for n in range(first, min(first + 100, count))
                    ]
                    await node.api("batch", {"commands": commands})
            seconds = time.monotonic() - started
            for ws, worker in clients:
                got: dict[str, list[int]] = {channel: [] for channel in channels}
                offsets: list[int] = []
                async with asyncio.timeout(30):
                    while any(len(numbers) < count for numbers in got.values()):
                        msg = await ws.receive()
                        assert msg.type == aiohttp.WSMsgType.TEXT, msg
                        for line in msg.data.split("\n"):
                            push = json.loads(line).get("push", {}) if line else {}
                            if "pub" in push:
                                got[push["channel"]].append(push["pub"]["data"]["n"])
                                if push["channel"] == "chat:burst":
                                    offsets.append(push["pub"]["offset"])
                for channel, numbers in got.items():
                    assert numbers == list(range(count)), (worker, channel, len(numbers))
                assert offsets == list(range(offsets[0], offsets[0] + count)), worker
            print(f"burst: {2 * count} publications in {seconds:.2f} s, to {len(clients)} clients")
        finally:
            for ws, _ in clients:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await ws.close()
