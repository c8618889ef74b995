"""Real nats-server processes for tests: 127.0.0.1, a free port, stopped by PID.

Rule: every server started here is stopped by its own PID (SIGTERM, then
SIGKILL), never by name; ``restart()`` comes back on the same port. A missing
nats-server is a test failure, not a skip: scripts/test.sh installs it.

Each server writes its output (``-D``: connections opened and closed, errors;
not ``-V``, which traces every message) to its own log file, kept across a
restart; a server that exited by itself (not through ``stop``) says so in it.
``log_tails`` gives the log tails of the servers a test used: conftest attaches
them to a failing test's report.
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_fixtures import free_port, listens, stop_process

#: How many lines of a server's log a failing test's report shows.
TAIL_LINES = 60


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            return sock.recv(4) == b"INFO"
    except OSError:
        return False


class NatsProcess:
    """``store``: run JetStream (``-js``) keeping its streams in that directory, so a
    restart finds them again. ``log``: the file its output goes to (a temp file
    when not given)."""

    def __init__(
        self,
        port: int = 0,
        *,
        store: str = "",
        log: Path | None = None,
        extra: tuple[str, ...] = (),  # more nats-server arguments (--tls ...)
    ) -> None:
        self.extra = extra
        binary = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
        if binary is None:
            pytest.fail("nats-server is not installed: scripts/test.sh installs it")
        self.binary = binary
        self.port = port or free_port()
        #: A port chosen here may change until the server first listens; a restart keeps it.
        self._may_move = not port
        self.process: subprocess.Popen[bytes] | None = None
        self.store = store
        if log is None:
            handle, name = tempfile.mkstemp(prefix="hubbub-nats-", suffix=".log")
            with open(handle, "wb"):
                pass
            log = Path(name)
        self.log = log
        #: When it was first started (``time.time()``).
        self.started_at = 0.0
        _servers.append(self)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _note(self, text: str) -> None:
        """A line of the fixture's own in the server's log."""
        with self.log.open("a") as out:
            now = datetime.datetime.now().strftime("%Y/%m/%d %H:%M:%S.%f")
            out.write(f"[fixture] {now} {text}\n")

    def start(self, timeout: float = 10.0, attempts_left: int = 3) -> None:
        jetstream = ["-js", "-sd", self.store] if self.store else []
        if not self.started_at:
            self.started_at = time.time()
        self._note(f"starting nats-server on port {self.port}")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    *("-a", "127.0.0.1", "-p", str(self.port), "-D"),
                    *jetstream,
                    *self.extra,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while not (_answers(self.port) and listens(self.process.pid, self.port)):
            if self.process.poll() is not None:
                self._note(f"exited with {self.process.returncode} before it listened")
                if self._may_move and attempts_left > 0:  # the port was taken meanwhile
                    self.port = free_port()
                    return self.start(timeout, attempts_left - 1)
                raise RuntimeError(f"nats-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server on port {self.port} did not answer")
            time.sleep(0.02)
        self._may_move = False
        self._note(f"pid {self.process.pid} listens on port {self.port}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is not None:  # nobody here asked it to
            self._note(f"pid {process.pid} had exited by itself with {process.returncode}")
        stop_process(process)
        self._note(f"pid {process.pid} stopped")

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, lines: int = TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        state = "running" if self.process is not None and self.process.poll() is None else ""
        if self.process is not None and self.process.poll() is not None:
            state = f"exited with {self.process.returncode}, not stopped by the fixture"
        head = f"nats-server port {self.port} {state} log {self.log}\n"
        return head + "\n".join(text.splitlines()[-lines:])


#: Every NatsProcess made in this test process (a handful per run).
_servers: list[NatsProcess] = []


def log_tails(used: list[object], since: float) -> list[tuple[str, str]]:
    """(title, log tail) of the servers among ``used`` (a test's fixture values) and of
    those started since ``since`` (a test's own), each once."""
    servers = [value for value in used if isinstance(value, NatsProcess)]
    servers += [s for s in _servers if s.started_at >= since and s not in servers]
    return [(f"nats-server :{server.port} log (tail)", server.tail()) for server in servers]


@contextlib.contextmanager
def running_nats(store: str = "", log: Path | None = None) -> Iterator[NatsProcess]:
    server = NatsProcess(store=store, log=log)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _log_file(factory: pytest.TempPathFactory) -> Path:
    return factory.mktemp("nats") / "nats-server.log"


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsProcess]:
    with running_nats(log=_log_file(tmp_path_factory)) as server:
        yield server


@pytest.fixture
def own_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsProcess]:
    with running_nats(log=_log_file(tmp_path_factory)) as server:
        yield server


@pytest.fixture
def jetstream_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsProcess]:
    """A nats-server of the test's own with JetStream, its store in a temp directory."""
    store = str(tmp_path_factory.mktemp("jetstream"))
    with running_nats(store, log=_log_file(tmp_path_factory)) as server:
        yield server
