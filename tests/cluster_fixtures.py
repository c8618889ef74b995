"""Several hubbub nodes as real processes on one Redis, and nginx in front of them.

Rule: every process started here (``hubbub serve``, nginx) is stopped by its
own PID; every wait is bounded. nginx missing is a test failure, not a skip:
scripts/test.sh installs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import API_KEY, DEFAULT_CONFIG, merge
from tests.redis_fixtures import free_port


async def wait_port(
    port: int, within: float = 15.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(
                    f"process {process.pid} exited with {process.returncode}"
                ) from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


async def wait_ready(
    url: str, process: subprocess.Popen[bytes] | None = None, within: float = 15.0
) -> None:
    """Wait until ``GET url/ready`` answers 200: the node's engine (and broker) reachable."""
    deadline = time.monotonic() + within
    status: int | str = "no answer"
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(
                    f"{url}/ready", timeout=aiohttp.ClientTimeout(total=2)
                ) as response:
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = repr(exc)
            if status == 200:
                return
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"process {process.pid} exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url}/ready: {status} after {within:g} s")
            await asyncio.sleep(0.05)


class Node:
    """``python -m hubbub.cli.main serve`` on its own port, with the Redis engine."""

    def __init__(
        self,
        directory: Path,
        name: str,
        redis_addresses: Sequence[str],
        prefix: str,
        *,
        cluster_seeds: str = "",
        nats_url: str = "",
        config: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        redis: dict[str, Any] = {"address": list(redis_addresses), "prefix": prefix}
        if cluster_seeds:  # a Redis Cluster: engine.redis.cluster_address
            redis = {"cluster_address": [cluster_seeds], "prefix": prefix}
        settings = merge(
            DEFAULT_CONFIG,
            {
                "http_server": {"port": self.port},
                "log": {"level": "warn"},
                "engine": {"type": "redis", "redis": redis},
            },
        )
        if nats_url:  # the NATS broker in front of the Redis engine
            settings["broker"] = {
                "enabled": True,
                "type": "nats",
                "nats": {"url": nats_url, "prefix": prefix},
            }
        if config:
            settings = merge(settings, config)  # the caller's keys win
        self.config_path = directory / f"{name}.json"
        self.config_path.write_text(json.dumps(settings))
        self.log_path = directory / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    #: Extra ``hubbub serve`` arguments (a subclass may add ``--workers``).
    serve_args: tuple[str, ...] = ()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, *, ready: bool = True) -> None:
        """Launch and wait until it listens and, with ``ready``, until ``/ready`` answers
        200. A node serves before its backends answer (a NATS broker connects in the
        background): until then a publication gets error 100, by design."""
        self.launch()
        await wait_port(self.port, process=self.process)
        if ready:
            await wait_ready(self.http_url, self.process)

    def launch(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hubbub.cli.main",
                    "serve",
                    "--config",
                    str(self.config_path),
                    *self.serve_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, no cleanup in Redis."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def api(self, method: str, payload: dict[str, Any]) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{self.port}/api/{method}",
                json=payload,
                headers={"X-API-Key": API_KEY},
                timeout=aiohttp.ClientTimeout(total=5),
            ) as response,
        ):
            body: dict[str, Any] = await response.json()
        if "error" in body:
            raise AssertionError(f"{self.name} /api/{method}: {body['error']}")
        result: dict[str, Any] = body.get("result", {})
        return result


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if found is None:
        pytest.fail("nginx is not installed: scripts/test.sh installs it (apt-get install nginx)")
    return found


NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    upstream hubbub {{
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://hubbub;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


class Nginx:
    """nginx in the foreground (``daemon off``), round robin over ``ports``."""

    def __init__(self, directory: Path, ports: Sequence[int]) -> None:
        self.binary = nginx_binary()
        self.directory = directory
        self.port = free_port()
        servers = "\n".join(
            f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in ports
        )
        self.conf = directory / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(dir=directory, port=self.port, servers=servers))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    async def start(self) -> None:
        self.launch()
        await wait_port(self.port, process=self.process)

    def launch(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "-c",
                str(self.conf),
                "-p",
                str(self.directory),
                "-e",
                str(self.directory / "error.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGQUIT)  # graceful for nginx
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
