"""Signed webhooks: a real receiver that checks signatures the README's way, and counts.

The receiver (``tests/webhook_receiver.py``) is its own process; it runs the
README's ``verify_webhook`` snippet and writes every event it accepted to a
file. Proved here: every event type arrives, signed, with the documented
fields; a wrong secret is refused by the receiver and retried by hubbub (one
log line); occupied/vacated are sent once for the cluster, not per node (on
one Redis server, and on the master a Sentinel names); webhooks on a Redis
Cluster are refused at start (not queued elsewhere); and with the Redis
engine, killing the receiver AND the node, then restarting both, loses no
accepted event (duplicates only with the same id, as documented).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from hubbub.config.loader import load_config
from hubbub.errors import ConfigError
from tests.cluster_fixtures import Node, wait_port
from tests.conftest import ServerFactory, merge
from tests.redis_fixtures import (  # noqa: F401 (fixtures)
    RedisProcess,
    free_port,
    own_redis,
    redis_server,
)
from tests.redis_sentinel_fixtures import SentinelSetup, redis_sentinel  # noqa: F401
from tests.wsclient import connected_client

METRICS = {"prometheus": {"enabled": True}}

ROOT = Path(__file__).parents[1]
SECRET = "webhook-test-secret-of-enough-length"
EVERYTHING = ["connect", "disconnect", "occupied", "vacated", "join", "leave", "publication"]


class Receiver:
    """``tests/webhook_receiver.py`` on a fixed port (so it can come back on it)."""

    def __init__(self, directory: Path, secret: str = SECRET) -> None:
        self.port = free_port()
        self.secret = secret
        self.out = directory / f"events-{self.port}.jsonl"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        self.launch()
        await wait_port(self.port, process=self.process)

    def launch(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.webhook_receiver",
                "--port",
                str(self.port),
                "--secret",
                self.secret,
                "--out",
                str(self.out),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def events(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def rejected(self) -> int:
        path = Path(str(self.out) + ".rejected")
        return len(path.read_text().splitlines()) if path.exists() else 0

    async def wait_for(self, check: Any, what: str, within: float = 15.0) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            events = self.events()
            if check(events):
                return events
            if loop.time() > deadline:
                raise AssertionError(f"receiver: no {what} within {within}s; got {events}")
            await asyncio.sleep(0.05)


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[Receiver]:
    running = Receiver(tmp_path)
    await running.start()
    yield running
    running.kill()


def webhooks(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {
        "webhooks": {
            "enabled": True,
            "endpoint": receiver.endpoint,
            "secret": SECRET,
            "events": EVERYTHING,
            "batch_max_size": 10,
            "timeout": "1s",
            "retry_min_delay": "50ms",
            "retry_max_delay": "300ms",
            "claim_after": "2s",
            **extra,
        }
    }


def of(events: list[dict[str, Any]], kind: str, **fields: Any) -> list[dict[str, Any]]:
    return [
        e for e in events if e["type"] == kind and all(e.get(k) == v for k, v in fields.items())
    ]


# --- one node -------------------------------------------------------------------------


async def test_every_event_type_arrives_signed(
    start_server: ServerFactory, receiver: Receiver
) -> None:
    server = await start_server(webhooks(receiver))
    async with connected_client(server.ws_url, server.token("wendy")) as client:
        client_id = client.client_id
        await client.result("subscribe", {"channel": "chat:hooks"})
        await client.result("publish", {"channel": "chat:hooks", "data": {"n": 1}})
        await client.result("unsubscribe", {"channel": "chat:hooks"})
    events = await receiver.wait_for(lambda e: of(e, "disconnect"), "disconnect")
    assert receiver.rejected() == 0  # every POST carried a valid signature
    kinds = [e["type"] for e in events]
    assert kinds == ["connect", "occupied", "join", "publication", "leave", "vacated", "disconnect"]
    by_type = {e["type"]: e for e in events}
    assert by_type["connect"]["user"] == "wendy" and by_type["connect"]["client"] == client_id
    assert by_type["occupied"]["channel"] == by_type["vacated"]["channel"] == "chat:hooks"
    assert by_type["join"]["user"] == by_type["leave"]["user"] == "wendy"
    assert by_type["publication"]["data"] == {"n": 1}
    assert by_type["publication"]["offset"] == 1
    assert isinstance(by_type["disconnect"]["code"], int)
    assert all(e["node"] == server.hub.node_id and e["time_ms"] > 0 for e in events)
    assert len({e["id"] for e in events}) == len(events)


async def test_a_wrong_secret_is_refused_and_retried(
    start_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    strict = Receiver(tmp_path, secret="another-secret-the-node-does-not-know")
    await strict.start()
    try:
        server = await start_server(webhooks(strict))
        async with connected_client(server.ws_url, server.token("mallory")):
            pass
        await _eventually(lambda: strict.rejected() >= 3, "3 refused POSTs (retries)")
        assert strict.events() == []
    finally:
        strict.kill()
    lines = [r for r in caplog.records if r.name == "hubbub.webhooks"]
    assert len(lines) == 1 and "HTTP status 401" in lines[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)


async def test_receiver_down_then_back_gets_everything(
    start_server: ServerFactory, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    server = await start_server(webhooks(receiver, events=["connect"]))
    receiver.kill()
    for i in range(5):
        async with connected_client(server.ws_url, server.token(f"r{i}")):
            pass
    await asyncio.sleep(0.5)  # some POSTs fail meanwhile
    await receiver.start()
    events = await receiver.wait_for(lambda e: len(of(e, "connect")) >= 5, "5 connects")
    assert sorted(e["user"] for e in events) == [f"r{i}" for i in range(5)]
    messages = [r.getMessage() for r in caplog.records if r.name == "hubbub.webhooks"]
    assert len(messages) == 2, messages  # failing, then works again
    assert "failed" in messages[0] and "works again" in messages[1]


# --- several nodes: Redis ---------------------------------------------------------------


def redis_config(redis: RedisProcess, prefix: str) -> dict[str, Any]:
    return {"engine": {"type": "redis", "redis": {"address": [redis.address], "prefix": prefix}}}


async def test_occupied_and_vacated_once_for_the_cluster(
    start_server: ServerFactory,
    receiver: Receiver,
    redis_server: RedisProcess,  # noqa: F811 (the fixture)
) -> None:
    config = merge(redis_config(redis_server, f"wh-{uuid.uuid4().hex[:8]}"), webhooks(receiver))
    first = await start_server(config)
    second = await start_server(config)
    channel = "chat:cluster"
    async with connected_client(first.ws_url, first.token("a"), channels=(channel,)):
        async with connected_client(second.ws_url, second.token("b"), channels=(channel,)):
            await receiver.wait_for(lambda e: len(of(e, "join", channel=channel)) == 2, "2 joins")
        # One holder left: no vacated yet.
        await receiver.wait_for(lambda e: of(e, "leave", user="b"), "b's leave")
    events = await receiver.wait_for(lambda e: of(e, "vacated", channel=channel), "vacated")
    await asyncio.sleep(0.5)  # anything duplicated would have arrived by now
    events = receiver.events()
    assert len(of(events, "occupied", channel=channel)) == 1
    assert len(of(events, "vacated", channel=channel)) == 1
    nodes = {e["node"] for e in of(events, "join")}
    assert nodes == {first.hub.node_id, second.hub.node_id}


async def test_with_sentinel_the_queue_is_on_the_master_it_names(
    start_server: ServerFactory,
    receiver: Receiver,
    redis_sentinel: SentinelSetup,  # noqa: F811 (the fixture)
) -> None:
    prefix = f"ws-{uuid.uuid4().hex[:8]}"
    engine = {
        "type": "redis",
        "redis": {
            "sentinel_address": [redis_sentinel.spec],
            "sentinel_master_name": redis_sentinel.master_name,
            "prefix": prefix,
        },
    }
    config = merge({"engine": engine}, webhooks(receiver))
    first = await start_server(config)
    second = await start_server(config)
    channel = "chat:sentinel"
    async with (
        connected_client(first.ws_url, first.token("a"), channels=(channel,)),
        connected_client(second.ws_url, second.token("b"), channels=(channel,)),
    ):
        await receiver.wait_for(lambda e: len(of(e, "join", channel=channel)) == 2, "2 joins")
    await receiver.wait_for(lambda e: of(e, "vacated", channel=channel), "vacated")
    await asyncio.sleep(0.5)  # anything duplicated would have arrived by now
    events = receiver.events()
    assert len(of(events, "occupied", channel=channel)) == 1
    assert len(of(events, "vacated", channel=channel)) == 1
    # The queue's keys are on the master the sentinel names (not on 127.0.0.1:6379).
    master = aioredis.Redis.from_url(redis_sentinel.master.url)
    try:
        assert await master.exists(f"{prefix}.webhooks.nodes") == 1
    finally:
        await master.aclose()


def test_webhooks_on_a_redis_cluster_are_refused_at_start() -> None:
    engine = {"type": "redis", "redis": {"cluster_address": ["127.0.0.1:7000"]}}
    hooks = {"enabled": True, "endpoint": "http://127.0.0.1:1/hooks", "secret": SECRET}
    with pytest.raises(ConfigError) as info:
        load_config(None, env={}, base={"engine": engine, "webhooks": hooks})
    assert info.value.key == "webhooks.enabled"
    assert "cluster_address" in info.value.message


async def test_redis_outage_delays_events_without_losing_or_crashing(
    start_server: ServerFactory,
    receiver: Receiver,
    own_redis: RedisProcess,  # noqa: F811 (the fixture)
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    config = merge(redis_config(own_redis, "outage"), webhooks(receiver, events=["connect"]))
    server = await start_server(config)
    async with connected_client(server.ws_url, server.token("before")):
        pass
    await receiver.wait_for(lambda e: of(e, "connect", user="before"), "the first connect")
    own_redis.kill()  # its data (the stream, the consumer group) is gone with it
    for i in range(3):
        async with connected_client(server.ws_url, server.token(f"during{i}")):
            pass
    await asyncio.sleep(0.5)  # the node tries and fails meanwhile
    own_redis.start()  # empty: the group is created again
    events = await receiver.wait_for(
        lambda e: len(of(e, "connect")) == 4, "the connects made during the outage", within=20
    )
    assert sorted(e["user"] for e in events) == ["before", "during0", "during1", "during2"]
    assert all(r.exc_info is None for r in caplog.records)
    lines = [r.getMessage() for r in caplog.records if r.name == "hubbub.webhooks"]
    assert lines and len(lines) <= 6, lines  # one line per outage start and end, per task


class WebhookNode(Node):
    """A ``hubbub serve`` process with webhooks on."""

    def __init__(self, directory: Path, redis: RedisProcess, prefix: str, extra: dict[str, Any]):
        super().__init__(directory, "webhook-node", [redis.address], prefix)
        config = json.loads(self.config_path.read_text())
        self.config_path.write_text(json.dumps(merge(config, extra)))


@contextlib.contextmanager
def running(node: WebhookNode) -> Iterator[WebhookNode]:
    try:
        yield node
    finally:
        node.stop()


async def test_killing_receiver_and_node_loses_no_accepted_event(
    tmp_path: Path,
    receiver: Receiver,
    redis_server: RedisProcess,  # noqa: F811 (the fixture)
) -> None:
    prefix = f"whk-{uuid.uuid4().hex[:8]}"
    node = WebhookNode(tmp_path, redis_server, prefix, webhooks(receiver))
    stream = aioredis.Redis.from_url(redis_server.url)
    channel = "chat:durable"
    try:
        with running(node):
            await node.start()
            async with contextlib.AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(
                        connected_client(node.ws_url, _token(f"u{i}"), channels=(channel,))
                    )
                    for i in range(10)
                ]
                first = await receiver.wait_for(
                    lambda e: len(of(e, "join")) == 10, "10 joins while everything runs"
                )
                assert len(of(first, "connect")) == 10 and len(of(first, "occupied")) == 1
                # The receiver dies; events keep happening and are accepted into Redis.
                receiver.kill()
                for client in clients[:5]:
                    await client.close()
                for i in range(5):
                    await stack.enter_async_context(
                        connected_client(node.ws_url, _token(f"v{i}"), channels=(channel,))
                    )
                # 5 leaves + 5 disconnects + 5 connects + 5 joins, all accepted (in Redis):
                await _wait_accepted(stream, f"{prefix}.webhooks.stream", set(EXPECTED[20:]))
                node.kill()  # SIGKILL: no shutdown, a batch in flight is not acknowledged
        # Both come back (the node as a new node id) and the backlog is delivered.
        await receiver.start()
        with running(node):
            await node.start()
            events = await receiver.wait_for(
                lambda e: _pairs(e) >= set(EXPECTED) and of(e, "vacated", channel=channel),
                "every accepted event and the dead node's vacated",
                within=30.0,
            )
            await asyncio.sleep(1.0)  # a duplicate, if any, has arrived by now
            events = receiver.events()
    finally:
        await stream.aclose()
    ids = Counter(e["id"] for e in events)
    unique = {e["id"]: e for e in events}
    duplicated = {i: n for i, n in ids.items() if n > 1}
    # No accepted event lost, none repeated under another id:
    seen = Counter((e["type"], e.get("user", "")) for e in unique.values())
    assert all(seen[pair] == 1 for pair in EXPECTED), seen
    assert len(of(list(unique.values()), "occupied")) == 1
    assert len(of(list(unique.values()), "vacated")) == 1
    # Duplicates only as documented: the same id, the same content, at most one batch.
    assert len(duplicated) <= 10, duplicated
    for event_id in duplicated:
        copies = [e for e in events if e["id"] == event_id]
        assert all(c == copies[0] for c in copies)
    print(
        f"webhooks after kill/restart: {len(unique)} events, {len(duplicated)} duplicated, 0 lost"
    )


async def _eventually(check: Any, what: str, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if check():
            return
        if loop.time() > deadline:
            raise AssertionError(f"no {what} within {within}s")
        await asyncio.sleep(0.05)


#: (type, user) of every event the node accepted before it was killed.
EXPECTED = (
    [("connect", f"u{i}") for i in range(10)]
    + [("join", f"u{i}") for i in range(10)]
    + [("leave", f"u{i}") for i in range(5)]
    + [("disconnect", f"u{i}") for i in range(5)]
    + [("connect", f"v{i}") for i in range(5)]
    + [("join", f"v{i}") for i in range(5)]
)


def _pairs(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["type"], e.get("user", "")) for e in events}


def _token(user: str) -> str:
    from hubbub.auth.tokens import make_token
    from tests.conftest import SECRET as HMAC_SECRET

    return make_token(HMAC_SECRET, user, ttl=3600)


async def _wait_accepted(
    client: aioredis.Redis, key: str, wanted: set[tuple[str, str]], within: float = 10.0
) -> None:
    """Until the stream holds an event of each (type, user) of ``wanted``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        entries = await client.xrange(key)
        found = _pairs([json.loads(fields[b"e"]) for _, fields in entries])
        if found >= wanted:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{key} lacks {wanted - found}")
        await asyncio.sleep(0.05)


