"""The Redis engine after a peer that resets connections right after accepting them.

Found by the chaos run (tests/test_chaos.py; benchmarks/chaos.py --seed 11
--streams 2, fault "redis-link-partition b"): while a node's link to Redis was
partitioned, its reconnect attempts reached a listener that accepts and then
resets the connection at once (what an L4 proxy, docker-proxy or a load
balancer with no live backend does). On uvloop, redis-py then fails with
``RuntimeError: unable to perform operation on <TCPTransport closed=True ...>;
the handler is closed``, not a RedisError or OSError:

* the pub/sub reader task died of it, so the node never reconnected pub/sub:
  its subscribers got nothing more, every later subscribe failed with "no
  pub/sub connection" until the node was restarted, and the error surfaced
  only at shutdown, as a traceback;
* a batch of publishes failed with it: "Task exception was never retrieved"
  and a traceback, where an outage must be one log line and EngineUnavailable.

The partitioning proxy runs on its own thread and loop (as it would in its
own process), and this loop is kept busy meanwhile (as a loaded node's): the
reset is then handled before redis-py writes its first command, which is what
makes uvloop raise.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterable, Iterator

import msgspec
import pytest

from hubbub.engines.base import EngineUnavailable, HistoryOptions
from hubbub.engines.redis import RedisEngine
from hubbub.protocol.messages import ClientInfo, Publication, StreamPosition
from tests.chaos_proxy import LinkProxy
from tests.redis_fixtures import RedisProcess, redis_server  # noqa: F401 (fixture)

pytestmark = pytest.mark.timeout(60)


class ThreadedProxy:
    """A LinkProxy on a thread of its own, with its own event loop."""

    def __init__(self, upstream_port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.proxy = LinkProxy("redis", upstream_port)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ThreadedProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(5)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def partition(self, seconds: float) -> None:
        self.loop.call_soon_threadsafe(self.proxy.partition, seconds)


class Events:
    node_id = "reset-test"  # engines with a control channel address nodes by id

    def __init__(self) -> None:
        self.publications: list[tuple[str, bytes]] = []
        self.lost: list[str] = []

    def handle_publication(
        self, channel: str, publication: Publication, position: StreamPosition
    ) -> None:
        self.publications.append((channel, bytes(publication.data)))

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        pass

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        pass

    def handle_broker_lost(self, channels: Iterable[str]) -> None:
        self.lost.extend(channels)

    def handle_control(self, *args: object) -> None:  # engines with a control channel
        pass


@pytest.fixture
def proxy(redis_server: RedisProcess) -> Iterator[ThreadedProxy]:  # noqa: F811
    with ThreadedProxy(redis_server.port) as running:
        yield running


async def busy(seconds: float) -> None:
    """Keep this loop busy, as a loaded node's: 2 ms of work between turns."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.002)  # noqa: ASYNC251 - blocking on purpose
        await asyncio.sleep(0)


async def test_pubsub_reconnects_after_resets_right_after_accept(proxy: ThreadedProxy) -> None:
    engine = RedisEngine([f"127.0.0.1:{proxy.proxy.port}"], prefix=f"reset{uuid.uuid4().hex[:6]}")
    events = Events()
    await engine.start(events)
    try:
        await engine.subscribe("chat:before")
        proxy.partition(2.0)  # every link cut; new ones accepted, then reset at once
        await busy(2.5)
        assert "chat:before" in events.lost  # the subscribers were told

        # Once Redis is reachable again, the pub/sub connection must come back.
        deadline = time.monotonic() + 10
        while True:
            try:
                await engine.subscribe("chat:after")
                break
            except Exception as exc:  # ConnectionError or EngineUnavailable, by version
                if time.monotonic() > deadline:
                    raise AssertionError(f"pub/sub never came back: {exc!r}") from exc
                await asyncio.sleep(0.2)
        history = HistoryOptions(size=10, ttl=60)
        data = msgspec.Raw(b'{"n":1}')
        await engine.publish("chat:after", Publication(data=data), history)
        async with asyncio.timeout(5):
            while ("chat:after", b'{"n":1}') not in events.publications:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        await engine.close()


async def test_commands_through_a_reset_link_fail_as_an_outage(proxy: ThreadedProxy) -> None:
    """During the same partition, a publish fails with EngineUnavailable (the API's
    error, one log line), never with the transport's RuntimeError (a traceback)."""
    engine = RedisEngine([f"127.0.0.1:{proxy.proxy.port}"], prefix=f"reset{uuid.uuid4().hex[:6]}")
    await engine.start(Events())
    history = HistoryOptions(size=10, ttl=60)
    try:
        await engine.publish("chat:x", Publication(data=msgspec.Raw(b"1")), history)
        proxy.partition(2.0)
        await busy(0.2)
        failures: list[BaseException] = []
        for _ in range(10):
            try:
                await engine.publish("chat:x", Publication(data=msgspec.Raw(b"2")), history)
            except Exception as exc:
                failures.append(exc)
            await busy(0.05)
        assert failures, "every publish succeeded through a partitioned link"
        assert all(isinstance(exc, EngineUnavailable) for exc in failures), failures
    finally:
        await engine.close()
