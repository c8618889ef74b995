"""Shared fixtures: a real hubbub server on 127.0.0.1, port 0, in the test's event loop.

``start_server(config_data)`` starts the server exactly as ``hubbub serve``
does (``hubbub.server.run.start``: hubbub's own WebSocket listener in front of
the aiohttp app) with configuration data passed through ``load_config``, so
tests exercise the real validation, routes and sockets. ``embedded=True``
serves the same hub the way an application embedding hubbub does: the aiohttp
app alone (``create_app`` on an aiohttp site; hubbub takes each WebSocket over
from aiohttp). ``tls=True`` serves it over TLS with a certificate of a CA made
for the test run (``tls_files``). The defaults give an API key, an HMAC secret
and a permissive ``chat`` namespace with history, presence, join/leave and
recovery. ``door`` runs a test once per way in: serve, attach, tls, attach-tls.
"""

from __future__ import annotations

import asyncio
import copy
import ssl
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvloop
from aiohttp import web

from hubbub.auth.tokens import make_token
from hubbub.config.loader import load_config
from hubbub.config.tls import server_context
from hubbub.hub.hub import Hub
from hubbub.server.app import create_app, runner_options
from hubbub.server.run import start
from tests.doors import Door
from tests.nats_fixtures import log_tails
from tests.tls_fixtures import TlsFiles, make_tls_files

# The engine conformance suite's fixtures (``engine``, ``clock``, ``events``), shared
# by its modules test_engine_{conformance,presence,control,memory_sweep}.py.
pytest_plugins = ("tests.engine_fixtures",)

API_KEY = "test-api-key"
SECRET = "test-hmac-secret-key-of-enough-length"

CHAT_NAMESPACE: dict[str, Any] = {
    "name": "chat",
    "presence": True,
    "join_leave": True,
    "force_push_join_leave": True,
    "history_size": 1000,
    "history_ttl": "300s",
    "force_recovery": True,
    "allow_subscribe_for_client": True,
    "allow_subscribe_for_anonymous": True,
    "allow_publish_for_subscriber": True,
    "allow_publish_for_client": True,
    "allow_publish_for_anonymous": True,
    "allow_history_for_subscriber": True,
    "allow_history_for_client": True,
    "allow_presence_for_subscriber": True,
    "allow_presence_for_client": True,
    # Join/leave pushes need presence permission; most tests connect anonymously.
    "allow_presence_for_anonymous": True,
}

DEFAULT_CONFIG: dict[str, Any] = {
    "http_server": {"address": "127.0.0.1", "port": 0},
    "demo": {"enabled": True},
    "health": {"enabled": True},
    "http_api": {"key": API_KEY},
    "client": {
        "token": {"hmac_secret_key": SECRET},
        "allow_anonymous_connect_without_token": True,
    },
    "channel": {
        "without_namespace": {
            "allow_subscribe_for_client": True,
            "allow_subscribe_for_anonymous": True,
            "allow_publish_for_client": True,
            "allow_publish_for_anonymous": True,
        },
        "namespaces": [CHAT_NAMESPACE],
    },
}


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``extra`` into a copy of ``base`` (lists are replaced)."""
    result = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


@dataclass
class RunningServer:
    hub: Hub
    stop: Callable[[], Awaitable[None]]
    port: int

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/connection/websocket"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.http_url}/api"

    api_key: str = API_KEY
    secret: str = SECRET
    tls: ssl.SSLContext | None = None  # a client context trusting the server, when TLS

    @property
    def ws_scheme(self) -> str:
        return "wss" if self.tls else "ws"

    def token(self, user: str, *, ttl: float | None = 3600, **claims: Any) -> str:
        return make_token(self.secret, user, ttl=ttl, extra=claims or None)


ServerFactory = Callable[..., Awaitable[RunningServer]]


class ClosingLoop(uvloop.Loop):  # type: ignore[misc]  # uvloop ships no stubs
    """uvloop, the loop ``hubbub serve`` runs on, whose ``close()`` cannot hang.

    uvloop's ``close()`` closes every handle still open (a transport a test or
    hubbub left open), warning first (ResourceWarning, "unclosed resource").
    Under the tests' warnings-as-errors that warning raised inside uvloop's
    close callback, which then skipped closing the handle; ``close()`` went on
    to wait for the handle in epoll for ever (a whole run hung after a Redis
    Cluster failover test that left connections open; no timeout can interrupt
    it). So uvloop's warnings are recorded while it closes, and raised once it
    has: the test errors naming what was left open, and the run goes on.
    """

    def close(self) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # recorded: none may raise inside uvloop
            super().close()
        unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
        for warning in caught:
            if not issubclass(warning.category, ResourceWarning):
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
        if unclosed:
            warnings.warn(
                f"the test's loop closed {len(unclosed)} handle(s) left open: "
                + "; ".join(unclosed),
                ResourceWarning,
                stacklevel=2,
            )


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Tests run on uvloop (``ClosingLoop``), the loop ``hubbub serve`` runs on."""
    return {"uvloop": ClosingLoop}


