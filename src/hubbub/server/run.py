"""Run a hub as a standalone server until SIGTERM or SIGINT.

Rule: shutdown is graceful: stop accepting, disconnect every client with 3001
(they reconnect, to another node if there is one), let background work
finish, then exit. uvloop is used when available.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from hubbub.config.model import Config
from hubbub.hub.hub import Hub
from hubbub.server.app import create_app

log = logging.getLogger("hubbub.server")


async def serve(
    hub: Hub,
    *,
    host: str,
    port: int,
    ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``hub`` on ``host:port`` until ``stop`` is set or a signal arrives."""
    app = create_app(hub)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host or None, port)
    await site.start()
    bound = _bound_port(runner) or port
    log.info("hubbub listening on http://%s:%d (node %s)", host or "0.0.0.0", bound, hub.node_id)
    if ready is not None:
        ready(bound)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("shutting down: disconnecting clients with 3001")
    finally:
        await runner.cleanup()


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None


def run(config: Config, *, ready: Callable[[int], None] | None = None) -> None:
    """Blocking entry point of ``hubbub serve``."""
    hub = Hub(config)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(
            serve(hub, host=config.http_server.address, port=config.http_server.port, ready=ready)
        )
        return
    uvloop.run(
        serve(hub, host=config.http_server.address, port=config.http_server.port, ready=ready)
    )
