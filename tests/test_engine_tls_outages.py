"""A TLS connection to Redis or NATS that fails or never completes is an outage, never
a hang: told within the connect timeout in one log line, retried, and ``close()``
returns at once leaving no task and no socket.

Two kinds of servers: a real redis-server that requires a client certificate
(none is given: TLS 1.3 completes the client's side of the handshake, then the
server's alert breaks the connection) and a loopback TCP server that accepts and
never answers the ClientHello (for NATS, after its INFO line asking for TLS).
Every wait here is bounded with ``asyncio.wait``, which cancels nothing: a close
that never returns fails the test instead of holding the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

import pytest

from hubbub.config.loader import load_config
from hubbub.engines.base import Engine, EngineUnavailable, HistoryOptions
from hubbub.engines.factory import engine_from_config
from hubbub.engines.nats import CONNECT_TIMEOUT as NATS_CONNECT_TIMEOUT
from tests.engine_fixtures import Events, pub
from tests.redis_fixtures import RedisProcess
from tests.test_engine_nats import wait_for
from tests.test_engine_tls import _tls_redis
from tests.tls_fixtures import TlsFiles

pytestmark = pytest.mark.timeout(90)

HISTORY = HistoryOptions(size=10, ttl=60.0, meta_ttl=3600.0)
#: A close returns within this (it takes milliseconds; the machine may be loaded).
CLOSE_LIMIT = 5.0


class SilentServer:
    """A loopback TCP server that accepts and never answers (``first``: it sends this
    line first, e.g. a NATS server's INFO); counts the connections the client closed."""

    def __init__(self, first: bytes = b"") -> None:
        self.first = first
        self.accepted = 0
        self.closed_by_client = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        if self.first:
            writer.write(self.first)
        with contextlib.suppress(OSError):
            await reader.read()  # the ClientHello, then nothing until the client closes
        self.closed_by_client += 1
        writer.close()

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def silent() -> AsyncIterator[SilentServer]:
    server = SilentServer()
    yield server
    await server.close()


@pytest.fixture(scope="module")
def refusing_redis(tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The TLS port of a redis-server that requires a client certificate of the CA."""
    server: RedisProcess = _tls_redis(
        tmp_path_factory.mktemp("refusing"), tls_files, tls_files.cert, tls_files.key, True
    )
    server.start()
    yield server.tls_port  # type: ignore[attr-defined]
    server.stop()


def _redis_engine(port: int, tls: dict[str, Any], **timeouts: str) -> Engine:
    redis = {
        "address": [f"127.0.0.1:{port}"],
        "prefix": f"t{uuid.uuid4().hex[:8]}",
        "tls": {"enabled": True, **tls},
        **timeouts,
    }
    base = {"engine": {"type": "redis", "redis": redis}}
    return engine_from_config(load_config(None, env={}, base=base).config)


async def _within(limit: float, work: Coroutine[Any, Any, Any], what: str) -> Any:
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait((task,), timeout=limit)
    if not done:
        task.cancel()
        pytest.fail(f"{what} did not return within {limit} s")
    return task.result()


def _ours(tasks: set[asyncio.Task[Any]]) -> list[str]:
    return [task.get_name() for task in tasks if not task.done()]


async def test_redis_engine_closes_at_any_moment_of_a_refused_tls_connection(
    refusing_redis: int, tls_files: TlsFiles
) -> None:
    """The hang of a full run: close() landed while the pub/sub task's connection
    was being refused (its CLIENT SETINFO written, the server's alert arriving); the
    cancellation was lost in redis-py's wait_for (Python 3.11), the task reconnected
    every 2 s for ever and close() awaited it (hubbub/tasks.py). Swept over the
    first milliseconds of the connection, where the race lies on this machine."""
    before = asyncio.all_tasks()
    for step in range(30):
        engine = _redis_engine(refusing_redis, {"server_ca_pem": str(tls_files.ca)})
        await engine.start(Events())
        await asyncio.sleep(step * 0.0005)
        await _within(CLOSE_LIMIT, engine.close(), f"close() {step * 0.5} ms after start")
    await asyncio.sleep(0)
    assert _ours(asyncio.all_tasks() - before - {asyncio.current_task()}) == []  # type: ignore[operator]


async def test_redis_tls_handshake_never_answered_is_an_outage_within_connect_timeout(
    silent: SilentServer, caplog: pytest.LogCaptureFixture
) -> None:
    port = await silent.start()
    # io_timeout far above connect_timeout: the handshake is bounded by the latter.
    engine = _redis_engine(
        port, {"insecure_skip_verify": True}, connect_timeout="300ms", io_timeout="60s"
    )
    before = asyncio.all_tasks()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        await engine.start(Events())
        started = time.monotonic()
        with pytest.raises(EngineUnavailable, match="Timeout connecting"):
            await _within(30, engine.publish("chat:x", pub(1), HISTORY), "publish")
        assert time.monotonic() - started < 5  # 0.3 s, on a loaded machine
        with pytest.raises(EngineUnavailable):
            await _within(30, engine.subscribe("chat:x"), "subscribe")
        assert not engine.available
        await _within(CLOSE_LIMIT, engine.close(), "close()")
    await wait_for(lambda: silent.accepted > 0 and silent.closed_by_client == silent.accepted, 5)
    assert _ours(asyncio.all_tasks() - before - {asyncio.current_task()}) == []  # type: ignore[operator]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([line for line in lines if "unreachable" in line]) == 1, lines
    assert not [r for r in caplog.records if r.exc_info], "an outage is told without a traceback"


async def test_nats_tls_handshake_never_answered_is_an_outage_then_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server says INFO with tls_required, then never answers the ClientHello:
    nats-py's TLS upgrade is bounded by the broker's connect timeout."""
    info = {"server_id": "silent", "tls_required": True, "max_payload": 1048576, "proto": 1}
    server = SilentServer(b"INFO " + json.dumps(info).encode() + b"\r\n")
    port = await server.start()
    base = {
        "broker": {
            "enabled": True,
            "type": "nats",
            "nats": {
                "url": f"nats://127.0.0.1:{port}",
                "prefix": f"n{uuid.uuid4().hex[:8]}",
                "tls": {"enabled": True, "insecure_skip_verify": True},
            },
        }
    }
    broker = engine_from_config(load_config(None, env={}, base=base).config)
    before = asyncio.all_tasks()
    caplog.clear()
    try:
        with caplog.at_level(logging.INFO):
            await broker.start(Events())
            started = time.monotonic()
            await wait_for(lambda: any("unreachable" in m for m in caplog.messages), 15)
            # The INFO probe and nats-py's connection each wait CONNECT_TIMEOUT at most.
            assert time.monotonic() - started < 2 * NATS_CONNECT_TIMEOUT + 5
            assert not broker.available
            with pytest.raises(EngineUnavailable):
                await broker.publish("news", pub(1), HistoryOptions())
            await _within(CLOSE_LIMIT, broker.close(), "close()")
        await wait_for(lambda: server.closed_by_client == server.accepted, 5)
        assert server.accepted >= 2  # the INFO probe, then nats-py's attempt
        assert _ours(asyncio.all_tasks() - before - {asyncio.current_task()}) == []  # type: ignore[operator]
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        told = [line for line in lines if "unreachable" in line]
        assert len(told) == 1 and "TLS" in told[0], lines
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        await server.close()


async def test_nats_dial_timeout_bounds_a_connection_that_never_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``broker.nats.dial_timeout`` is honoured: a server that accepts and never sends
    its INFO is an outage after that long, told with the key, then closes."""
    server = SilentServer()
    port = await server.start()
    base = {
        "broker": {
            "enabled": True,
            "type": "nats",
            "nats": {"url": f"nats://127.0.0.1:{port}", "dial_timeout": "300ms"},
        }
    }
    broker = engine_from_config(load_config(None, env={}, base=base).config)
    caplog.clear()
    try:
        with caplog.at_level(logging.INFO):
            started = time.monotonic()
            await broker.start(Events())
            await wait_for(lambda: any("unreachable" in m for m in caplog.messages), 15)
            assert time.monotonic() - started < 2.0  # Centrifugo's default would be 1 s
            told = [m for m in caplog.messages if "unreachable" in m]
            assert "0.3 s (broker.nats.dial_timeout" in told[0], told
            assert not broker.available
            await _within(CLOSE_LIMIT, broker.close(), "close()")
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        await server.close()