_test_began = pytest.StashKey[float]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test's report shows the log tail of each nats-server it used."""
    report: pytest.TestReport = yield  # type: ignore[misc]
    if call.when == "setup":
        item.stash[_test_began] = call.start
    if report.failed:
        used = list(getattr(item, "funcargs", {}).values())  # its fixtures, also indirect
        for title, text in log_tails(used, item.stash.get(_test_began, call.start)):
            report.sections.append((title, text))
    return report  # type: ignore[return-value]


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1, made once per test run."""
    return make_tls_files(tmp_path_factory.mktemp("tls"))


def tls_config(files: TlsFiles) -> dict[str, Any]:
    return {
        "http_server": {
            "tls": {"enabled": True, "cert_pem": str(files.cert), "key_pem": str(files.key)}
        }
    }


@pytest.fixture
async def start_server(tls_files: TlsFiles) -> AsyncIterator[ServerFactory]:
    """Factory: ``await start_server({"client": {...}}, setup=lambda hub: ...)``."""
    running: list[RunningServer] = []

    async def factory(
        extra: dict[str, Any] | None = None,
        *,
        setup: Callable[[Hub], None] | None = None,
        replace: bool = False,
        embedded: bool = False,
        tls: bool = False,
    ) -> RunningServer:
        data = extra if replace and extra is not None else merge(DEFAULT_CONFIG, extra or {})
        if tls:
            data = merge(data, tls_config(tls_files))
        config = load_config(None, env={}, base=data).config
        hub = Hub(config)
        if setup is not None:
            setup(hub)
        if embedded:
            runner = web.AppRunner(
                create_app(hub), handle_signals=False, **runner_options(config.http_server)
            )
            await runner.setup()
            context = server_context(config.http_server.tls, "http_server.tls") if tls else None
            await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
            server = RunningServer(
                hub=hub,
                stop=runner.cleanup,
                port=runner.addresses[0][1],
                tls=tls_files.client_context() if tls else None,
            )
        else:
            serving = await start(hub, host="127.0.0.1", port=0)
            server = RunningServer(
                hub=hub,
                stop=serving.stop,
                port=serving.port,
                tls=tls_files.client_context() if tls else None,
            )
        running.append(server)
        return server

    yield factory
    for server in running:
        await server.stop()


@pytest.fixture
async def server(start_server: ServerFactory) -> RunningServer:
    """A server with the default test configuration."""
    return await start_server()


@pytest.fixture(params=["serve", "attach", "tls", "attach-tls"])
def door(request: pytest.FixtureRequest, start_server: ServerFactory) -> Door:
    """Each way into hubbub's one WebSocket implementation, in turn."""
    return Door(request.param, start_server)
