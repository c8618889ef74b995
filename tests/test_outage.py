"""Redis unreachable: a node says so in one line, /ready answers 503, nothing else breaks.

A real ``hubbub serve`` process on a Redis that is not running at start, then
started, then stopped and started again while a client keeps sending. The
log is read as written (stdout and stderr of the process): one line when Redis
is lost, one when it is back, a bounded number in between, never a traceback.
The demo page's own script runs under Node (tests/js/demo_page.mjs) against
the node and must not say "connected" while its subscribe fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.cluster_fixtures import Node
from tests.redis_fixtures import RedisProcess
from tests.wsclient import WSClient, connected_client

ROOT = Path(__file__).resolve().parent.parent
DEMO_PAGE = ROOT / "src" / "hubbub" / "server" / "static" / "demo.html"
DEMO_RUNNER = ROOT / "tests" / "js" / "demo_page.mjs"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def stopped_redis() -> Iterator[RedisProcess]:
    """A redis-server with a port but not running yet; stopped by PID at the end."""
    with tempfile.TemporaryDirectory(prefix="hubbub-outage-") as directory:
        server = RedisProcess(Path(directory))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
async def node(stopped_redis: RedisProcess) -> AsyncIterator[Node]:
    with tempfile.TemporaryDirectory(prefix="hubbub-outage-node-") as directory:
        node = Node(Path(directory), "n", [stopped_redis.address], f"o{uuid.uuid4().hex[:6]}")
        try:
            await node.start(ready=False)  # its Redis is down: /ready says 503 (the test)
            yield node
        finally:
            node.stop()


async def status(node: Node, path: str) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{node.port}{path}") as response,
    ):
        return response.status


async def wait_for(
    condition_text: str, check: Callable[[], bool | Awaitable[bool]], within: float = 15.0
) -> None:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if not isinstance(value, bool):
            value = await value
        if value:
            return
        assert time.monotonic() < deadline, f"not within {within}s: {condition_text}"
        await asyncio.sleep(0.1)


class DemoPage:
    """tests/js/demo_page.mjs: the demo page's script under Node, its status lines."""

    def __init__(self, url: str) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is not installed: scripts/test.sh installs it")
        self.process = subprocess.Popen(
            [node, str(DEMO_RUNNER), str(DEMO_PAGE), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=DEMO_RUNNER.parent,
        )
        self.lines: list[dict[str, str]] = []
        self._reader: asyncio.Task[None] | None = None

    async def read(self) -> None:
        assert self.process.stdout is not None
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, self.process.stdout.readline)
            if not line:
                return
            self.lines.append(json.loads(line))

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self.read())

    def statuses(self) -> list[tuple[str, str]]:
        return [(x["status"], x["class"]) for x in self.lines if "status" in x]

    async def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=5)
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def errors(self) -> str:
        return ""


def redis_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "hubbub.engines.redis" in line]


async def test_outage_is_logged_once_each_way_ready_says_503_and_no_traceback(
    node: Node, stopped_redis: RedisProcess
) -> None:
    # Redis down at start: one clear line at once; live (/health) but not ready.
    await wait_for("the 'unreachable' line", lambda: "unreachable" in node.log(), 10)
    assert await status(node, "/health") == 200
    assert await status(node, "/ready") == 503

    page = DemoPage(f"http://127.0.0.1:{node.port}/")
    page.start()
    try:
        # The page connects but its subscribe fails: it must not say "connected".
        await wait_for(
            "the page shows the failed subscribe",
            lambda: any(cls == "failed" for _, cls in page.statuses()),
            15,
        )
        print(page.lines)
        assert all(cls != "connected" for _, cls in page.statuses()), page.statuses()
        assert all(text != "connected" for text, _ in page.statuses()), page.statuses()

        stopped_redis.start()

        async def ready() -> bool:
            return await status(node, "/ready") == 200

        await wait_for("/ready 200", ready, 15)
        assert "reachable again" in node.log()
        # The page's retry now succeeds, and only now it says connected.
        await wait_for(
            "the page connected",
            lambda: ("connected", "connected") in page.statuses(),
            15,
        )
    finally:
        await page.stop()

    # An outage while a client keeps publishing: error 100 for each, no log line each.
    async with connected_client(node.ws_url, channels=("chat:outage",)) as client:
        assert await client.result("publish", {"channel": "chat:outage", "data": {"n": 0}}) == {}
        lines_before = len(redis_lines(node.log()))
        stopped_redis.stop()

        async def not_ready() -> bool:
            return await status(node, "/ready") == 503

        await wait_for("/ready 503", not_ready, 15)
        codes = []
        for n in range(1, 121):
            reply = await client.call("publish", {"channel": "chat:outage", "data": {"n": n}})
            codes.append(reply.get("error", {}).get("code"))
        assert set(codes) == {100}, codes
        assert await status(node, "/health") == 200
        stopped_redis.start()
        await wait_for("/ready 200 again", ready, 15)
        await wait_for(
            "publishing works again",
            lambda: _publish_ok(client),
            15,
        )
    log = node.log()
    outage_lines = redis_lines(log)[lines_before:]
    # Lost, back, and at most a couple of summaries: not one line per failed command.
    print("\n".join(redis_lines(log)))
    assert 2 <= len(outage_lines) <= 6, outage_lines
    assert any("unreachable" in line for line in outage_lines), outage_lines
    assert any("reachable again" in line for line in outage_lines), outage_lines
    assert "Traceback" not in log, log[-5000:]


async def _publish_ok(client: WSClient) -> bool:
    reply = await client.call("publish", {"channel": "chat:outage", "data": {"n": -1}})
    return "error" not in reply
