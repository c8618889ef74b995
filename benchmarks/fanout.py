"""Fan-out throughput: one channel, N subscribers, publications at saturation.

Starts ``hubbub serve`` in a subprocess pinned to CPU 0, runs the load generator
pinned to CPU 1 (when the machine has two), and prints deliveries per second
counted at the subscribers. Each run is bounded in time; loopback only.

    python benchmarks/fanout.py --subscribers 1000 --seconds 5 --runs 3

The load generator is deliberately cheap: raw asyncio sockets, WebSocket frames
parsed just enough to count ``{"push"`` occurrences, no JSON decoding of pushes.
The publisher sends ``--batch`` publish commands per frame and keeps ``--window``
of them unanswered, so the server never waits for the publisher.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
PUSH_MARK = b'{"push"'


def client_frame(payload: bytes) -> bytes:
    """A masked text frame (clients must mask); a zero mask keeps it cheap."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return header + b"\x00\x00\x00\x00" + payload


class CountingClient(asyncio.Protocol):
    """A WebSocket client that counts pushes and replies without decoding JSON."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshaken = False
        self.pushes = 0
        self.replies = 0
        self.ready = asyncio.get_running_loop().create_future()
        self.reply_event = asyncio.Event()
        self.closed_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def send(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(payload))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        if not self.handshaken:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                raise SystemExit(f"handshake failed: {bytes(buf[:200])!r}")
            del buf[: end + 4]
            self.handshaken = True
            self.ready.set_result(None)
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            opcode = buf[pos] & 0x0F
            length = buf[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if size - pos < head + length:
                break
            start = pos + head
            if opcode == 1:
                payload = bytes(buf[start : start + length])
                pushes = payload.count(PUSH_MARK)
                self.pushes += pushes
                replies = payload.count(b"\n") + 1 - pushes
                if payload == b"{}":  # server ping: answer it
                    self.send(b"{}")
                elif replies > 0:
                    self.replies += replies
                    self.reply_event.set()
            elif opcode == 8:
                self.closed_code = int.from_bytes(buf[start : start + 2], "big") if length else 0
            pos = start + length
        del buf[:pos]


async def open_clients(port: int, count: int, channel: str) -> list[CountingClient]:
    loop = asyncio.get_running_loop()
    clients: list[CountingClient] = []
    for start in range(0, count, 200):
        batch = []
        for _ in range(min(200, count - start)):
            _, proto = await loop.create_connection(
                lambda: CountingClient("/connection/websocket"), HOST, port
            )
            batch.append(proto)
        await asyncio.gather(*(c.ready for c in batch))
        for c in batch:
            c.send(
                b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"%s"}}' % channel.encode()
            )
        clients.extend(batch)
    deadline = time.monotonic() + 30
    while sum(c.replies for c in clients) < 2 * count:
        if time.monotonic() > deadline:
            raise SystemExit("subscribers did not all subscribe within 30 s")
        await asyncio.sleep(0.05)
    return clients


async def measure(port: int, args: argparse.Namespace) -> dict[str, float]:
    channel = "bench"
    subscribers = await open_clients(port, args.subscribers, channel)
    (publisher,) = await open_clients(port, 1, "publisher-own")
    payload = json.dumps({"text": "x" * max(args.payload - 20, 1), "n": 0}).encode()
    command = b'{"id":%%d,"publish":{"channel":"%s","data":%s}}' % (channel.encode(), payload)
    frame = b"\n".join(command % (10 + i) for i in range(args.batch))
    for c in subscribers:
        c.pushes = 0
    sent = 0
    base_replies = publisher.replies
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    end = t0 + args.seconds
    while time.perf_counter() < end:
        while sent - (publisher.replies - base_replies) < args.window:
            publisher.send(frame)
            sent += args.batch
        publisher.reply_event.clear()
        try:
            await asyncio.wait_for(publisher.reply_event.wait(), 5)
        except TimeoutError:
            raise SystemExit("publisher got no reply for 5 s") from None
    elapsed = time.perf_counter() - t0
    delivered = sum(c.pushes for c in subscribers)
    cpu = time.process_time() - cpu0
    # Let the tail drain so sockets close cleanly, bounded.
    for c in [*subscribers, publisher]:
        assert c.transport is not None
        c.transport.close()
    return {
        "deliveries_per_s": delivered / elapsed,
        "publications_per_s": (publisher.replies - base_replies) / elapsed,
        "loadgen_cpu": cpu / elapsed,
    }


def write_config(directory: str) -> str:
    config = {
        "http_server": {"address": HOST, "port": 0},
        "log": {"level": "warn"},
        "client": {
            "allow_anonymous_connect_without_token": True,
            "queue_max_size": 16 * 1024 * 1024,
            "channel_limit": 128,
        },
        "channel": {
            "without_namespace": {
                "allow_subscribe_for_client": True,
                "allow_subscribe_for_anonymous": True,
                "allow_publish_for_client": True,
                "allow_publish_for_anonymous": True,
            }
        },
    }
    path = Path(directory) / "bench.json"
    path.write_text(json.dumps(config))
    return str(path)


def start_server(config: str, port: int) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "hubbub.cli.main",
        "serve",
        "--config",
        config,
        "--port",
        str(port),
    ]
    if os.cpu_count() and os.cpu_count() >= 2:  # type: ignore[operator]
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if b"serving on" in line:
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("server did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def server_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--payload", type=int, default=100, help="approximate data bytes")
    parser.add_argument("--batch", type=int, default=20, help="publish commands per frame")
    parser.add_argument("--window", type=int, default=200, help="unanswered publishes")
    args = parser.parse_args()
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(tmp)
        for run in range(args.runs):
            port = free_port()
            server = start_server(config, port)
            try:
                result = asyncio.run(measure(port, args))
                result["server_rss_mb"] = server_rss_kb(server.pid) / 1024
            finally:
                server.terminate()
                server.wait(10)
            results.append(result)
            print(
                f"run {run + 1}: {result['deliveries_per_s']:,.0f} deliveries/s "
                f"({result['publications_per_s']:,.0f} publications/s, "
                f"loadgen CPU {result['loadgen_cpu']:.0%}, "
                f"server RSS {result['server_rss_mb']:.0f} MB)"
            )
    rates = [r["deliveries_per_s"] for r in results]
    print(
        f"\nfan-out, 1 channel, {args.subscribers} subscribers, ~{args.payload} B payload: "
        f"median {statistics.median(rates):,.0f} deliveries/s "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}, {args.runs} runs)"
    )
    if max(r["loadgen_cpu"] for r in results) > 0.9:
        print("WARNING: the load generator saturated its core: the figure is a floor.")


if __name__ == "__main__":
    main()
