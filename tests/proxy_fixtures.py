"""Real proxy backends for the tests: aiohttp, FastAPI (uvicorn) and gRPC processes.

``start_backend(kind)`` runs ``tests/proxy_backends/<kind>_app.py`` as a child
process on 127.0.0.1, port 0, and returns a ``Backend`` that knows its
endpoints and can list the requests the backend received. ``proxy_config``
turns a backend into hubbub configuration: every event proxied, channel events
in the namespace ``proxied``, forwarded and static headers set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import selectors
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).parents[1]
KINDS = ("aiohttp", "fastapi", "grpc")
START_TIMEOUT = 30.0  # the gRPC backend generates its stubs first

#: The namespace whose channel events go to the backend.
PROXIED_NAMESPACE: dict[str, Any] = {
    "name": "proxied",
    "presence": True,
    "join_leave": True,
    "force_push_join_leave": True,
    "history_size": 100,
    "history_ttl": "300s",
    "force_recovery": True,
    "subscribe_proxy_enabled": True,
    "publish_proxy_enabled": True,
    "sub_refresh_proxy_enabled": True,
    "allow_history_for_subscriber": True,
    "allow_presence_for_subscriber": True,
}


@dataclass
class Backend:
    kind: str
    process: subprocess.Popen[bytes]
    port: int
    control: int  # the HTTP port serving GET /requests
    tls_ports: dict[str, int] = field(default_factory=dict)  # started with --tls: see listeners.py

    def tls_endpoint(self, listener: str, event: str, host: str = "127.0.0.1") -> str:
        """Where hubbub sends ``event`` over TLS at the backend's ``listener``."""
        port = self.tls_ports[listener]
        if self.kind == "grpc":
            return f"grpc://{host}:{port}"
        return f"https://{host}:{port}/{event}"

    def endpoint(self, event: str, mode: str = "") -> str:
        """Where hubbub sends ``event`` (``mode``: a failure the HTTP backends act out)."""
        if self.kind == "grpc":
            return f"grpc://127.0.0.1:{self.port}"
        prefix = f"/{mode}" if mode else ""
        return f"http://127.0.0.1:{self.port}{prefix}/{event}"

    async def requests(self, event: str | None = None) -> list[dict[str, Any]]:
        """What the backend received (each: event, request, headers), oldest first."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{self.control}/requests") as response,
        ):
            entries: list[dict[str, Any]] = await response.json()
        return [e for e in entries if event is None or e["event"] == event]

    async def wait_requests(self, event: str, count: int, within: float = 10.0) -> list[Any]:
        """At least ``count`` requests of ``event``, waiting for them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            found = await self.requests(event)
            if len(found) >= count:
                return found
            if loop.time() > deadline:
                raise AssertionError(f"{len(found)} {event} requests, wanted {count}: {found}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        """Kill the backend (by its PID: only this process) and wait for it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def start_backend(kind: str, tls: Path | None = None) -> Backend:
    """Start a backend process; return once it printed its ports (synchronous, so
    module-scoped fixtures can share one backend between tests). ``tls``: a
    tests/tls_fixtures.py directory; the backend then serves TLS ports too."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            f"tests.proxy_backends.{kind}_app",
            *(("--tls", str(tls)) if tls is not None else ()),
        ],
        cwd=ROOT,
        # grpcio writes failed TLS handshakes to stderr at INFO: tests that make them
        # on purpose check that hubbub's own process does not.
        env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        stdout=subprocess.PIPE,
        stderr=None,  # inherited: pytest shows what a backend printed when a test fails
    )
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(START_TIMEOUT)
    line = process.stdout.readline() if ready else b""
    try:
        ports = json.loads(line)
    except ValueError:
        process.kill()
        process.wait(10)
        raise AssertionError(f"{kind} backend did not start (printed {line!r})") from None
    return Backend(
        kind, process, ports["port"], ports.get("control", ports["port"]), ports.get("tls", {})
    )


@contextlib.contextmanager
def backend(kind: str) -> Iterator[Backend]:
    running = start_backend(kind)
    try:
        yield running
    finally:
        running.stop()


def proxy(backend: Backend, event: str, **options: Any) -> dict[str, Any]:
    """A proxy object for ``event`` at ``backend``."""
    return {
        "endpoint": backend.endpoint(event, options.pop("mode", "")),
        "timeout": "2s",
        **options,
    }


def proxy_config(backend: Backend, **client_extra: Any) -> dict[str, Any]:
    """Configuration with every event proxied to ``backend`` (channel events in ``proxied``)."""
    headers = {"http_headers": ["Cookie", "X-Test"]}
    static = {"http": {"static_headers": {"X-Static": "from-config", "X-Test": "static"}}}
    return {
        "client": {
            "allow_anonymous_connect_without_token": False,
            "proxy": {
                "connect": {
                    "enabled": True,
                    **proxy(backend, "connect"),
                    **headers,
                    **static,
                    # per-call gRPC metadata (ignored by HTTP proxies)
                    "grpc": {"credentials_key": "x-proxy-key", "credentials_value": "k1"},
                },
                "refresh": {
                    "enabled": True,
                    **proxy(backend, "refresh"),
                    "include_connection_meta": True,
                },
            },
            **client_extra,
        },
        "channel": {
            "proxy": {
                "subscribe": {
                    **proxy(backend, "subscribe"),
                    **headers,
                    "include_connection_meta": True,
                },
                "publish": proxy(backend, "publish"),
                "sub_refresh": proxy(backend, "sub_refresh"),
            },
            "namespaces": [PROXIED_NAMESPACE],
        },
        "rpc": {
            "proxy": {**proxy(backend, "rpc"), "include_connection_meta": True},
            "without_namespace": {"proxy_enabled": True},
        },
    }
