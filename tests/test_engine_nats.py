"""The NATS broker (``broker.type = "nats"``) with a real nats-server (and redis-server).

Two brokers stand for two nodes. NATS alone (over the memory engine) carries
channels without history, join/leave and control between nodes; with the
Redis engine, channels with history keep Redis's offsets and recovery while
the others go through NATS; a NATS restart tells the nodes (broker lost) and
delivery resumes; the configuration keys build it, and combinations that would
keep history per node are refused naming the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hubbub.config.loader import load_config
from hubbub.engines.base import EngineUnavailable, HistoryOptions, HistoryQuery
from hubbub.engines.factory import engine_from_config
from hubbub.engines.memory import MemoryEngine
from hubbub.engines.nats import NatsBroker, channel_subject
from hubbub.engines.redis import RedisEngine
from hubbub.errors import ConfigError
from hubbub.protocol.messages import Publication
from hubbub.protocol.payload import Binary
from tests.engine_fixtures import Events, info, pub, two_nodes_events
from tests.engine_fixtures import numbers as numbers_of
from tests.nats_fixtures import NatsProcess, nats_server, own_nats  # noqa: F401 (fixtures)
from tests.redis_fixtures import RedisProcess, redis_server  # noqa: F401 (fixture)
from tests.test_engine_redis import wait_until

pytestmark = pytest.mark.timeout(60)

NO_HISTORY = HistoryOptions()
HISTORY = HistoryOptions(size=100, ttl=60.0, meta_ttl=3600.0)


async def broker_on(url: str, events: Events, prefix: str, engine: object = None) -> NatsBroker:
    broker = NatsBroker(engine or MemoryEngine(), url, prefix=prefix)  # type: ignore[arg-type]
    await broker.start(events)
    await wait_for(lambda: broker.available, 10)
    return broker


async def brokers_on(url: str, prefix: str) -> tuple[NatsBroker, Events, NatsBroker, Events]:
    """Two started brokers (node-a, node-b) on the NATS server at ``url``, with their events."""
    events_a, events_b = two_nodes_events()
    a = await broker_on(url, events_a, prefix)
    b = await broker_on(url, events_b, prefix)
    return a, events_a, b, events_b


async def wait_for(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def prefix() -> str:
    return f"n{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def two_nodes(
    nats_server: NatsProcess,  # noqa: F811
    prefix: str,
) -> AsyncIterator[tuple[NatsBroker, Events, NatsBroker, Events]]:
    a, events_a, b, events_b = await brokers_on(nats_server.url, prefix)
    yield a, events_a, b, events_b
    await a.close()
    await b.close()


async def test_publications_join_leave_and_control_cross_nodes_in_order(
    two_nodes: tuple[NatsBroker, Events, NatsBroker, Events],
) -> None:
    a, events_a, b, events_b = two_nodes
    channel = "news:weird channel.*>"  # not a plain subject: encoded
    assert ".~" in channel_subject("p", channel)
    await a.subscribe(channel)
    for n in range(1, 201):
        result = await b.publish(channel, pub(n), NO_HISTORY)
        assert result.position.offset == 0
    await b.publish_join(channel, info("alice", "c1"))
    await b.publish_leave(channel, info("alice", "c1"))
    await wait_until(lambda: len(events_a.leaves) == 1, events_a)
    assert numbers_of([p for c, p, _ in events_a.publications if c == channel]) == list(
        range(1, 201)
    )
    assert [i.user for _, i in events_a.joins] == ["alice"]
    # Control: to every node (the sender too), and to one node only.
    await b.publish_control(b"to all")
    await b.publish_control(b"to a", node="node-a")
    await wait_until(lambda: b"to a" in events_a.controls, events_a)
    await wait_until(lambda: b"to all" in events_b.controls, events_b)
    assert events_a.controls == [b"to all", b"to a"]
    assert b"to a" not in events_b.controls
    # Unsubscribed: nothing more arrives for the channel.
    await a.unsubscribe(channel)
    await b.publish(channel, pub(999), NO_HISTORY)
    await b.publish_control(b"marker", node="node-a")
    await wait_until(lambda: b"marker" in events_a.controls, events_a)
    assert 999 not in numbers_of([p for c, p, _ in events_a.publications if c == channel])


async def test_a_publication_right_after_subscribe_is_never_missed(
    two_nodes: tuple[NatsBroker, Events, NatsBroker, Events],
) -> None:
    """``subscribe`` returns once the server has the subscription: what another node
    publishes right after it arrives, every time. (With nats-py's ``flush()`` as
    the proof, its PING overtook the SUB still in nats-py's buffer: 11 to 20 in a
    hundred of these were lost.)"""
    a, events_a, b, _ = two_nodes
    channels = [f"sync{n}" for n in range(100)]
    for channel in channels:
        await a.subscribe(channel)
        await b.publish(channel, pub(1), NO_HISTORY)
    with contextlib.suppress(TimeoutError):
        await wait_until(lambda: len(events_a.publications) == len(channels), events_a)
    missed = set(channels) - {c for c, _, _ in events_a.publications}
    assert not missed, f"{len(missed)} publications missed: {sorted(missed)}"
    assert len(events_a.publications) == len(channels)


async def test_binary_data_crosses_nodes_exactly(
    two_nodes: tuple[NatsBroker, Events, NatsBroker, Events],
) -> None:
    a, events_a, b, _ = two_nodes
    await a.subscribe("bin")
    await b.publish("bin", Publication(data=Binary(b"\x00\xff\xfe")), NO_HISTORY)
    await wait_until(lambda: len(events_a.publications) == 1, events_a)
    [(_, publication, _)] = events_a.publications
    assert type(publication.data) is Binary and publication.data == b"\x00\xff\xfe"


async def test_with_redis_history_channels_keep_offsets_and_presence_is_shared(
    nats_server: NatsProcess,  # noqa: F811
    redis_server: RedisProcess,  # noqa: F811
    prefix: str,
) -> None:
    events_a, events_b = two_nodes_events()
    a = await broker_on(
        nats_server.url, events_a, prefix, RedisEngine([redis_server.address], prefix=prefix)
    )
    b = await broker_on(
        nats_server.url, events_b, prefix, RedisEngine([redis_server.address], prefix=prefix)
    )
    try:
        await a.subscribe("chat:h")
        await a.subscribe("plain")
        positions = [(await b.publish("chat:h", pub(n), HISTORY)).position for n in (1, 2, 3)]
        assert [p.offset for p in positions] == [1, 2, 3]
        await b.publish("plain", pub(7), NO_HISTORY)
        await wait_until(lambda: len(events_a.publications) == 4, events_a)
        assert [p.offset for c, p, _ in events_a.publications if c == "chat:h"] == [1, 2, 3]
        page = await a.history("chat:h", HistoryQuery(since=positions[0], limit=-1), HISTORY)
        assert numbers_of(page.publications) == [2, 3]
        await b.add_presence("chat:h", "c1", info("bob", "c1"), 60)
        assert set(await a.presence("chat:h")) == {"c1"}
        # An idempotency key needs state: it goes through Redis even without history.
        first = await b.publish("plain", pub(8), NO_HISTORY, idempotency_key="k")
        again = await b.publish("plain", pub(8), NO_HISTORY, idempotency_key="k")
        assert not first.duplicate and again.duplicate
    finally:
        await a.close()
        await b.close()


async def test_nats_restart_tells_the_node_and_delivery_resumes(
    own_nats: NatsProcess,  # noqa: F811
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hubbub.engines.nats")
    a, events_a, b, _ = await brokers_on(own_nats.url, prefix)
    try:
        await a.subscribe("live")
        await b.publish("live", pub(1), NO_HISTORY)
        await wait_until(
            lambda: numbers_of([p for _, p, _ in events_a.publications]) == [1], events_a
        )
        own_nats.restart()
        await wait_until(lambda: "live" in events_a.lost, events_a, 10)
        await wait_for(lambda: a.available and b.available, 15)
        deadline = time.monotonic() + 10
        while 2 not in numbers_of([p for _, p, _ in events_a.publications]):
            assert time.monotonic() < deadline, "delivery did not resume"
            with contextlib.suppress(EngineUnavailable):
                await b.publish("live", pub(2), NO_HISTORY)
            await asyncio.sleep(0.1)
    finally:
        await a.close()
        await b.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "hubbub.engines.nats"]
    assert any("unreachable" in line for line in lines), lines
    assert any("reachable again" in line for line in lines), lines
    assert len(lines) <= 8, lines
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"


async def test_closing_the_broker_is_not_an_outage(
    nats_server: NatsProcess,  # noqa: F811
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A node shutting down logs no "unreachable" and tells no subscriber to recover
    (it once logged ``unreachable: disconnected`` on every shutdown)."""
    caplog.set_level(logging.INFO, logger="hubbub.engines.nats")
    events = Events()
    broker = await broker_on(nats_server.url, events, prefix)
    await broker.subscribe("closing")
    await broker.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "hubbub.engines.nats"]
    assert lines == [f"nats {nats_server.url}: connected"], lines
    assert events.lost == []


