"""``GET /metrics``: parsed by promtool (Debian's prometheus package) and by
prometheus-client's parser, and its counters move by what the test did.

promtool's linter objects to Centrifugo's own names (counters without
``_total``, a ``_count`` suffix, ``_histogram`` in a name): hubbub keeps those
names on purpose so Centrifugo's Grafana dashboard works. Any other remark,
and any parse error, fails the test.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from typing import Any

import aiohttp
import pytest

from hubbub.hub.counters import Histogram
from tests.conftest import API_KEY, RunningServer, ServerFactory
from tests.rawws import RawWS
from tests.redis_fixtures import free_port
from tests.wsclient import connected_client

METRICS = {"prometheus": {"enabled": True}}
#: What promtool may say, and only about Centrifugo's names.
CENTRIFUGO_LINT = re.compile(
    r'^centrifugo_\w+ (counter metrics should have "_total" suffix'
    r'|non-histogram and non-summary metrics should not have "_count" suffix'
    r"|metric name should not include type 'histogram')$"
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await response.text()


SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> Samples:
    """Samples by their exact names (prometheus-client's parser would add ``_total`` to
    Centrifugo's counters); promtool checks the format itself."""
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match is not None, line
        labels = frozenset(LABEL.findall(match.group(2) or ""))
        samples[match.group(1), labels] = float(match.group(3))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def promtool(text: str) -> None:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: scripts/test.sh installs it (prometheus package)")
    result = subprocess.run(
        [binary, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    remarks = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode in (0, 3), remarks  # 3: lint remarks only
    others = [line for line in remarks if not CENTRIFUGO_LINT.match(line)]
    assert not others, others


async def api(server: RunningServer, method: str, params: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.api_url}/{method}", json=params, headers={"X-API-Key": API_KEY}
        ) as response,
    ):
        body: dict[str, Any] = await response.json()
        return body


async def test_counters_move_as_expected(start_server: ServerFactory) -> None:
    server = await start_server(METRICS)
    url = f"{server.http_url}/metrics"
    before_text = await scrape(url)
    promtool(before_text)
    before = parse(before_text)

    async with (
        connected_client(server.ws_url, server.token("alice"), channels=("chat:m",)) as alice,
        connected_client(server.ws_url, server.token("bob"), channels=("chat:m",)) as bob,
    ):
        for n in range(3):
            await alice.result("publish", {"channel": "chat:m", "data": {"n": n}})
        for _ in range(2):
            assert "result" in await api(server, "publish", {"channel": "chat:m", "data": {}})
        assert (await bob.error("publish", {"channel": "nowhere:x", "data": {}}))["code"] == 102
        for _ in range(5):
            await bob.push("chat:m", "pub")
        assert await api(server, "disconnect", {"user": "bob"}) == {"result": {}}
        assert await bob.wait_closed() == 3503
        assert await api(server, "unsubscribe", {"user": "alice", "channel": "chat:m"}) == {
            "result": {}
        }
        assert (await alice.push("chat:m", "unsubscribe"))["code"] == 2000
        await server.hub.wait_idle()  # leaves published

        after_text = await scrape(url)
        promtool(after_text)
        after = parse(after_text)

        def delta(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert value(after, "centrifugo_node_num_clients") == 1  # alice
        assert value(after, "centrifugo_node_num_users") == 1
        assert value(after, "centrifugo_node_num_subscriptions") == 0
        assert value(after, "centrifugo_node_build", version=server.hub.stats()["version"]) == 1
        assert delta("centrifugo_transport_connect_count", transport="websocket") == 2
        sent = "centrifugo_node_messages_sent_count"
        assert delta(sent, type="publication", channel_namespace="chat") == 5
        assert delta(sent, type="join", channel_namespace="chat") == 2  # alice's and bob's
        assert delta(sent, type="leave", channel_namespace="chat") == 2  # bob gone, alice left
        assert value(after, "centrifugo_node_num_nodes") == 1  # the memory engine: this one
        received = "centrifugo_node_messages_received_count"
        assert delta(received, type="publication", channel_namespace="") == 5
        assert delta(received, type="join", channel_namespace="") == 2
        assert delta(received, type="leave", channel_namespace="") == 2
        commands = "centrifugo_transport_messages_received"
        for method, count in (("connect", 2), ("subscribe", 2), ("publish", 4)):
            labels = {"transport": "websocket", "frame_type": method, "channel_namespace": ""}
            assert delta(commands, **labels) == count, method
        errors = "centrifugo_client_num_reply_errors"
        assert delta(errors, method="publish", code="102", channel_namespace="") == 1
        assert delta("centrifugo_client_num_server_disconnects", code="3503") == 1
        assert (
            delta("centrifugo_client_num_server_unsubscribes", code="2000", channel_namespace="")
            == 1
        )
        duration = "centrifugo_client_command_duration_seconds"
        assert delta(f"{duration}_count", method="publish", channel_namespace="") == 4
        assert value(after, duration, method="publish", channel_namespace="", quantile="0.5") > 0
        histogram = "hubbub_client_command_duration_seconds"
        assert delta(f"{histogram}_bucket", method="publish", le="+Inf") == 4

        # By Centrifugo's frame types: pushes by kind, replies by their command's method.
        def sent(kind: str) -> float:
            labels = {"transport": "websocket", "frame_type": kind, "channel_namespace": ""}
            return delta("centrifugo_transport_messages_sent", **labels)

        assert sent("push_publication") == 10  # 5 publications, 2 subscribers each
        for method, count in (("connect", 2), ("subscribe", 2), ("publish", 4)):
            assert sent(method) == count, method  # the 4th: bob's error reply
        assert sent("push_join") >= 1 and sent("push_leave") >= 1  # bob's, to alice
        assert sent("push_unsubscribe") == 1  # the API's, to alice
        assert sent("reply_or_push") == 0  # no such frame type any more
        size = "centrifugo_transport_messages_sent_size"
        labels = {
            "transport": "websocket",
            "frame_type": "push_publication",
            "channel_namespace": "",
        }
        assert delta(size, **labels) > 10 * 10
        assert delta("hubbub_transport_frames_written_total") >= 1
        assert delta("hubbub_api_calls_total", method="publish") == 2
        assert delta("hubbub_api_calls_total", method="disconnect") == 1
        api_summary = "centrifugo_api_command_duration_seconds_count"
        assert delta(api_summary, protocol="http", method="publish") == 2
        assert delta("hubbub_engine_publish_duration_seconds_count") == 5
        assert value(after, "process_resident_memory_bytes") > 0


async def test_metrics_only_when_enabled_and_on_the_internal_port(
    start_server: ServerFactory,
) -> None:
    async def status(url: str) -> int:
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            return response.status

    plain = await start_server()
    assert await status(f"{plain.http_url}/metrics") == 404
    assert not plain.hub.counters.timing  # nobody reads durations: none are measured
    internal = free_port()
    server = await start_server({**METRICS, "http_server": {"internal_port": internal}})
    assert await status(f"{server.http_url}/metrics") == 404
    text = await scrape(f"http://127.0.0.1:{internal}/metrics")
    assert "centrifugo_node_num_clients 0" in text


async def test_a_slow_client_is_counted(start_server: ServerFactory) -> None:
    server = await start_server({**METRICS, "client": {"queue_max_size": 64 * 1024}})
    ws = await RawWS.open("127.0.0.1", server.port, rcvbuf=4096)  # and it never reads
    try:
        reply = await ws.reply(await ws.command("connect", {"token": server.token("slow")}))
        assert "connect" in reply, reply
        reply = await ws.reply(await ws.command("subscribe", {"channel": "chat:big"}))
        assert "subscribe" in reply, reply
        async with asyncio.timeout(20):  # bounded: at most 2000 x 4 KB offered
            for _ in range(2000):
                await server.hub.publish("chat:big", {"blob": "y" * 4000})
                await asyncio.sleep(0)  # let the flush run
                if not server.hub.sessions:
                    break
        assert not server.hub.sessions
    finally:
        ws.abort()
    samples = parse(await scrape(f"{server.http_url}/metrics"))
    assert value(samples, "hubbub_client_slow_disconnects_total") == 1
    assert value(samples, "centrifugo_client_num_server_disconnects", code="3008") == 1


def test_summary_quantiles_from_buckets() -> None:
    histogram = Histogram((0.001, 0.01, 0.1))
    for _ in range(90):
        histogram.observe(0.0005)
    for _ in range(10):
        histogram.observe(0.05)
    assert histogram.count == 100 and histogram.counts == [90, 0, 10, 0]
    assert 0 < histogram.quantile(0.5) <= 0.001
    assert 0.01 < histogram.quantile(0.99) <= 0.1
    assert histogram.cumulative()[-1] == (float("inf"), 100)


async def test_messages_are_labelled_by_their_transport(start_server: ServerFactory) -> None:
    """A uni_http_stream client and a WebSocket client on one channel: each transport's
    messages under its own name, as Centrifugo labels them."""
    server = await start_server({**METRICS, "uni_http_stream": {"enabled": True}})
    channel = "chat:mixed"
    url = f"{server.http_url}/metrics"
    before = parse(await scrape(url))
    token = server.token("streamer", channels=[channel])
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.http_url}/connection/uni_http_stream", json={"token": token}) as stream,
        connected_client(server.ws_url, server.token("ws"), channels=(channel,)) as ws,
    ):
        lines = stream.content
        assert "connect" in json.loads(await lines.readline())
        for n in range(3):
            assert "result" in await api(server, "publish", {"channel": channel, "data": {"n": n}})
        got = []
        while len(got) < 3:
            message = json.loads(await asyncio.wait_for(lines.readline(), 5))
            if "pub" in message:
                got.append(message["pub"]["data"]["n"])
        assert got == [0, 1, 2]
        for _ in range(3):
            await ws.push(channel, "pub")
        after = parse(await scrape(url))

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    def sent(transport: str, kind: str) -> float:
        labels = {"transport": transport, "frame_type": kind, "channel_namespace": ""}
        return delta("centrifugo_transport_messages_sent", **labels)

    assert sent("uni_http_stream", "push_publication") == 3
    assert sent("websocket", "push_publication") == 3
    assert sent("uni_http_stream", "connect") == 1  # its connect result (a push for it)
    assert sent("websocket", "connect") == 1
    assert delta("centrifugo_transport_connect_count", transport="uni_http_stream") == 1
    received = "centrifugo_transport_messages_received"
    labels = {"frame_type": "connect", "channel_namespace": ""}
    assert delta(received, transport="uni_http_stream", **labels) == 1
    assert delta(received, transport="websocket", **labels) == 1
    size = "centrifugo_transport_messages_received_size"
    assert delta(size, transport="uni_http_stream", frame_type="", channel_namespace="") > 0