# --- the queue's bounds: a receiver that stays down ------------------------------------


async def _scrape_dropped(server: Any) -> dict[str, float]:
    from tests.test_metrics import parse, scrape, value

    samples = parse(await scrape(f"{server.http_url}/metrics"))
    return {
        reason: value(samples, "hubbub_webhook_events_dropped_total", reason=reason)
        for reason in ("max_pending", "queue_max_length", "queue_max_age")
    } | {"queued": value(samples, "hubbub_webhook_events_queued")}


async def test_redis_stream_is_bounded_while_the_receiver_is_down(
    start_server: ServerFactory,
    receiver: Receiver,
    redis_server: RedisProcess,  # noqa: F811 (the fixture)
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    prefix = f"whb-{uuid.uuid4().hex[:8]}"
    bounded = webhooks(receiver, events=["connect"], queue_max_length=5)
    config = merge(merge(redis_config(redis_server, prefix), bounded), METRICS)
    server = await start_server(config)
    stream = aioredis.Redis.from_url(redis_server.url)
    key = f"{prefix}.webhooks.stream"
    receiver.kill()
    lengths = []
    try:
        for i in range(12):
            async with connected_client(server.ws_url, server.token(f"b{i}")):
                pass
            if i == 0:  # b0 alone is the batch being posted (and failing) meanwhile
                await _post_failed(caplog)
            await _eventually(
                lambda i=i: server.hub.webhooks.dropped["queue_max_length"] >= i - 4,
                f"connect b{i} accepted",
            )
            lengths.append(await stream.xlen(key))
        entries = await stream.xrange(key)
    finally:
        await stream.aclose()
    # Never more than 5 entries; the 7 oldest were dropped, and the 5 newest wait.
    assert max(lengths) <= 5 and lengths[-1] == 5, lengths
    assert [json.loads(f[b"e"])["user"] for _, f in entries] == [f"b{i}" for i in range(7, 12)]
    assert server.hub.webhooks.dropped == {"queue_max_length": 7}
    scraped = await _scrape_dropped(server)
    assert scraped == {"max_pending": 0, "queue_max_length": 7, "queue_max_age": 0, "queued": 5}
    # Loud, once for the burst (not once per event), no traceback.
    drops = [r for r in caplog.records if "DROPPED" in r.getMessage()]
    assert len(drops) == 1 and drops[0].levelno == logging.ERROR, drops
    assert "webhooks.queue_max_length" in drops[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
    # The receiver is back: what was kept arrives; what was dropped does not (except
    # b0, if it was the batch being posted when it was dropped: documented).
    await receiver.start()
    events = await receiver.wait_for(
        lambda e: {x["user"] for x in e} >= {f"b{i}" for i in range(7, 12)}, "the kept events"
    )
    assert {e["user"] for e in events} - {"b0"} == {f"b{i}" for i in range(7, 12)}


async def test_old_events_are_dropped_by_age(
    start_server: ServerFactory,
    receiver: Receiver,
    redis_server: RedisProcess,  # noqa: F811 (the fixture)
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    prefix = f"wha-{uuid.uuid4().hex[:8]}"
    aged = webhooks(receiver, events=["connect"], queue_max_age="1s")
    server = await start_server(merge(redis_config(redis_server, prefix), aged))
    receiver.kill()
    for i in range(3):
        async with connected_client(server.ws_url, server.token(f"old{i}")):
            pass
        if i == 0:  # old0 alone is the batch being posted (and failing) meanwhile
            await _post_failed(caplog)
    # Trimmed by the heartbeat (every claim_after / 4) once they are a second old.
    await _eventually(
        lambda: server.hub.webhooks.dropped["queue_max_age"] >= 2, "old events dropped", 10.0
    )
    await receiver.start()
    async with connected_client(server.ws_url, server.token("fresh")):
        pass
    events = await receiver.wait_for(lambda e: of(e, "connect", user="fresh"), "the fresh one")
    # old0 may have been in flight (posted again when the receiver came back).
    assert {e["user"] for e in events} - {"old0"} == {"fresh"}


async def _post_failed(caplog: pytest.LogCaptureFixture) -> None:
    """Until hubbub logged that its POST failed (the receiver is down)."""
    await _eventually(
        lambda: any("POST to" in r.getMessage() for r in caplog.records), "a failed POST"
    )


async def test_memory_queue_is_bounded_too(
    start_server: ServerFactory, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    server = await start_server(webhooks(receiver, events=["connect"], queue_max_length=3))
    receiver.kill()
    for i in range(8):
        async with connected_client(server.ws_url, server.token(f"m{i}")):
            pass
        if i == 0:  # m0 alone is the batch being posted (and failing) meanwhile
            await _post_failed(caplog)
    await _eventually(
        lambda: server.hub.webhooks.dropped["queue_max_length"] == 5, "5 dropped", 10.0
    )
    assert server.hub.webhooks.queue.queued == 3  # one in flight, the two newest waiting
    await receiver.start()
    await receiver.wait_for(lambda e: len(e) >= 3, "the kept events")
    await asyncio.sleep(0.3)
    assert [e["user"] for e in receiver.events()] == ["m0", "m6", "m7"]
