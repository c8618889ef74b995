"""Real nats-server processes for tests: 127.0.0.1, a free port, stopped by PID.

Rule: every server started here is stopped by its own PID (SIGTERM, then
SIGKILL), never by name; ``restart()`` comes back on the same port. A missing
nats-server is a test failure, not a skip: scripts/test.sh installs it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.redis_fixtures import free_port, listens, stop_process


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return sock.recv(4) == b"INFO"
    except OSError:
        return False


class NatsProcess:
    """``store``: run JetStream (``-js``) keeping its streams in that directory, so a
    restart finds them again."""

    def __init__(self, port: int = 0, *, store: str = "") -> None:
        binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
        if binary is None:
            pytest.fail("nats-server is not installed: scripts/test.sh installs it")
        self.binary = binary
        self.port = port or free_port()
        #: A port chosen here may change until the server first listens; a restart keeps it.
        self._may_move = not port
        self.process: subprocess.Popen[bytes] | None = None
        self.store = store

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0, attempts_left: int = 3) -> None:
        jetstream = ["-js", "-sd", self.store] if self.store else []
        self.process = subprocess.Popen(
            [self.binary, "-a", "127.0.0.1", "-p", str(self.port), *jetstream],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not (_answers(self.port) and listens(self.process.pid, self.port)):
            if self.process.poll() is not None:
                if self._may_move and attempts_left > 0:  # the port was taken meanwhile
                    self.port = free_port()
                    return self.start(timeout, attempts_left - 1)
                raise RuntimeError(f"nats-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server on port {self.port} did not answer")
            time.sleep(0.02)
        self._may_move = False

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_nats(store: str = "") -> Iterator[NatsProcess]:
    server = NatsProcess(store=store)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsProcess]:
    with running_nats() as server:
        yield server


@pytest.fixture
def own_nats() -> Iterator[NatsProcess]:
    with running_nats() as server:
        yield server


@pytest.fixture
def jetstream_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsProcess]:
    """A nats-server of the test's own with JetStream, its store in a temp directory."""
    with running_nats(str(tmp_path_factory.mktemp("jetstream"))) as server:
        yield server
