"""``/emulation`` across nodes: the stream on node A, the commands through node B.

Two ``hubbub serve`` processes on one redis-server (tests/cluster_fixtures.py),
HTTP streaming and SSE enabled. A load balancer may send an emulated client's
``/emulation`` requests to any node; the node that gets one routes it to the
node holding the session (named in the request) through the control plane.

* A client written here opens an HTTP stream on A; its subscribe, sent to B's
  ``/emulation``, is answered down A's stream, and publications through either
  node's API arrive. A request naming a node that is not alive gets 404 (the SDK
  reconnects); while A cannot answer (SIGSTOP), B answers 503 after the survey
  timeout, and A serves the session again once it runs (SIGCONT).
* centrifuge-js under Node with only the ``http_stream`` transport (JSON and
  Protobuf) and with only ``sse``: stream endpoint on A, ``emulationEndpoint``
  on B. Each connects, subscribes, receives publications from both nodes' APIs
  and its own, publishes, reads presence and history, is disconnected by B's API
  and recovers exactly what was published meanwhile on A.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hubbub.auth.tokens import make_token
from tests.cluster_fixtures import Node
from tests.conftest import SECRET
from tests.redis_fixtures import RedisProcess, own_redis  # noqa: F401 (fixture)
from tests.sdk_helpers import DeliveryReport, EventProcess
from tests.test_sdk_js import CLIENT_SCRIPT, JS_DIR, js_dependencies, ok

__all__ = ["js_dependencies"]  # the module fixture that installs tests/js

pytestmark = pytest.mark.timeout(120)

STREAMS = {"http_stream": {"enabled": True}, "sse": {"enabled": True}}
RECONNECT_DELAY_MS = 1000


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hubbub-emulation-") as directory:
        path = Path(directory)
        path.chmod(0o755)
        yield path


@pytest.fixture
async def nodes(own_redis: RedisProcess, workdir: Path) -> AsyncIterator[tuple[Node, Node]]:  # noqa: F811
    prefix = f"e{uuid.uuid4().hex[:6]}"
    a = Node(workdir, "a", [own_redis.address], prefix, config=STREAMS)
    b = Node(workdir, "b", [own_redis.address], prefix, config=STREAMS)
    try:
        await asyncio.gather(a.start(), b.start())
        await wait_until_nodes_know_each_other(a, b)
        yield a, b
    finally:
        for node in (a, b):
            if node.process is not None:
                node.process.send_signal(signal.SIGCONT)  # if a test stopped it
        a.stop()
        b.stop()
        for node in (a, b):
            print(f"--- node {node.name} log ---\n{node.log()[-3000:]}")


async def wait_until_nodes_know_each_other(*nodes: Node, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        seen = [len((await node.api("info", {}))["nodes"]) for node in nodes]
        if all(count == len(nodes) for count in seen):
            return
        assert time.monotonic() < deadline, f"nodes see {seen} nodes"
        await asyncio.sleep(0.1)


def token(user: str) -> str:
    return make_token(SECRET, user, ttl=3600)


class RawStream:
    """An HTTP-streaming client written here: one stream, JSON lines in order."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, within: float = 10.0) -> dict[str, Any]:
        while True:
            line = await asyncio.wait_for(self.response.content.readline(), within)
            assert line, "the stream ended"
            if line.strip():
                message: dict[str, Any] = json.loads(line)
                return message

    async def reply(self, command_id: int) -> dict[str, Any]:
        while (message := await self.next()).get("id") != command_id:
            pass
        return message

    async def publication(self) -> dict[str, Any]:
        while "pub" not in (message := await self.next()).get("push", {}):
            pass
        pub: dict[str, Any] = message["push"]["pub"]
        return pub


