"""Run a hub as a standalone server until SIGTERM or SIGINT.

Rule: shutdown is graceful but short: stop accepting, disconnect every client
with 3001 (they reconnect, to another node if there is one), let background
work finish, then exit. The clients' answering close frames are waited for
only ``shutdown.close_timeout`` (0 by default: a restarted node can listen
only once this one has exited, so its clients would wait on it), and the
whole shutdown at most ``shutdown.timeout``. uvloop is used when available.
With ``http_server.tls`` both ports serve TLS (the internal one its own
``internal_tls`` if enabled, none with ``tls_external``), through the same
listener and WebSocket path. Start-up: ``hubbub serve`` binds the public port
first (server/early.py), the hub starts, then the listener accepts; the public
port's aiohttp application is made by the first request that needs it
(``PublicHttp``), so a restarted node answers its WebSocket clients without
loading aiohttp first.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from hubbub.config.model import Config, HttpServerConfig
from hubbub.config.tls import server_context
from hubbub.engines.factory import engine_from_config, map_engine_from_config
from hubbub.hub.hub import Hub
from hubbub.server.consuming import start_consumers, stop_consumers
from hubbub.server.front import Listener
from hubbub.server.websocket import WebSocketEndpoint
from hubbub.server.wsconn import CLOSE_TIMEOUT

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("hubbub.server")


class PublicHttp:
    """The public port's aiohttp application (API, demo page, /health, streams), made
    when the first request that is not a WebSocket upgrade arrives: a node starts
    (and a restarted node takes its clients back) without loading aiohttp.

    It shares the listener's WebSocket endpoint and owns the hub's lifecycle like
    ``create_app``'s: once made, its shutdown closes the hub.
    """

    def __init__(self, hub: Hub, endpoint: WebSocketEndpoint, *, api: bool) -> None:
        self.hub = hub
        self.endpoint = endpoint
        self.api = api
        self._runner: web.AppRunner | None = None
        self._factory: web.Server | None = None  # aiohttp's protocol factory, once made
        self._loading: asyncio.Task[None] | None = None
        self._callbacks: list[Callable[[bool], None]] = []

    def protocol(self) -> asyncio.Protocol | None:
        return None if self._factory is None else self._factory()

    def when_loaded(self, callback: Callable[[bool], None]) -> None:
        self._callbacks.append(callback)
        if self._loading is None:
            self._loading = asyncio.get_running_loop().create_task(self._load())

    async def _load(self) -> None:
        ok = False
        try:
            from aiohttp import web

            from hubbub.server.app import create_app, runner_options

            app = create_app(self.hub, api=self.api, endpoint=self.endpoint)
            options = runner_options(self.hub.config.http_server)
            runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=5.0, **options)
            await runner.setup()  # its start_hub finds the hub started: nothing to do
            assert runner.server is not None  # set by setup()
            self._runner, self._factory, ok = runner, runner.server, True
        except Exception:
            log.exception("the HTTP application failed to start")
            self._loading = None  # the next request tries again
        finally:
            callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                callback(ok)

    async def close(self) -> bool:
        """Shut the application down if it was made (that closes the hub): True then."""
        if self._loading is not None:
            await self._loading
        if self._runner is None:
            return False
        await self._runner.cleanup()
        return True


class Serving:
    """A hub's listeners while they run: the public port, and the internal one if set."""

    def __init__(
        self,
        listener: Listener,
        http: PublicHttp,
        port: int,
        *,
        internal: web.AppRunner | None = None,
        tls: bool = False,
    ) -> None:
        self.listener = listener
        self.http = http
        self.internal = internal  # cleaned up last, after the hub is closed
        self.port = port  # the bound public port
        self.scheme = "https" if tls else "http"

    async def stop(self) -> None:
        """Stop accepting, disconnect every client with 3001 and finish the hub's work
        (``shutdown.*``: how long for the clients' answers, and for all of it)."""
        self.listener.stop_accepting()
        endpoint = self.listener.endpoint
        limit = endpoint.hub.config.shutdown.timeout
        try:
            # Past the timeout the connections left are dropped (listener.wait_closed):
            # their clients reconnect all the same, without the 3001 frame.
            async with asyncio.timeout(limit):
                await stop_consumers(endpoint.hub)  # no consumed command meets a closing hub
                if not await self.http.close():  # no application was made: close here
                    await endpoint.close_hub()
                if self.internal is not None:
                    await self.internal.cleanup()
        except TimeoutError:
            log.warning("shutdown.timeout (%gs) passed: stopping with work left", limit)
        if not endpoint.hub.sockets_left_to_exit:
            await self.listener.wait_closed(CLOSE_TIMEOUT)


