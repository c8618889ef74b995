"""A real Redis Sentinel setup for tests: a master, its replica and a sentinel on 127.0.0.1.

Rule: every process (redis-server as master and as replica, redis-server
--sentinel) runs in its own temp dir on a free port and is stopped by its own
PID; the setup is used only once the replica is in sync and the sentinel
knows the replica (it could not fail over to it otherwise). The sentinel's
quorum is 1 and it declares a master down after 1 s, so a killed master is
replaced within a few seconds. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_cluster_fixtures import redis_cli
from tests.redis_fixtures import RedisProcess, _ping, free_port, stop_process

MASTER_NAME = "hubbub-test"  # + a suffix per setup (see SentinelSetup.master_name)


class SentinelProcess:
    def __init__(
        self,
        directory: Path,
        master_port: int,
        master_name: str,
        extra: tuple[str, ...] = (),  # more sentinel.conf lines (tls-port ...)
    ) -> None:
        self.extra = extra
        self.port = free_port()
        self.master_name = master_name
        self.directory = directory / f"sentinel-{self.port}"
        self.directory.mkdir()
        self.master_port = master_port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        conf = self.directory / "sentinel.conf"  # the sentinel rewrites it: its own copy
        conf.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    f"dir {self.directory}",
                    f"sentinel monitor {self.master_name} 127.0.0.1 {self.master_port} 1",
                    f"sentinel down-after-milliseconds {self.master_name} 1000",
                    f"sentinel failover-timeout {self.master_name} 5000",
                    "loglevel warning",
                    *self.extra,
                    "",
                ]
            )
        )
        self.process = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _ping(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis sentinel exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis sentinel {self.port} did not answer PING")
            time.sleep(0.02)

    def cli(self, *args: str) -> str:
        return redis_cli("-p", str(self.port), *args)

    def master_port_now(self) -> int:
        """The port of the master the sentinel names now."""
        return int(self.cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name).split()[1])

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)


class SentinelSetup:
    """A master, one replica and one sentinel; ``spec`` is the ``sentinel_address`` entry."""

    def __init__(self, directory: Path) -> None:
        # A name of its own: sentinels of other setups (other tests, other runs on
        # the machine) could otherwise take a reused port for their master of that name.
        self.master_name = f"{MASTER_NAME}-{uuid.uuid4().hex[:8]}"
        self.master = RedisProcess(directory / "master")
        self.replica = RedisProcess(
            directory / "replica", extra=("--replicaof", "127.0.0.1", str(self.master.port))
        )
        self.sentinel = SentinelProcess(directory, self.master.port, self.master_name)
        self.servers = [self.master, self.replica]

    @property
    def spec(self) -> str:
        return self.sentinel.address

    def start(self) -> None:
        for server in self.servers:
            server.directory.mkdir()
            server.start()
        self.sentinel.start()
        self.wait_ready(self.master, self.replica)

    def wait_ready(self, master: RedisProcess, replica: RedisProcess, within: float = 30) -> None:
        """Until ``replica`` is in sync with ``master`` and the sentinel knows both."""
        deadline = time.monotonic() + within
        while "master_link_status:up" not in redis_cli("-p", str(replica.port), "INFO"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {replica.port} not in sync with {master.port}")
            time.sleep(0.05)
        while True:
            listed = self.sentinel.cli("SENTINEL", "REPLICAS", self.master_name)
            if (
                self.sentinel.master_port_now() == master.port
                and str(replica.port) in listed
                and "s_down" not in listed
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sentinel does not know replica {replica.port}")
            time.sleep(0.05)

    def wait_promoted(self, server: RedisProcess, within: float = 30) -> None:
        """Until the sentinel names ``server`` as the master and it acts as one."""
        deadline = time.monotonic() + within
        while not (
            self.sentinel.master_port_now() == server.port
            and redis_cli("-p", str(server.port), "ROLE").split()[0] == "master"
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.port} was not promoted")
            time.sleep(0.1)

    def wait_replicated(self, within: float = 10.0) -> None:
        """Until the replica has everything the master wrote."""
        offsets = {}
        deadline = time.monotonic() + within
        while True:
            for server, field in (
                (self.master, "master_repl_offset"),
                (self.replica, "slave_repl_offset"),
            ):
                for line in redis_cli("-p", str(server.port), "INFO", "replication").splitlines():
                    if line.startswith(field + ":"):
                        offsets[field] = int(line.partition(":")[2])
            if offsets["slave_repl_offset"] >= offsets["master_repl_offset"]:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not catch up")
            time.sleep(0.05)

    def cut_off_replica(self) -> None:
        """Stop the replica (SIGSTOP) once in sync, and close its replication link:
        what the master acknowledges from now on never reaches it."""
        self.wait_replicated()
        assert self.replica.process is not None
        # send_signal, not os.kill(pid): nothing goes to a reaped process's PID.
        self.replica.process.send_signal(signal.SIGSTOP)
        redis_cli("-p", str(self.master.port), "CLIENT", "KILL", "TYPE", "replica")

    def resume_replica(self) -> None:
        if self.replica.process is not None:
            self.replica.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume_replica()
        self.sentinel.stop()
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.stop()


@contextlib.contextmanager
def running_sentinel() -> Iterator[SentinelSetup]:
    with tempfile.TemporaryDirectory(prefix="hubbub-sentinel-") as directory:
        setup = SentinelSetup(Path(directory))
        try:
            setup.start()
            yield setup
        finally:
            setup.stop()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[SentinelSetup]:
    """A Sentinel setup shared by the session (tests use their own prefix)."""
    with running_sentinel() as setup:
        yield setup


@pytest.fixture
def own_redis_sentinel() -> Iterator[SentinelSetup]:
    """A Sentinel setup of this test alone (its master may be killed)."""
    with running_sentinel() as setup:
        yield setup
