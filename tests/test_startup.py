"""Start-up: ``hubbub serve`` listens before it loads what WebSocket clients do not need.

What is proven here:
- the modules ``hubbub serve`` imports to listen (the CLI, server/run.py and
  what they import) load none of aiohttp, PyJWT, cryptography, gRPC, protobuf,
  PyYAML or the tools: each is imported on first use (checked in a fresh
  interpreter, the way the command starts);
- the public port's aiohttp application is made by the first request that is
  not a WebSocket upgrade: requests that arrive while it loads wait and are all
  answered, a WebSocket client is served before it exists, an upgrade on an
  HTTP keep-alive connection still goes through aiohttp's door;
- an application that fails to load answers 503 (one log line, no traceback
  for the client) and the next request tries again; shutdown works whether
  the application was made or not.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from typing import Any

import pytest

from hubbub.hub.hub import Hub
from hubbub.server import app as app_module
from hubbub.server.run import start
from tests.conftest import DEFAULT_CONFIG, RunningServer, ServerFactory
from tests.rawws import RawWS, http_exchange, text

HOST = "127.0.0.1"
HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
#: Loaded on first use only (a node that proxies, verifies tokens, speaks TLS,
#: reads YAML or serves HTTP loads them then).
LAZY = (
    "aiohttp",
    "jwt",
    "cryptography",
    "grpc",
    "google.protobuf",
    "yaml",
    "prometheus_client",
    "hubbub.tools",
)


def test_serve_path_imports_none_of_the_optional_stack() -> None:
    # A fresh interpreter does what ``hubbub serve`` does up to a WebSocket client
    # served: import the CLI and the server, load a config, start, take a client.
    probe = f"""
import asyncio, socket, sys
import hubbub, hubbub.cli.main, hubbub.server.run, hubbub.server.urls
import hubbub.server.logs, hubbub.server.workers
import uvloop
from hubbub.config.loader import load_config
from hubbub.engines.factory import engine_from_config
from hubbub.hub.hub import Hub

async def main() -> None:
    config = load_config(None, env={{}}, base={DEFAULT_CONFIG!r}).config
    hub = Hub(config, engine=engine_from_config(config))
    serving = await hubbub.server.run.start(hub, host="127.0.0.1", port=0)
    reader, writer = await asyncio.open_connection("127.0.0.1", serving.port)
    writer.write(
        b"GET /connection/websocket HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\n"
        b"Connection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\n"
        b"Sec-WebSocket-Version: 13\\r\\n\\r\\n"
    )
    assert (await reader.readuntil(b"\\r\\n\\r\\n")).startswith(b"HTTP/1.1 101")
    writer.close()
    await serving.stop()

uvloop.run(main())
lazy = {LAZY!r}
print(sorted({{m for m in sys.modules for p in lazy if m == p or m.startswith(p + ".")}}))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


async def test_first_http_requests_wait_for_the_app_and_are_answered(
    start_server: ServerFactory,
) -> None:
    server = await start_server()
    # A WebSocket client first: served by the listener, no application needed.
    ws = await RawWS.open(HOST, server.port)
    await ws.send(text({"id": 1, "connect": {}}))
    assert "connect" in await ws.reply(1)
    # Several requests at once while the application is made: every one is answered.
    replies = await asyncio.gather(*(http_exchange(HOST, server.port, HEALTH) for _ in range(5)))
    assert [reply.status for reply, _ in replies if reply is not None] == [200] * 5
    ws.abort()


async def test_upgrade_on_a_keepalive_connection_after_lazy_load(server: RunningServer) -> None:
    reader, writer = await asyncio.open_connection(HOST, server.port)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await asyncio.wait_for(reader.readexactly(length), 10)
        writer.write(
            b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
    finally:
        writer.close()


async def test_an_app_that_fails_to_load_answers_503_then_retries(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from hubbub.config.loader import load_config

    real = app_module.create_app
    failures = {"left": 1}

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("no application today")
        return real(*args, **kwargs)

    monkeypatch.setattr(app_module, "create_app", flaky)
    hub = Hub(load_config(None, env={}, base=DEFAULT_CONFIG).config)
    serving = await start(hub, host=HOST, port=0)
    try:
        with caplog.at_level(logging.ERROR, logger="hubbub.server"):
            reply, closed = await http_exchange(HOST, serving.port, HEALTH)
        assert reply is not None and reply.status == 503 and closed
        assert [r.message for r in caplog.records] == ["the HTTP application failed to start"]
        ws = await RawWS.open(HOST, serving.port)  # WebSocket clients are not affected
        await ws.send(text({"id": 1, "connect": {}}))
        assert "connect" in await ws.reply(1)
        ws.abort()
        reply, _ = await http_exchange(HOST, serving.port, HEALTH)  # tried again: made now
        assert reply is not None and reply.status == 200
    finally:
        await serving.stop()


async def test_stop_without_an_app_closes_the_clients_with_3001() -> None:
    from hubbub.config.loader import load_config

    hub = Hub(load_config(None, env={}, base=DEFAULT_CONFIG).config)
    serving = await start(hub, host=HOST, port=0)
    ws = await RawWS.open(HOST, serving.port)
    await ws.send(text({"id": 1, "connect": {}}))
    assert "connect" in await ws.reply(1)
    # No HTTP request ever came: stop closes the hub itself.
    stopping = asyncio.create_task(serving.stop())
    assert await ws.read_close_code() == 3001
    await ws.close()
    await asyncio.wait_for(stopping, 10)
