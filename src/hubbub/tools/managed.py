"""A server process the bench starts, restarts and stops, and what /proc says of it.

Rule: a server the bench started is stopped on every exit path (SIGTERM, then
SIGKILL after a timeout); "started" means it answers (a WebSocket upgrade when
its path is known), not that its port accepts TCP; its CPU time and memory are
read from /proc, never asked of the server.
"""

from __future__ import annotations

import base64
import os
import resource
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"


def rss_kb(pid: int) -> int | None:
    """VmRSS of a process, from /proc (None if it is gone or unreadable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, from /proc (None if gone or unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3, utime and stime fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PACKAGE_DIR = Path(__file__).resolve().parents[1]  # this hubbub's package


def compile_bytecode(package_dir: Path) -> None:
    """Compile a hubbub tree's modules to bytecode before a server from it is timed.

    An installed hubbub has its bytecode (pip compiles it); a source tree run with
    ``PYTHONDONTWRITEBYTECODE`` set compiles every module at every start, which
    added ~0.07 s to each start-up measured on this project's machines.
    """
    import compileall

    compileall.compile_dir(str(package_dir), quiet=1)


def _wait_exit(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for ``process`` to exit, woken the moment it does: ``Popen.wait`` with a
    timeout polls (every 50 ms after the first 60), which would add up to 50 ms to a
    restart's stop and delay the start that follows it."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: the polling wait
        process.wait(timeout)
        return
    try:
        # poll, not select: the bench's own sockets push this descriptor past 1024
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        readable = poller.poll(timeout * 1000)
    finally:
        os.close(pidfd)
    if not readable:
        raise subprocess.TimeoutExpired(process.args, timeout)
    process.wait()


class ManagedServer:
    """A server process the bench started: start, wait for its port, restart, stop."""

    def __init__(
        self,
        command: list[str],
        port: int,
        cpu: int | None,
        log: Path,
        *,
        ws_path: str | None = None,
    ) -> None:
        if cpu is not None:
            command = ["taskset", "-c", str(cpu), *command]
        self.command = command
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.listening_cpu_s: float | None = None  # its CPU time when its port answered
        # A WebSocket path: "started" is when an upgrade request there gets an answer,
        # not when TCP connects (a server may listen before it serves).
        self.ws_path = ws_path

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> float:
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{tail}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5) as probe:
                    if self.ws_path is not None and not self._answers(probe, deadline):
                        time.sleep(0.005)  # closed without an answer: not serving yet
                        continue
                    elapsed = time.monotonic() - started
                    self.listening_cpu_s = cpu_seconds(self.process.pid)
                    return elapsed
            except OSError:
                time.sleep(0.005)
        self.stop()
        raise TimeoutError(f"server did not listen on {self.port} within {timeout} s")

    def _answers(self, probe: socket.socket, deadline: float) -> bool:
        """A WebSocket upgrade on ``probe`` got an answer: the server serves, not only
        listens (hubbub listens before it has started: server/early.py)."""
        key = base64.b64encode(os.urandom(16)).decode()
        probe.sendall(
            f"GET {self.ws_path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        probe.settimeout(max(0.1, deadline - time.monotonic()))
        return bool(probe.recv(64))

    def stop(self, timeout: float = 15.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            _wait_exit(process, timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def restart(self) -> dict[str, float]:
        """Stop, then start again; the times of both and the CPU the stop took (the
        old process's CPU time from the signal to its exit, read from its rusage)."""
        before = cpu_seconds(self.pid)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        self.stop()
        stopped = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = self.start()
        figures = {"stop_s": stopped, "start_s": started, "restart_s": time.monotonic() - t0}
        if before is not None:
            lifetime = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
            figures["stop_cpu_s"] = max(0.0, lifetime - before)
        return figures