async def test_commands_through_b_reach_the_session_on_a(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    channel = "chat:raw-across"
    async with aiohttp.ClientSession() as http:
        connect = json.dumps({"id": 1, "connect": {"token": token("carol")}})
        async with http.post(f"{a.http_url}/connection/http_stream", data=connect) as response:
            assert response.status == 200
            stream = RawStream(response)
            result = (await stream.reply(1))["connect"]
            session, node_a = result["session"], result["node"]

            async def emulate(node: str, commands: list[dict[str, Any]]) -> int:
                data = "\n".join(json.dumps(c) for c in commands)
                body = {"session": session, "node": node, "data": data}
                async with http.post(f"{b.http_url}/emulation", json=body) as answer:
                    return answer.status

            subscribe = {"id": 2, "subscribe": {"channel": channel}}
            presence = {"id": 3, "presence": {"channel": channel}}
            assert await emulate(node_a, [subscribe, presence]) == 204
            assert "subscribe" in await stream.reply(2)
            clients = (await stream.reply(3))["presence"]["presence"]
            assert [c["user"] for c in clients.values()] == ["carol"]
            for n, node in enumerate((a, b, a), 1):
                await node.api("publish", {"channel": channel, "data": {"n": n}})
                assert (await stream.publication())["data"] == {"n": n}
            # A node that is not alive: 404, the SDK reconnects.
            assert (
                await emulate("no-such-node", [{"id": 4, "presence": {"channel": channel}}]) == 404
            )
            # A cannot answer: B gives up after the survey timeout (3 s) with 503.
            assert a.process is not None
            a.process.send_signal(signal.SIGSTOP)
            try:
                started = time.monotonic()
                status = await emulate(node_a, [{"id": 5, "presence": {"channel": channel}}])
                waited = time.monotonic() - started
            finally:
                a.process.send_signal(signal.SIGCONT)
            assert status == 503 and 2.5 < waited < 10, (status, waited)
            # A runs again and serves the session: the next command is answered.
            assert await emulate(node_a, [{"id": 6, "presence_stats": {"channel": channel}}]) == 204
            stats = await stream.reply(6)
            assert stats["presence_stats"] == {"num_clients": 1, "num_users": 1}


# --- centrifuge-js with only an emulation transport ------------------------------------------


@contextlib.asynccontextmanager
async def js_client(a: Node, b: Node, mode: str, channel: str) -> AsyncIterator[EventProcess]:
    transport, _, codec = mode.partition("+")
    scenario = {
        "transports": [
            {"transport": transport, "endpoint": f"{a.http_url}/connection/{transport}"}
        ],
        "emulationEndpoint": f"{b.http_url}/emulation",
        "protobuf": codec == "protobuf",
        "name": f"js-{mode}",
        "channel": channel,
        "token": token(user_of(mode)),
        "minReconnectDelay": RECONNECT_DELAY_MS,
        "maxReconnectDelay": RECONNECT_DELAY_MS,
    }
    process = await EventProcess.start(
        "node", str(CLIENT_SCRIPT), json.dumps(scenario), cwd=JS_DIR, label=f"js-{mode}"
    )
    try:
        yield process
    finally:
        await process.close({"cmd": "exit"})


def user_of(mode: str) -> str:
    """One user per mode: the three run at once, and the API disconnects by user."""
    return "alice-" + mode.replace("+", "-")


async def js_scenario(a: Node, b: Node, mode: str) -> None:
    channel = f"chat:across-{mode.replace('+', '-')}"
    async with js_client(a, b, mode, channel) as js:
        try:
            sent = await js_steps(a, b, js, mode, channel)
        except AssertionError as exc:
            raise AssertionError(f"{mode}: {exc}\n{js.describe()}") from None
    received = [e["data"]["seq"] for e in js.events if e["event"] == "publication"]
    report = DeliveryReport.compare(sent, received)
    print(f"{mode} across nodes: {report}")
    assert (report.lost, report.duplicated, report.out_of_order, report.unexpected) == (0, 0, 0, 0)


async def js_steps(a: Node, b: Node, js: EventProcess, mode: str, channel: str) -> list[int]:
    connected = await js.next("connected", within=15)
    assert connected["transport"] == mode.partition("+")[0]
    subscribed = await js.next("subscribed")  # the subscribe went through B
    assert subscribed["recoverable"] and not subscribed["wasRecovering"]
    sent: list[int] = []
    for n, node in ((1, b), (2, a)):  # publications through each node's API
        result = await node.api("publish", {"channel": channel, "data": {"seq": n}})
        sent.append(n)
        got = await js.next("publication")
        assert (got["data"], got["offset"]) == ({"seq": n}, result["offset"])
    ok(await js.request("publish", data={"seq": 3}))  # through B, published by A
    sent.append(3)
    mine = await js.next("publication")
    assert mine["data"] == {"seq": 3} and mine["info"]["user"] == user_of(mode)
    presence = ok(await js.request("presence"))
    assert [c["user"] for c in presence["clients"].values()] == [user_of(mode)]
    history = ok(await js.request("history", limit=-1))
    assert [p["data"]["seq"] for p in history["publications"]] == [1, 2, 3]
    # Disconnected by B's API (a reconnect code); publications go on through A.
    await b.api(
        "disconnect", {"user": user_of(mode), "disconnect": {"code": 4000, "reason": "moved"}}
    )
    await js.next("connecting", where=lambda e: e["code"] == 4000)
    for n in (4, 5):
        await a.api("publish", {"channel": channel, "data": {"seq": n}})
        sent.append(n)
    await js.next("connected", within=RECONNECT_DELAY_MS / 1000 + 15)
    again = await js.next("subscribed")
    assert again["wasRecovering"] is True and again["recovered"] is True
    recovered = [await js.next("publication") for _ in range(2)]
    assert [p["data"]["seq"] for p in recovered] == [4, 5]
    ok(await js.request("presence_stats"))  # one more round trip through B
    return sent


async def test_js_sdk_streams_on_a_commands_through_b(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    await asyncio.gather(
        *(js_scenario(a, b, mode) for mode in ("http_stream", "http_stream+protobuf", "sse"))
    )
