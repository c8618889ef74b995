"""The admin UI's view is the cluster's: two ``hubbub serve`` processes on one Redis.

The operator uses node A's admin endpoints only; clients are on node B (and A).
Proved: a user trace on A shows the user's connect, commands and disconnect on
B (each event naming its node); a channel trace on A shows the publications
(through the engine) and the commands of clients on B; the admin
``connections`` method lists the user's connections on both nodes, each with
its node, transport and protocol; ``centrifugo_node_num_nodes`` counts both.
In-process checks of the trace leases are in test_control.py.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hubbub.auth.tokens import make_token
from tests.cluster_fixtures import Node
from tests.conftest import SECRET, merge
from tests.redis_fixtures import RedisProcess, redis_server  # noqa: F401 (fixture)
from tests.test_admin import ADMIN, admin_api, login
from tests.test_metrics import parse, scrape, value
from tests.wsclient import connected_client

pytestmark = pytest.mark.timeout(120)

EXTRA = {**ADMIN, "prometheus": {"enabled": True}}


class AdminNode(Node):
    """A ``Node`` with the admin UI and /metrics on."""

    def __init__(self, directory: Path, name: str, redis: RedisProcess, prefix: str) -> None:
        super().__init__(directory, name, [redis.address], prefix)
        config = json.loads(self.config_path.read_text())
        self.config_path.write_text(json.dumps(merge(config, EXTRA)))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def nodes(redis_server: RedisProcess) -> AsyncIterator[tuple[AdminNode, AdminNode]]:  # noqa: F811
    prefix = f"adm{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="hubbub-admin-cluster-") as directory:
        a = AdminNode(Path(directory), "a", redis_server, prefix)
        b = AdminNode(Path(directory), "b", redis_server, prefix)
        try:
            await asyncio.gather(a.start(), b.start())
            deadline = time.monotonic() + 15
            while True:  # each knows the other (announcements every 3 s)
                counts = [len((await n.api("info", {}))["nodes"]) for n in (a, b)]
                if counts == [2, 2]:
                    break
                assert time.monotonic() < deadline, counts
                await asyncio.sleep(0.1)
            yield a, b
        finally:
            a.stop()
            b.stop()


def token(user: str) -> str:
    return make_token(SECRET, user, ttl=3600)


class Trace:
    """An admin trace stream (Server-Sent Events), read event by event."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.events: list[dict[str, Any]] = []  # every event received, in order
        self._taken: set[int] = set()

    async def next(self, check: Callable[[dict[str, Any]], bool], within: float = 10.0) -> Any:
        """The oldest event not returned yet for which ``check`` is true, waiting for it."""
        async with asyncio.timeout(within):
            index = 0
            while True:
                while index < len(self.events):
                    if index not in self._taken and check(self.events[index]):
                        self._taken.add(index)
                        return self.events[index]
                    index += 1
                line = (await self.response.content.readline()).decode()
                if line.startswith("data: "):
                    self.events.append(json.loads(line[len("data: ") :]))


async def test_user_trace_and_connections_span_the_cluster(
    nodes: tuple[AdminNode, AdminNode],
) -> None:
    a, b = nodes
    async with aiohttp.ClientSession() as http:
        admin = await login(http, a.base)
        uids = {n["uid"] for n in (await a.api("info", {}))["nodes"]}
        async with http.get(
            f"{a.base}/admin/trace",
            params={"user": "carol"},
            headers={"Authorization": f"token {admin}"},
        ) as response:
            trace = Trace(response)
            a_uid = (await trace.next(lambda e: e["kind"] == "tracing"))["node"]
            [b_uid] = uids - {a_uid}
            # Node B follows the trace from its next control message on: until then,
            # carol's connects there are not seen. Connect until one is.
            deadline = time.monotonic() + 10
            while True:
                async with connected_client(b.ws_url, token("carol")):
                    pass
                try:
                    seen = await trace.next(lambda e: e["kind"] == "connect", within=1.0)
                    assert seen["node"] == b_uid
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline, trace.events
            async with (
                connected_client(b.ws_url, token("carol"), channels=("chat:x",)) as on_b,
                connected_client(a.ws_url, token("carol")) as on_a,
            ):
                connect = await trace.next(
                    lambda e: e["kind"] == "connect" and e["client"] == on_b.client_id
                )
                assert connect["node"] == b_uid and connect["transport"] == "websocket"
                await on_b.result("publish", {"channel": "chat:x", "data": {"n": 1}})
                publish = await trace.next(
                    lambda e: e["kind"] == "command" and e["method"] == "publish"
                )
                assert publish["node"] == b_uid and publish["client"] == on_b.client_id
                assert publish["command"]["publish"]["data"] == {"n": 1}
                local = await trace.next(
                    lambda e: e["kind"] == "connect" and e["client"] == on_a.client_id
                )
                assert local["node"] == a_uid

                # The connections of carol: on both nodes, through A's admin API.
                _, body = await admin_api(http, a.base, admin, "connections", {"user": "carol"})
                found = body["result"]["connections"]
                assert set(found) == {on_a.client_id, on_b.client_id}, found
                assert found[on_b.client_id]["node"] == b_uid
                assert found[on_b.client_id]["channels"] == ["chat:x"]
                assert found[on_a.client_id]["node"] == a_uid
                assert {c["transport"] for c in found.values()} == {"websocket"}
                assert {c["protocol"] for c in found.values()} == {"json"}

                # A disconnect through A's admin reaches B, and B's trace says so.
                _, body = await admin_api(http, a.base, admin, "disconnect", {"user": "carol"})
                assert body == {"result": {}}
                assert await on_b.wait_closed() == 3503
                gone = await trace.next(
                    lambda e: e["kind"] == "disconnect" and e["client"] == on_b.client_id
                )
                assert (gone["node"], gone["code"], gone["by"]) == (b_uid, 3503, "server")
    # Both nodes count both nodes.
    for node in (a, b):
        samples = parse(await scrape(f"{node.base}/metrics"))
        assert value(samples, "centrifugo_node_num_nodes") == 2


async def test_channel_trace_sees_commands_on_other_nodes(
    nodes: tuple[AdminNode, AdminNode],
) -> None:
    a, b = nodes
    async with aiohttp.ClientSession() as http:
        admin = await login(http, a.base)
        async with (
            connected_client(b.ws_url, token("dave"), channels=("chat:y",)) as dave,
            http.get(
                f"{a.base}/admin/trace",
                params={"channel": "chat:y"},
                headers={"Authorization": f"token {admin}"},
            ) as response,
        ):
            trace = Trace(response)
            a_uid = (await trace.next(lambda e: e["kind"] == "tracing"))["node"]
            deadline = time.monotonic() + 10
            n = 0
            while True:  # until B follows the trace: each publish is also seen through
                n += 1  # the engine, the command only once B sends it
                await dave.result("publish", {"channel": "chat:y", "data": {"n": n}})
                publication = await trace.next(lambda e: e["kind"] == "publication")
                assert publication["message"]["push"]["pub"]["data"] == {"n": n}
                try:
                    command = await trace.next(
                        lambda e: e["kind"] == "command" and e["method"] == "publish", within=1.0
                    )
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline, trace.events
            assert command["node"] != a_uid and command["client"] == dave.client_id
            assert command["command"]["publish"]["channel"] == "chat:y"