async def start(
    hub: Hub,
    *,
    host: str,
    port: int,
    reuse_port: bool = False,
    sock: socket.socket | None = None,
) -> Serving:
    """Start serving ``hub`` on ``host:port`` (0: any free port), or on ``sock``
    when the port is bound already (server/early.py); return at once.

    With ``http_server.internal_port`` the API gets its own listener on
    ``http_server.internal_address``, and the public port does not serve it.
    A bad TLS certificate or key raises ``ConfigError`` naming its key.
    """
    server = hub.config.http_server
    public_tls, internal_tls = tls_contexts(server)
    internal = server.internal_port > 0
    endpoint = WebSocketEndpoint(hub)
    try:
        await hub.start()
        await start_consumers(hub)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    http = PublicHttp(hub, endpoint, api=not internal)
    listener = Listener(endpoint, http)
    try:
        bound = await listener.start(
            host or None, port, reuse_port=reuse_port, ssl_context=public_tls, sock=sock
        )
        internal_runner = await _start_internal(hub, internal_tls, reuse_port) if internal else None
    except BaseException:
        listener.stop_accepting()
        await stop_consumers(hub)
        await hub.close()
        raise
    return Serving(listener, http, bound, internal=internal_runner, tls=public_tls is not None)


async def _start_internal(
    hub: Hub, internal_tls: ssl.SSLContext | None, reuse_port: bool
) -> web.AppRunner:
    """The internal port's application (the API and /health) on its own aiohttp site."""
    from aiohttp import web

    from hubbub.server.app import create_internal_app, runner_options

    server = hub.config.http_server
    options = runner_options(server)
    runner = web.AppRunner(create_internal_app(hub), handle_signals=False, **options)
    await runner.setup()
    await web.TCPSite(
        runner,
        server.internal_address or None,
        server.internal_port,
        reuse_port=reuse_port or None,
        ssl_context=internal_tls,
    ).start()
    scheme = "https" if internal_tls else "http"
    log.info("server API on %s://%s:%d", scheme, server.internal_address, server.internal_port)
    return runner


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
    sock: socket.socket | None = None,
) -> None:
    """Serve ``hub`` on ``host:port`` (or ``sock``, listening already) until ``stop``
    is set or a signal arrives."""
    serving = await start(hub, host=host, port=port, reuse_port=reuse_port, sock=sock)
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
    sock: socket.socket | None = None,
    exit_after: bool = False,
) -> None:
    """Blocking entry point of ``hubbub serve`` (one worker process); ``setup`` registers
    hooks on the hub before it serves; ``sock``: the public port, listening already
    (server/early.py); ``exit_after``: the process ends when this returns (the
    shutdown leaves the sockets to the exit: ``Hub.exit_after_close``)."""
    hub = Hub(config, engine=engine_from_config(config), map_engine=map_engine_from_config(config))
    hub.exit_after_close = exit_after
    if setup is not None:
        setup(hub)

    def started(port: int) -> None:
        # What start-up made (modules, the configuration, the hub) stays for the
        # process's life: out of the cyclic collector's sight, a storm of connections
        # does not pay for traversing it again (5,000 connects: a full collection of
        # ~30 ms less). Garbage in cycles made before this point is kept, once.
        gc.freeze()
        if ready is not None:
            ready(port)

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(transport_errors_in_one_line)
        await serve(
            hub,
            host=config.http_server.address,
            port=config.http_server.port,
            ready=started,
            reuse_port=reuse_port,
            sock=sock,
        )
        if exit_after:
            exit_now()  # before the loop's teardown, which would close every socket

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(main())
        return
    uvloop.run(main())


#: What asyncio and uvloop say when a connection's transport fails under them (a
#: peer closing during a TLS handshake or shutdown, a reset): an outage of that one
#: connection, told in one line, not a traceback.
TRANSPORT_FAILURES = (
    "Fatal error on SSL",
    "SSL error in",
    "SSL handshake failed",
    "Fatal read error",
    "Fatal write error",
    "Fatal error on transport",
)


def transport_errors_in_one_line(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The serving loop's exception handler: a failed connection transport (an
    OSError, an SSL error, or uvloop's RuntimeError inside its SSL protocol) is one
    warning line naming the error; anything else goes to asyncio's default handler,
    traceback included (a bug must be seen)."""
    message = str(context.get("message", ""))
    exc = context.get("exception")
    if message.startswith(TRANSPORT_FAILURES) and isinstance(
        exc, (OSError, RuntimeError) if "SSL" in message else OSError
    ):
        log.warning("connection dropped: %s: %s: %s", message, type(exc).__name__, exc)
        return
    loop.default_exception_handler(context)


def exit_now() -> NoReturn:
    """End a server process that has stopped cleanly, without the loop's or the
    interpreter's teardown: with 5,000 clients, closing their sockets one by one in
    the loop took ~50 ms and freeing their objects ~50 ms of CPU, and a restarted
    node can listen only once this one has exited (the kernel closes the sockets
    at the exit). Logs and stdout are flushed first."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
