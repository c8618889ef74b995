"""Map subscriptions next to streams, in one run: fan-out rate and snapshot time.

Starts ``hubbub serve`` (memory engine and map broker; pinned to CPU 0 when the
machine has two) and, from this process (pinned to CPU 1), opens N subscriber
connections, each subscribed to the stream channel ``s`` and to the map channel
``mp:fan``. Rounds alternate:

* stream: one publisher sends ``publish`` commands to ``s`` at saturation
  (batches of 20, at most 200 unanswered);
* map: the same publisher sends map publishes (``type: 1``) of 100 keys in turn
  to ``mp:fan``, same batching;

deliveries are counted at the subscribers (one ``@`` per publication) over the
measured seconds, with the server's CPU time. Then a map of ``--keys`` entries
is loaded through the API (``batch`` of ``map_publish``) and a fresh client
takes its snapshot: raw clients paging with ``limit`` 100 and 1000, and
centrifuge-js under Node (its ``sync`` event, default page size) when
tests/js has node_modules. Loopback only; every phase is bounded in time.

    python benchmarks/maps.py --subscribers 1000 --seconds 5 --runs 3 --keys 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from hubbub.tools.runner import serve_argv
from hubbub.tools.wsclient import BenchConnection, Target, client_frame, open_connection

ROOT = Path(__file__).resolve().parent.parent
JS_DIR = ROOT / "tests" / "js"
API_KEY = "bench-maps"
WINDOW = 200
BATCH = 20
KEYS = 100  # map keys the fan-out rounds write in turn


def config(port: int) -> dict[str, Any]:
    anyone = {"allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True}
    return {
        "http_server": {"address": "127.0.0.1", "port": port},
        "http_api": {"key": API_KEY},
        "log": {"level": "error"},
        "client": {
            "allow_anonymous_connect_without_token": True,
            "queue_max_size": 64 * 1024 * 1024,
            "command_rate_limit": 0,
            "channel_limit": 16,
        },
        "channel": {
            "without_namespace": {
                **anyone,
                "allow_publish_for_client": True,
                "allow_publish_for_anonymous": True,
            },
            "namespaces": [
                {
                    "name": "mp",
                    "subscription_type": "map",
                    "map": {
                        "mode": "persistent",
                        "allow_publish_for_client": True,
                        "allow_publish_for_anonymous": True,
                        "stream_size": 1000,
                    },
                    **anyone,
                }
            ],
        },
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, two_cpus: bool) -> None:
        self.port = free_port()
        self.tmp = tempfile.TemporaryDirectory(prefix="hubbub-bench-maps-")
        path = Path(self.tmp.name) / "config.json"
        path.write_text(json.dumps(config(self.port)))
        command = serve_argv(path)
        if two_cpus:
            command = ["taskset", "-c", "0", *command]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"ws://127.0.0.1:{self.port}/connection/websocket"
        self.api = f"http://127.0.0.1:{self.port}/api"

    async def ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                if self.process.poll() is not None:
                    error = self.process.stderr.read() if self.process.stderr else b""
                    raise RuntimeError(f"hubbub exited: {error.decode()}") from None
                await asyncio.sleep(0.1)
        raise TimeoutError("hubbub did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.tmp.cleanup()


async def connect(target: Target, subscribe: list[dict[str, Any]]) -> BenchConnection:
    conn = await open_connection(target)
    reply = await asyncio.wait_for(conn.request_frame([{"connect": {}}, *subscribe]), 20)
    if "error" in reply:
        raise ConnectionError(f"refused: {reply}")
    return conn


def publish_frames(conn: BenchConnection, seq: int, count: int, kind: str) -> bytes:
    pad = "x" * 70
    lines = []
    for k in range(seq, seq + count):
        if kind == "map":
            body = f'"channel":"mp:fan","type":1,"key":"k{k % KEYS}","data":"@{k},{pad}"'
        else:
            body = f'"channel":"s","data":"@{k},{pad}"'
        lines.append(f'{{"id":{conn.next_id()},"publish":{{{body}}}}}')
    return client_frame("\n".join(lines).encode())


async def fanout_round(
    subs: list[BenchConnection], publisher: BenchConnection, kind: str, seconds: float, pid: int
) -> dict[str, float]:
    for conn in subs:
        conn.marks = 0
    wake = asyncio.Event()
    publisher.listeners.append(wake)
    base = publisher.replies
    sent = 0
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        if sent - (publisher.replies - base) < WINDOW:
            publisher.send_raw(publish_frames(publisher, sent, BATCH, kind))
            sent += BATCH
            continue
        wake.clear()
        await asyncio.wait_for(wake.wait(), 10)
    elapsed = time.monotonic() - t0
    delivered = sum(c.marks for c in subs)
    cpu = cpu_seconds(pid) - cpu0
    publisher.listeners.remove(wake)
    # Drain what is in flight before the next round counts (bounded).
    deadline = time.monotonic() + 10
    while publisher.replies - base < sent and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    return {
        "lost": float(sent * len(subs) - sum(c.marks for c in subs)),
        "rate": delivered / elapsed,
        "publications": sent / elapsed,
        "server_cpu_ns": cpu / max(delivered, 1) * 1e9,
        "errors": float(publisher.reply_errors),
    }


async def load_map(api: str, keys: int) -> None:
    async with aiohttp.ClientSession(headers={"X-API-Key": API_KEY}) as http:
        for start in range(0, keys, 1000):
            commands = [
                {"map_publish": {"channel": "mp:snap", "key": f"key{i:06}", "data": {"n": i}}}
                for i in range(start, min(start + 1000, keys))
            ]
            async with http.post(f"{api}/batch", json={"commands": commands}) as response:
                body = await response.json()
                assert all("error" not in r for r in body["replies"]), body


async def raw_snapshot(target: Target, limit: int) -> tuple[float, int]:
    """Seconds from the first page request to the live reply; entries received."""
    conn = await connect(target, [])
    try:
        t0 = time.monotonic()
        request: dict[str, Any] = {"channel": "mp:snap", "type": 1, "phase": 2, "limit": limit}
        result = (await conn.request({"subscribe": request}, 30))["subscribe"]
        first = result
        entries = len(result.get("state") or ())
        while result.get("phase"):
            if result.get("cursor"):
                follow = {**request, "cursor": result["cursor"]}
                follow.update(offset=first["offset"], epoch=first["epoch"])
            else:
                follow = {
                    **request,
                    "phase": 1,
                    "offset": result["offset"],
                    "epoch": first["epoch"],
                }
            result = (await conn.request({"subscribe": follow}, 30))["subscribe"]
            entries += len(result.get("state") or ())
        return time.monotonic() - t0, entries
    finally:
        conn.close()


async def js_snapshot(url: str) -> tuple[float, int] | None:
    script = JS_DIR / "state.mjs"
    if not (JS_DIR / "node_modules" / "centrifuge").is_dir():
        return None
    scenario = json.dumps({"url": url, "name": "bench"})
    process = await asyncio.create_subprocess_exec(
        "node",
        str(script),
        scenario,
        cwd=JS_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:

        async def event(name: str) -> dict[str, Any]:
            assert process.stdout is not None
            while True:
                line = await asyncio.wait_for(process.stdout.readline(), 30)
                found: dict[str, Any] = json.loads(line)
                if found.get("event") == name:
                    return found

        await event("connected")
        t0 = time.monotonic()
        process.stdin.write(b'{"cmd":"map","channel":"mp:snap"}\n')
        sync = await event("sync")
        return time.monotonic() - t0, int(sync["count"])
    finally:
        process.kill()
        await process.wait()


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return (
        f"median {fmt.format(statistics.median(values))} "
        f"(min {fmt.format(min(values))}, max {fmt.format(max(values))})"
    )


async def main_async(args: argparse.Namespace) -> None:
    two = (os.cpu_count() or 1) >= 2
    if two:
        os.sched_setaffinity(0, {1})
    server = Server(two)
    try:
        await server.ready()
        target = Target(server.url, "centrifugo")
        map_sub = {"subscribe": {"channel": "mp:fan", "type": 1, "phase": 2}}
        subs = []
        for start in range(0, args.subscribers, 100):
            batch = min(100, args.subscribers - start)
            subs += await asyncio.gather(
                *(connect(target, [{"subscribe": {"channel": "s"}}, map_sub]) for _ in range(batch))
            )
        publisher = await connect(target, [])
        results: dict[str, list[dict[str, float]]] = {"stream": [], "map": []}
        for run in range(args.runs):
            for kind in ("stream", "map") if run % 2 == 0 else ("map", "stream"):
                result = await fanout_round(subs, publisher, kind, args.seconds, server.process.pid)
                results[kind].append(result)
                print(
                    f"run {run + 1} {kind:6}: {result['rate']:,.0f} deliveries/s "
                    f"({result['publications']:,.0f} publications/s, server "
                    f"{result['server_cpu_ns']:.0f} ns CPU per delivery, "
                    f"{result['lost']:.0f} lost)"
                )
        for conn in [*subs, publisher]:
            conn.close()
        stream = [r["rate"] for r in results["stream"]]
        maps = [r["rate"] for r in results["map"]]
        ratios = [m / s for m, s in zip(maps, stream, strict=True)]
        print(
            f"\nfan-out, {args.subscribers} subscribers, ~100 B payload, {args.runs} runs:\n"
            f"  stream: {spread(stream)} deliveries/s\n"
            f"  map:    {spread(maps)} deliveries/s\n"
            f"  map/stream per run: {spread(ratios, '{:.0%}')}"
        )
        await load_map(server.api, args.keys)
        print(f"\nsnapshot of {args.keys:,} keys (from the first subscribe to live):")
        for limit in (100, 1000):
            times = []
            for _ in range(args.runs):
                seconds, entries = await raw_snapshot(target, limit)
                assert entries == args.keys, entries
                times.append(seconds)
            print(f"  raw client, pages of {limit}: {spread(times, '{:.3f}')} s")
        times = []
        for _ in range(args.runs):
            measured = await js_snapshot(server.url)
            if measured is None:
                print("  centrifuge-js: skipped (tests/js/node_modules missing: npm ci)")
                break
            seconds, count = measured
            assert count == args.keys, count
            times.append(seconds)
        if times:
            took = spread(times, "{:.3f}")
            print(f"  centrifuge-js (default page size), to its sync event: {took} s")
        print(f"\nmachine: {os.cpu_count()} CPUs; server on CPU 0, load generator on CPU 1")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keys", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
