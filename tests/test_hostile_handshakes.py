"""Hostile clients: handshakes (slowloris, oversized, malformed) and the origin check.

Each socket case runs against a real server (``start_server``) while a
"bystander" client stays connected throughout (tests/hostile_helpers.py); after
the case it must still publish and receive within a second, and every
publication the server acknowledged during the test must be in history. No case
may make hubbub log a traceback, and a hostile connection is at most one log
line. Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.conftest import RunningServer, ServerFactory
from tests.hostile_helpers import (
    HOST,
    bystander,
    no_hubbub_tracebacks,  # noqa: F401 (autouse fixture)
    raw_connected,
)
from tests.rawws import handshake_request, http_exchange

# --- handshakes ----------------------------------------------------------------------


async def test_slowloris_handshake_is_closed_in_bounded_time(server: RunningServer) -> None:
    """One header line a second, forever: the server must hang up within 15 s."""
    async with bystander(server):
        reader, writer = await asyncio.open_connection(HOST, server.port)
        started = time.monotonic()
        lines = handshake_request(HOST, server.port)[:-1]  # never the final blank line
        lines += [f"X-Slow-{i}: v\r\n".encode() for i in range(20)]
        closed_after: float | None = None
        try:
            for line in lines:
                try:
                    writer.write(line)
                    await writer.drain()
                    async with asyncio.timeout(1.0):
                        data = await reader.read(4096)
                except TimeoutError:
                    if time.monotonic() - started > 15.0:
                        break
                    continue
                except ConnectionError:
                    closed_after = time.monotonic() - started
                    break
                # An answer (e.g. 408) or EOF: the server gave up on us.
                closed_after = time.monotonic() - started
                assert not data.startswith(b"HTTP/1.1 101"), data
                break
        finally:
            writer.transport.abort()
        assert closed_after is not None, "slow handshake still open after 15 s"
        assert closed_after <= 15.0
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    "extra",
    [
        [f"X-Header-{i}: v" for i in range(200)],
        ["X-Big: " + "a" * 20_000],
        ["X-" + "a" * 20_000 + ": v"],
    ],
    ids=["200-headers", "20KB-value", "20KB-name"],
)
async def test_oversized_handshake_is_refused(server: RunningServer, extra: list[str]) -> None:
    async with bystander(server):
        request = b"".join(handshake_request(HOST, server.port, extra=extra))
        reply, closed = await http_exchange(HOST, server.port, request)
        assert reply is not None and reply.status in (400, 431), reply
        assert closed, "connection still open after the refusal"


async def test_malformed_handshake_does_not_log_a_traceback(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    request = b"".join(handshake_request(HOST, server.port, extra=["X-Big: " + "a" * 20_000]))
    reply, _ = await http_exchange(HOST, server.port, request)
    assert reply is not None and reply.status == 400
    tracebacks = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert not tracebacks, [f"{r.name}: {r.getMessage()}" for r in tracebacks]


ALLOWED_ORIGINS = {"client": {"allowed_origins": ["http://good.example"]}}


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("http://evil.example", 403),
        ("null", 403),  # sandboxed iframes and file:// pages
        ("http://good.example.evil.example", 403),
        ("http://evil.example/http://good.example", 403),
        ("https://good.example", 403),  # another scheme is another origin
        ("http://good.example", 101),
        ("HTTP://GOOD.EXAMPLE", 101),  # origins compare case-insensitively
        ("same-host", 101),
        (None, 101),
    ],
)
async def test_origin_check(start_server: ServerFactory, origin: str | None, status: int) -> None:
    server = await start_server(ALLOWED_ORIGINS)
    if origin == "same-host":
        origin = f"http://{HOST}:{server.port}"
    headers = [f"Origin: {origin}"] if origin is not None else []
    async with bystander(server):
        if status == 101:
            ws = await raw_connected(server, headers=headers)
            ws.abort()
            return
        request = b"".join(handshake_request(HOST, server.port, extra=headers))
        # A 403 may keep the HTTP connection alive: only the refusal is asserted.
        reply, _ = await http_exchange(HOST, server.port, request, eof_within=0.1)
        assert reply is not None and reply.status == status, reply
        assert "sec-websocket-accept" not in reply.headers, reply.headers
        assert [s.user for s in server.hub.sessions.values()] == ["bystander"]
