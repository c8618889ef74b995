"""A real Redis Cluster for tests: 3 masters (and, when asked, 3 replicas) on 127.0.0.1.

Rule: each redis-server runs in its own temp dir on a free port whose cluster
bus port (port + 10000) is free too, and is stopped by its own PID; the
cluster is made with ``redis-cli --cluster create ... --cluster-yes`` and used
only once every node reports ``cluster_state:ok``. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.redis_fixtures import _ping, free_port_pair, listens, stop_process


def cluster_port() -> int:
    """A free port whose bus port (+10000) is free as well, both below the
    ephemeral range."""
    return free_port_pair(10000)


def redis_cli(*args: str, timeout: float = 30) -> str:
    done = subprocess.run(
        ["redis-cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"redis-cli {' '.join(args)}: {done.stdout} {done.stderr}")
    return done.stdout


class ClusterNodeProcess:
    def __init__(self, directory: Path, node_timeout_ms: int, extra: tuple[str, ...] = ()) -> None:
        self.extra = extra  # more redis-server arguments (--tls-port ...)
        self.port = cluster_port()
        self.directory = directory / str(self.port)
        self.directory.mkdir()
        self.node_timeout_ms = node_timeout_ms
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
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
        deadline = time.monotonic() + 10
        while not (_ping(self.port) and listens(self.process.pid, self.port)):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster node {self.port} did not answer PING")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)

    def pause(self) -> None:
        """SIGSTOP: the node stops reading (a replica falls behind its master).

        Through ``Popen.send_signal``, never ``os.kill(pid)``: it sends nothing to a
        process it has reaped, whose PID may be another process's by now."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def cli(self, *args: str) -> str:
        return redis_cli("-p", str(self.port), *args)

    def role(self) -> str:
        return self.cli("ROLE").split()[0]


class RedisClusterProcesses:
    """The nodes of one cluster; ``seeds`` is the ``cluster_address`` entry."""

    def __init__(
        self,
        directory: Path,
        *,
        replicas: bool,
        node_timeout_ms: int = 1000,
        extra: Callable[[], tuple[str, ...]] = tuple,  # each node's more arguments
    ) -> None:
        if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
            raise RuntimeError("redis-server/redis-cli missing (scripts/test.sh installs them)")
        count = 6 if replicas else 3
        self.replicas = replicas
        self.nodes = [ClusterNodeProcess(directory, node_timeout_ms, extra()) for _ in range(count)]

    @property
    def seeds(self) -> str:
        return ",".join(node.address for node in self.nodes[:3])

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        args = ["--cluster", "create", *(n.address for n in self.nodes)]
        if self.replicas:
            args += ["--cluster-replicas", "1"]
        redis_cli(*args, "--cluster-yes", timeout=60)
        self.wait_ok()

    def wait_ok(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        for node in self.nodes:
            if node.process is None:
                continue
            while "cluster_state:ok" not in node.cli("CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster not ok on {node.port}")
                time.sleep(0.1)
        # Replicas must be in sync, or none could take its master's slots over.
        for node in self.nodes:
            if node.process is None or node.role() != "slave":
                continue
            while "master_link_status:up" not in node.cli("INFO", "replication"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {node.port} not in sync")
                time.sleep(0.1)
        # Every live node must also agree on the slots (replicas learn late).
        while True:
            views = {n.cli("CLUSTER", "SLOTS") for n in self.nodes if n.process is not None}
            if len(views) == 1 or time.monotonic() > deadline:
                return
            time.sleep(0.1)

    def masters(self) -> list[ClusterNodeProcess]:
        return [n for n in self.nodes if n.process is not None and n.role() == "master"]

    def owner_of(self, key: str) -> ClusterNodeProcess:
        """The master that serves ``key``'s slot now."""
        slot = int(self.nodes[0].cli("CLUSTER", "KEYSLOT", key).strip())
        for node in self.masters():
            if slot in self.slots_of(node):
                return node
        raise RuntimeError(f"no master serves slot {slot}")

    def slots_of(self, node: ClusterNodeProcess) -> set[int]:
        """The slots ``node`` serves as a master, from its own CLUSTER NODES line."""
        for line in node.cli("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "myself" in fields[2]:
                slots: set[int] = set()
                for part in fields[8:]:
                    if part.startswith("["):
                        continue  # a slot being migrated
                    low, _, high = part.partition("-")
                    slots.update(range(int(low), int(high or low) + 1))
                return slots
        return set()

    def node_id(self, node: ClusterNodeProcess) -> str:
        return node.cli("CLUSTER", "MYID").strip()

    def replica_of(self, master: ClusterNodeProcess) -> ClusterNodeProcess:
        """The live replica of ``master``."""
        for node in self.nodes:
            if node.process is None or node is master or node.role() != "slave":
                continue
            if f"master_port:{master.port}" in node.cli("INFO", "replication"):
                return node
        raise RuntimeError(f"{master.port} has no replica")

    def cut_off_replica(self, master: ClusterNodeProcess) -> ClusterNodeProcess:
        """Stop ``master``'s replica (SIGSTOP) once it has everything, and close its
        replication link: what ``master`` acknowledges from now on never reaches it
        (not even through a socket buffer). ``resume()`` it before it is promoted."""
        replica = self.replica_of(master)
        self.wait_replicated(master)
        replica.pause()
        master.cli("CLIENT", "KILL", "TYPE", "replica")
        return replica

    def wait_replicated(self, master: ClusterNodeProcess, within: float = 10.0) -> None:
        """Until ``master``'s replica has everything ``master`` wrote."""
        replica = self.replica_of(master)
        deadline = time.monotonic() + within

        def offset(node: ClusterNodeProcess, field: str) -> int:
            for line in node.cli("INFO", "replication").splitlines():
                if line.startswith(field + ":"):
                    return int(line.partition(":")[2])
            return -1

        while offset(replica, "slave_repl_offset") < offset(master, "master_repl_offset"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {replica.port} did not catch up")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                node.stop()


@contextlib.contextmanager
def running_cluster(*, replicas: bool) -> Iterator[RedisClusterProcesses]:
    with tempfile.TemporaryDirectory(prefix="hubbub-cluster-") as directory:
        cluster = RedisClusterProcesses(Path(directory), replicas=replicas)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterProcesses]:
    """3 masters, no replicas, shared by a module's tests (each uses its own prefix)."""
    with running_cluster(replicas=False) as cluster:
        yield cluster


@pytest.fixture
def own_redis_cluster() -> Iterator[RedisClusterProcesses]:
    """3 masters with a replica each, for this test alone (it may be failed over)."""
    with running_cluster(replicas=True) as cluster:
        yield cluster