def test_configuration_builds_the_broker_and_refuses_per_node_history() -> None:
    base = {
        "broker": {
            "enabled": True,
            "type": "nats",
            "nats": {"url": "nats://127.0.0.1:4333", "prefix": "x"},
        }
    }
    config = load_config(None, env={}, base=base).config
    engine = engine_from_config(config)
    assert isinstance(engine, NatsBroker)
    assert isinstance(engine.engine, MemoryEngine)
    assert (engine.url, engine.prefix) == ("nats://127.0.0.1:4333", "x")
    with_redis = load_config(None, env={}, base={**base, "engine": {"type": "redis"}}).config
    wrapped = engine_from_config(with_redis)
    assert isinstance(wrapped, NatsBroker) and isinstance(wrapped.engine, RedisEngine)
    # Disabled: the section is not used at all.
    off = load_config(None, env={}, base={"broker": {"enabled": False, "type": "nats"}}).config
    assert isinstance(engine_from_config(off), MemoryEngine)
    history = {"channel": {"namespaces": [{"name": "hist", "history_size": 10, "history_ttl": 60}]}}
    with pytest.raises(ConfigError) as refused:
        load_config(None, env={}, base={**base, **history})
    assert "channel.namespaces[0].history_size" in str(refused.value)
    with pytest.raises(ConfigError) as other:
        load_config(None, env={}, base={"broker": {"enabled": True, "type": "redis"}})
    assert "broker.type" in str(other.value)
    with pytest.raises(ConfigError) as bad_url:
        load_config(None, env={}, base={"broker": {**base["broker"], "nats": {"url": "x:1"}}})
    assert "broker.nats.url" in str(bad_url.value)


