"""Run a hub as a standalone server until SIGTERM or SIGINT.

Rule: shutdown is graceful: stop accepting, disconnect every client with 3001
(they reconnect, to another node if there is one), let background work
finish, then exit. uvloop is used when available. With ``http_server.tls``
both ports serve TLS (the internal one its own ``internal_tls`` if enabled,
none with ``tls_external``), through the same listener and WebSocket path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Callable

from aiohttp import web

from hubbub.config.model import Config, HttpServerConfig
from hubbub.config.tls import server_context
from hubbub.engines.factory import engine_from_config, map_engine_from_config
from hubbub.hub.hub import Hub
from hubbub.server.app import create_app, create_internal_app, runner_options
from hubbub.server.front import Listener
from hubbub.server.keys import ENDPOINT_KEY
from hubbub.server.wsconn import CLOSE_TIMEOUT

log = logging.getLogger("hubbub.server")


class Serving:
    """A hub's listeners while they run: the public port, and the internal one if set."""

    def __init__(
        self, listener: Listener, runners: list[web.AppRunner], port: int, *, tls: bool = False
    ) -> None:
        self.listener = listener
        self.runners = runners  # cleaned up in reverse: the public app (which owns the hub) first
        self.port = port  # the bound public port
        self.scheme = "https" if tls else "http"

    async def stop(self) -> None:
        """Stop accepting, disconnect every client with 3001, wait for the closes."""
        self.listener.stop_accepting()
        for runner in reversed(self.runners):
            await runner.cleanup()
        await self.listener.wait_closed(CLOSE_TIMEOUT)


async def start(hub: Hub, *, host: str, port: int, reuse_port: bool = False) -> Serving:
    """Start serving ``hub`` on ``host:port`` (0: any free port); return at once.

    With ``http_server.internal_port`` the API gets its own listener on
    ``http_server.internal_address``, and the public port does not serve it.
    A bad TLS certificate or key raises ``ConfigError`` naming its key.
    """
    server = hub.config.http_server
    public_tls, internal_tls = tls_contexts(server)
    options = runner_options(server)
    internal = server.internal_port > 0
    app = create_app(hub, api=not internal)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0, **options)
    await runner.setup()
    assert runner.server is not None  # set by setup()
    runners = [runner]
    listener = Listener(app[ENDPOINT_KEY], runner.server)
    bound = await listener.start(host or None, port, reuse_port=reuse_port, ssl_context=public_tls)
    if internal:
        internal_runner = web.AppRunner(create_internal_app(hub), handle_signals=False, **options)
        await internal_runner.setup()
        runners.insert(0, internal_runner)  # cleaned up last, after the hub is closed
        await web.TCPSite(
            internal_runner,
            server.internal_address or None,
            server.internal_port,
            reuse_port=reuse_port or None,
            ssl_context=internal_tls,
        ).start()
        scheme = "https" if internal_tls else "http"
        log.info("server API on %s://%s:%d", scheme, server.internal_address, server.internal_port)
    return Serving(listener, runners, bound, tls=public_tls is not None)


def tls_contexts(server: HttpServerConfig) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """The public and the internal port's TLS contexts (None: plain), as Centrifugo
    chooses them: ``internal_tls`` when enabled, else ``tls`` unless ``tls_external``."""
    public = server_context(server.tls, "http_server.tls") if server.tls.enabled else None
    if server.internal_tls.enabled:
        return public, server_context(server.internal_tls, "http_server.internal_tls")
    return public, None if server.tls_external else public


async def serve(
    hub: Hub,
    *,
    host: str,
    port: int,
    ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve ``hub`` on ``host:port`` until ``stop`` is set or a signal arrives."""
    serving = await start(hub, host=host, port=port, reuse_port=reuse_port)
    log.info(
        "hubbub listening on %s://%s:%d (node %s)",
        serving.scheme,
        host or "0.0.0.0",
        serving.port,
        hub.node_id,
    )
    if ready is not None:
        ready(serving.port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("shutting down: disconnecting clients with 3001")
    finally:
        await serving.stop()


def run(
    config: Config,
    *,
    ready: Callable[[int], None] | None = None,
    reuse_port: bool = False,
    setup: Callable[[Hub], None] | None = None,
) -> None:
    """Blocking entry point of ``hubbub serve`` (one worker process); ``setup`` registers
    hooks on the hub before it serves."""
    hub = Hub(config, engine=engine_from_config(config), map_engine=map_engine_from_config(config))
    if setup is not None:
        setup(hub)
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
