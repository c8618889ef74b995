"""Real redis-server processes for tests: 127.0.0.1, a free port, a temp dir, no persistence.

Rule: every server started here is stopped by its own PID (SIGTERM, then
SIGKILL), never by name; a restarted server comes back empty on the same port,
as a Redis that lost its data.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

#: Ports handed out by ``free_port``, kept below the kernel's ephemeral range
#: (net.ipv4.ip_local_port_range starts at 32768): a server restarted on its port
#: must not find it taken by some connection's source port meanwhile, and a probe
#: of a port nobody listens on must not connect to itself.
_PORTS = range(20000, 32000)
_given: set[int] = set()
#: Its own generator: tests that seed the global ``random`` (hypothesis does) must
#: not make two test runs on one machine pick the same ports in the same order.
_chooser = random.Random()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, outside the ephemeral range."""
    for _ in range(200):
        port = _chooser.choice(_PORTS)
        if port in _given or not _bindable(port):
            continue
        _given.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


def free_port_pair(offset: int) -> int:
    """A free port ``p`` with ``p + offset`` free as well (a Redis Cluster node's bus
    port), both outside the ephemeral range: an outgoing connection may take an
    ephemeral port between this check and the server's bind."""
    for _ in range(200):
        port = _chooser.choice(range(_PORTS.start, _PORTS.stop - offset))
        pair = (port, port + offset)
        if _given.intersection(pair) or not all(_bindable(p) for p in pair):
            continue
        _given.update(pair)
        return port
    raise RuntimeError("no free port pair below the ephemeral range")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the listening socket of 127.0.0.1:``port``.

    A server that answers on its port may be another run's: ours exits when the
    port is taken, but may not have exited yet when the other one answers.
    """
    wanted = f"0100007F:{port:04X}"
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return False
    fds = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fds.iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in inodes:
                    return True
    return False


def connections_to(ports: Iterable[int]) -> list[str]:
    """This process's TCP sockets to 127.0.0.1 on one of ``ports`` (any state),
    as ``"local port -> peer port (state)"``: what a closed client left open."""
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for fd in Path("/proc/self/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    peers = {f"0100007F:{port:04X}": port for port in ports}
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2] in peers and fields[9] in inodes:
                local = int(fields[1].rpartition(":")[2], 16)
                found.append(f"{local} -> {peers[fields[2]]} (state {fields[3]})")
    return found


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a server we started, SIGKILL it if it is still there 5 s later."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


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
        #: A port chosen here may change until the server first listens; a restart keeps it.
        self._may_move = not port
        self.extra = extra  # more redis-server arguments (--replicaof host port)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0, attempts_left: int = 3) -> None:
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
        while not (_ping(self.port) and listens(self.process.pid, self.port)):
            if self.process.poll() is not None:
                if self._may_move and attempts_left > 0:  # the port was taken meanwhile
                    self.port = free_port()
                    return self.start(timeout, attempts_left - 1)
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.02)
        self._may_move = False

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)

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