async def test_a_connection_the_client_gives_up_is_made_again_without_the_refused_channel(
    tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """nats-server refuses a SUB past its ``max_subscriptions`` with an -ERR, and
    nats-py closes the connection for good on it (no reconnect). The broker fails
    that subscribe, connects again with the subscriptions it had, and delivery on
    them resumes; its subscribers were told of the gap (handle_broker_lost)."""
    conf = tmp_path / "limits.conf"
    # Per connection: the broker's own 3 (its sync subject, control, its node) + 2.
    conf.write_text("max_subscriptions: 5\n")
    server = NatsProcess(log=tmp_path / "nats-server.log", extra=("-c", str(conf)))
    server.start()
    a, events_a, b, _ = await brokers_on(server.url, prefix)
    try:
        await a.subscribe("kept1")
        await a.subscribe("kept2")
        with caplog.at_level(logging.WARNING), pytest.raises(EngineUnavailable):
            await asyncio.wait_for(a.subscribe("one too many"), 10)
        assert "one too many" not in a._subs
        await wait_for(lambda: a.available, 15)  # connected again, by the broker
        assert {"kept1", "kept2"} <= set(events_a.lost)
        for n, channel in enumerate(("kept1", "kept2"), start=1):
            await b.publish(channel, pub(n), NO_HISTORY)
        await wait_for(lambda: len(events_a.publications) == 2, 10)
        assert sorted(c for c, _, _ in events_a.publications) == ["kept1", "kept2"]
        told = [m for m in caplog.messages if "nats" in m]
        assert len(told) == 2, told  # one line each way
        assert "refused the subscription" in told[0] and "maximum subscriptions" in told[0]
        assert "reachable again" in told[1]
        # The limit is known now: a subscribe past it is refused without asking the
        # server, and the connection (and the other channels) stay as they are.
        lost = len(events_a.lost)
        with pytest.raises(EngineUnavailable, match="max_subscriptions allows this node 2"):
            await a.subscribe("still too many")
        await b.publish("kept1", pub(3), NO_HISTORY)
        await wait_for(lambda: len(events_a.publications) == 3, 10)
        assert a.available and len(events_a.lost) == lost
        await a.unsubscribe("kept2")  # room for one again
        await a.subscribe("in its place")
        await b.publish("in its place", pub(4), NO_HISTORY)
        await wait_for(lambda: len(events_a.publications) == 4, 10)
    finally:
        await a.close()
        await b.close()
        server.stop()
