"""Real redis-server processes for tests: 127.0.0.1, a free port, a temp dir, no persistence.

Rule: every server started here is stopped by its own PID (SIGTERM, then
SIGKILL), never by name; a restarted server comes back empty on the same port,
as a Redis that lost its data.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """One redis-server; ``url`` to connect, ``restart()`` to lose its data."""

    def __init__(self, directory: Path, port: int = 0, extra: tuple[str, ...] = ()) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (scripts/test.sh installs it)")
        self.directory = directory
        self.port = port or free_port()
        self.extra = extra  # more redis-server arguments (--replicaof host port)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--loglevel",
                "warning",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not _ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL: the data is gone (no persistence)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()


@contextlib.contextmanager
def running_redis() -> Iterator[RedisProcess]:
    with tempfile.TemporaryDirectory(prefix="hubbub-redis-") as directory:
        server = RedisProcess(Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    """A redis-server shared by the session; tests flush it or use their own prefix."""
    with running_redis() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A redis-server of this test alone (it may be killed or restarted)."""
    with running_redis() as server:
        yield server
