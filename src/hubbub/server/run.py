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
from hubbub.engines.factory import engine_from_config
from hubbub.hub.hub import Hub
from hubbub.server.app import create_app, create_internal_app, runner_options

log = logging.getLogger("hubbub.server")


async def serve(
    hub: Hub,
    *,
    host: str,
    port: int,
    ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve ``hub`` on ``host:port`` until ``stop`` is set or a signal arrives.

    With ``http_server.internal_port`` the API gets its own listener on
    ``http_server.internal_address``, and the public port does not serve it.
    """
    server = hub.config.http_server
    options = runner_options(server)
    internal = server.internal_port > 0
    runner = web.AppRunner(
        create_app(hub, api=not internal), handle_signals=False, shutdown_timeout=5.0, **options
    )
    await runner.setup()
    runners = [runner]
    await web.TCPSite(runner, host or None, port, reuse_port=reuse_port or None).start()
    if internal:
        internal_runner = web.AppRunner(create_internal_app(hub), handle_signals=False, **options)
        await internal_runner.setup()
        runners.insert(0, internal_runner)  # cleaned up last, after the hub is closed
        await web.TCPSite(
            internal_runner,
            server.internal_address or None,
            server.internal_port,
            reuse_port=reuse_port or None,
        ).start()
        log.info("server API on http://%s:%d", server.internal_address, server.internal_port)
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
        for each in reversed(runners):
            await each.cleanup()


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None


def run(
    config: Config, *, ready: Callable[[int], None] | None = None, reuse_port: bool = False
) -> None:
    """Blocking entry point of ``hubbub serve`` (one worker process)."""
    hub = Hub(config, engine=engine_from_config(config))
    main = serve(
        hub,
        host=config.http_server.address,
        port=config.http_server.port,
        ready=ready,
        reuse_port=reuse_port,
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(main)
        return
    uvloop.run(main)
