"""Run a bench: own the server if asked, spread workers over processes, merge, judge.

Rule: figures are computed here, once, from the workers' raw counts: rates over
the measured window, loss from what publishers sent versus what subscribers
counted, latency from the merged histogram, memory from /proc. A server the
bench started is stopped on every exit path; a server it did not start is only
read (RSS), never signalled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import os
import resource
import shlex
import socket
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from hubbub.tools.histogram import Histogram
from hubbub.tools.managed import (
    HOST,
    PACKAGE_DIR,
    ManagedServer,
    compile_bytecode,
    cpu_seconds,
    rss_kb,
)
from hubbub.tools.scenarios import PHASES, BenchOptions, Worker, subscribers_per_channel

T = TypeVar("T")
SATURATED = 0.90


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is installed (as the server does), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)


def raise_nofile() -> int:
    """Lift the soft open-files limit to the hard one; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def serve_argv(config: str | Path, port: int | None = None) -> list[str]:
    """``hubbub serve --config CONFIG [--port PORT]`` run by this interpreter: how every
    benchmark starts a server."""
    argv = [sys.executable, "-m", "hubbub.cli.main", "serve", "--config", str(config)]
    return argv if port is None else [*argv, "--port", str(port)]


def serve_command_from(tree: Path, config: str, port: int) -> str:
    """A shell command running ``hubbub serve`` from the source tree ``tree`` (its ``src/``
    first on the path): a benchmark comparing two trees of hubbub."""
    return f"env PYTHONPATH={shlex.quote(str(tree / 'src'))} " + shlex.join(
        serve_argv(config, port)
    )


def hubbub_config(directory: str, api_key: str, *, compress: bool = False) -> str:
    """A permissive config for benchmarking: anonymous clients, big outboxes, quiet logs
    (``compress``: permessage-deflate on)."""
    config: dict[str, Any] = {
        "http_server": {"address": HOST, "port": 0},
        "http_api": {"key": api_key or "bench-api-key"},
        "log": {"level": "warn"},
        "client": {
            "allow_anonymous_connect_without_token": True,
            "queue_max_size": 16 * 1024 * 1024,
            "command_rate_limit": 0,  # a publisher at saturation is not abuse
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
    if compress:
        config["websocket"] = {"compression": True}
    path = Path(directory) / "bench-hubbub.json"
    path.write_text(json.dumps(config))
    return str(path)


class Coordinator:
    """Actions between the workers' phases: read RSS, restart the server."""

    def __init__(self, opts: BenchOptions, server: ManagedServer | None, pid: int | None) -> None:
        self.opts = opts
        self.server = server
        self.pid = pid
        self.facts: dict[str, Any] = {}
        self.tasks: list[asyncio.Task[None]] = []

    async def before(self, name: str) -> None:
        if name == "held" and self.pid is not None:
            self.facts["rss_after_kb"] = rss_kb(self.pid)
        if name in ("connected", "measured") and self.pid is not None:
            self.facts[f"server_cpu_{name}"] = (cpu_seconds(self.pid), time.monotonic())
        if name == "back" and self.pid is not None:
            for task in self.tasks:  # the restart has ended: every client is back on it
                await task
            self.tasks.clear()
            assert self.pid is not None
            self.facts["server_cpu_back"] = cpu_seconds(self.pid)
            if self.server is not None and "restart" in self.facts:
                self.facts["listening_cpu"] = self.server.listening_cpu_s

    async def after(self, name: str) -> None:
        if name == "storm" and self.opts.storm == "restart" and self.server is not None:
            server = self.server

            async def restart() -> None:
                self.facts["t_restart"] = time.monotonic()
                self.facts["restart"] = await asyncio.to_thread(server.restart)
                self.pid = server.pid

            self.tasks.append(asyncio.create_task(restart()))

    async def local_phase(self, name: str) -> None:
        await self.before(name)
        await self.after(name)
        await asyncio.sleep(0)


class ProgressPrinter:
    """One line per second on stderr, summed over workers."""

    def __init__(self, opts: BenchOptions) -> None:
        self.opts = opts
        self.latest: dict[int, dict[str, float]] = {}
        self.last_print = 0.0
        self.warned: set[int] = set()
        self.live = False

    def __call__(self, worker: int, values: dict[str, float]) -> None:
        self.latest[worker] = values
        if values.get("cpu", 0) > SATURATED and worker not in self.warned:
            self.warned.add(worker)
            print(
                f"WARNING: bench worker {worker} uses {values['cpu']:.0%} of a core: "
                "the load generator is saturated, figures are a floor for the server",
                file=sys.stderr,
                flush=True,
            )
        now = time.monotonic()
        if self.opts.quiet or now - self.last_print < 0.5:
            return
        self.last_print = now
        total: dict[str, float] = {}
        for snapshot in self.latest.values():
            for key, value in snapshot.items():
                total[key] = total.get(key, 0) + value
        n = len(self.latest)
        parts = [f"[{self.opts.scenario}] {total.get('elapsed', 0) / n:5.1f}s"]
        if "rate" in total:
            parts.append(f"delivered {total['rate']:,.0f}/s")
            parts.append(f"sent {total.get('sent', 0):,.0f}")
        if "requests" in total:
            parts.append(f"requests {total['requests']:,.0f}")
        if "connected" in total:
            parts.append(f"connected {total['connected']:,.0f}")
        parts.append("cpu " + "/".join(f"{s.get('cpu', 0):.0%}" for s in self.latest.values()))
        line = "  ".join(parts)
        if sys.stderr.isatty():  # one live line, rewritten in place
            print(f"\r{line}\x1b[K", end="", file=sys.stderr, flush=True)
            self.live = True
        else:
            print(line, file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.live:
            print(file=sys.stderr, flush=True)
            self.live = False


def _worker_process(
    opts: BenchOptions, index: int, barrier: Any, queue: Any
) -> None:  # pragma: no cover - runs in a child process
    if opts.cpu is not None:
        os.sched_setaffinity(0, {opts.cpu})
    raise_nofile()

    async def phase(name: str) -> None:
        await asyncio.to_thread(barrier.wait, 180)
        await asyncio.to_thread(barrier.wait, 180)

    def progress(worker: int, values: dict[str, float]) -> None:
        queue.put(("progress", worker, values))

    try:
        result = run_async(Worker(opts, index, phase, progress).run())
        queue.put(("result", index, result))
    except BaseException as exc:
        barrier.abort()
        queue.put(("error", index, f"{type(exc).__name__}: {exc}"))


async def _run_processes(
    opts: BenchOptions, coordinator: Coordinator, progress: ProgressPrinter
) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(opts.procs + 1)
    queue = context.Queue()
    procs = [
        context.Process(target=_worker_process, args=(opts, i, barrier, queue), daemon=True)
        for i in range(opts.procs)
    ]
    for process in procs:
        process.start()
    results: dict[int, dict[str, Any]] = {}
    errors: list[str] = []

    async def pump() -> None:
        while len(results) + len(errors) < opts.procs:
            try:
                kind, index, value = await asyncio.to_thread(queue.get, True, 0.5)
            except Exception:  # queue.Empty
                if all(not p.is_alive() for p in procs) and queue.empty():
                    errors.append("bench workers exited without a result")
                    return
                continue
            if kind == "progress":
                progress(index, value)
            elif kind == "result":
                results[index] = value
            else:
                errors.append(f"worker {index}: {value}")

    pumping = asyncio.create_task(pump())
    try:
        for name in PHASES[opts.scenario]:
            await asyncio.to_thread(barrier.wait, 180)
            await coordinator.before(name)
            await asyncio.to_thread(barrier.wait, 180)
            await coordinator.after(name)
    except Exception as exc:  # BrokenBarrierError: a worker failed; its error follows
        errors.append(f"phase barrier: {type(exc).__name__}")
    await asyncio.wait_for(pumping, opts.seconds + 300)
    for process in procs:
        process.join(10)
    if errors and len(results) < opts.procs:
        raise RuntimeError("; ".join(errors))
    return [results[i] for i in sorted(results)]


async def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Run one bench and return its summary (the JSON written by ``--json``)."""
    raise_nofile()
    tmp = tempfile.TemporaryDirectory(prefix="hubbub-bench-")
    server: ManagedServer | None = None
    try:
        if opts.url is None or opts.server_cmd is not None:
            port = free_port()
            if opts.server_cmd is not None:
                if opts.url is None:
                    raise ValueError("--server-cmd needs --url (where the server listens)")
                command = shlex.split(opts.server_cmd)
                port = urlsplit(opts.url).port or 80
            else:
                await asyncio.to_thread(compile_bytecode, PACKAGE_DIR)
                config = hubbub_config(tmp.name, opts.api_key, compress=opts.compress)
                command = [*serve_argv(config, port), "--echo-rpc"]
                opts = dataclasses.replace(opts, url=f"ws://{HOST}:{port}/connection/websocket")
                if opts.api is not None and opts.api == "auto":
                    opts = dataclasses.replace(
                        opts,
                        api=f"http://{HOST}:{port}/api",
                        api_key=opts.api_key or "bench-api-key",
                    )
            assert opts.url is not None
            server = ManagedServer(
                command,
                port,
                opts.server_cpu,
                Path(tmp.name) / "server.log",
                ws_path=urlsplit(opts.url).path or "/",
            )
            await asyncio.to_thread(server.start)
        if opts.scenario == "connect" and opts.storm == "auto":
            opts = dataclasses.replace(opts, storm="restart" if server is not None else "drop")
        if opts.storm == "restart" and server is None:
            raise ValueError("--storm restart needs a server the bench started")
        pid = server.pid if server is not None else opts.server_pid
        coordinator = Coordinator(opts, server, pid)
        if pid is not None:
            coordinator.facts["rss_before_kb"] = rss_kb(pid)
            coordinator.facts["server_cpu_start"] = cpu_seconds(pid)
        progress = ProgressPrinter(opts)
        wall0 = time.monotonic()
        if opts.procs <= 1:
            if opts.cpu is not None:
                os.sched_setaffinity(0, {opts.cpu})
            worker = Worker(
                dataclasses.replace(opts, procs=1), 0, coordinator.local_phase, progress
            )
            results = [await worker.run()]
        else:
            results = await _run_processes(opts, coordinator, progress)
        progress.finish()
        for task in coordinator.tasks:
            await task
        if pid is not None and "rss_end_kb" not in coordinator.facts:
            coordinator.facts["rss_end_kb"] = rss_kb(coordinator.pid or pid)
        summary = summarise(opts, results, coordinator.facts)
        summary["wall_s"] = time.monotonic() - wall0
        return summary
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
        tmp.cleanup()


def _server_cpu(facts: dict[str, Any], deliveries: int) -> dict[str, float]:
    """The server's CPU share over the window, and its CPU time per delivery."""
    start, end = facts.get("server_cpu_connected"), facts.get("server_cpu_measured")
    if start is None or end is None:
        return {}
    (cpu0, t0), (cpu1, t1) = start, end
    if cpu0 is None or cpu1 is None or t1 <= t0:
        return {}
    used = cpu1 - cpu0
    figures = {"server_cpu": used / (t1 - t0)}
    if deliveries:
        figures["server_ns_per_delivery"] = used * 1e9 / deliveries
    return figures


def summarise(
    opts: BenchOptions, results: list[dict[str, Any]], facts: dict[str, Any]
) -> dict[str, Any]:
    """Merge the workers' raw data into the figures."""
    latency = Histogram()
    for result in results:
        latency.merge(Histogram.from_dict(result["latency_hist"]))
    cpu = [r["cpu_s"] / max(1e-9, r["wall_s"]) for r in results]
    summary: dict[str, Any] = {
        "scenario": opts.scenario,
        "target": opts.url,
        "dialect": opts.dialect,
        "options": {
            k: v for k, v in dataclasses.asdict(opts).items() if k not in ("extra", "quiet")
        },
        "latency_us": latency.summary(),
        "latency_hist": latency.to_dict(),
        "loadgen_cpu": cpu,
        "warnings": [],
    }
    if opts.scenario == "fanout":
        measure_cpu = [r["measure_cpu_s"] / max(1e-9, r["elapsed_s"]) for r in results]
        summary["loadgen_cpu"] = measure_cpu
        elapsed = max(r["elapsed_s"] for r in results)
        sent: dict[int, int] = {}
        acked: dict[int, int] = {}
        errors: dict[int, int] = {}
        channel_of: dict[int, int] = {}
        for r in results:
            sent.update({int(k): v for k, v in r["sent"].items()})
            acked.update({int(k): v for k, v in r["acked"].items()})
            errors.update({int(k): v for k, v in r["publish_errors"].items()})
            channel_of.update({int(k): v for k, v in r["publisher_channels"].items()})
        ok = acked  # losses are counted against what the server acknowledged
        per_channel = [0] * opts.channels
        for p, count in ok.items():
            per_channel[channel_of[p]] += count
        counts = subscribers_per_channel(opts)
        expected = sum(per_channel[c] * counts[c] for c in range(opts.channels))
        delivered_total = sum(r["delivered_total"] for r in results)
        window = sum(r["delivered_window"] for r in results)
        wire = sum(r.get("wire_bytes_window", 0) for r in results)
        seq_lost = seq_dup = checked = 0
        for r in results:
            for entry in r["seq"]:
                checked += 1
                seq_dup += entry["duplicates"]
                unique = {int(k): v for k, v in entry["unique"].items()}
                for p, count in ok.items():
                    if channel_of[p] == entry["channel"]:
                        seq_lost += max(0, count - unique.get(p, 0))
        summary.update(
            seconds=elapsed,
            publications=sum(sent.values()),
            publish_errors=sum(errors.values()),
            publish_rate_limited=sum(r.get("rate_limited", 0) for r in results),
            first_error=next((r["first_error"] for r in results if r.get("first_error")), None),
            publications_per_s=sum(sent.values()) / elapsed,
            delivered=window,
            deliveries_per_s=window / elapsed,
            wire_bytes=wire,  # received by the subscribers in the window
            wire_bytes_per_delivery=wire / window if window else None,
            compressed_subscribers=sum(r.get("compressed_subscribers", 0) for r in results),
            delivered_after_drain=delivered_total,
            expected=expected,
            lost=max(0, expected - delivered_total),
            unacknowledged=sum(sent.values()) - sum(acked.values()) - sum(errors.values()),
            duplicated=seq_dup + max(0, delivered_total - expected),
            seq_checked_subscribers=checked,
            seq_lost=seq_lost,
            closed_by_server=sum(r["closed"] for r in results),
            rate_target=opts.rate * max(1, counts[0]) if opts.rate else None,
        )
        summary.update(_server_cpu(facts, window))
    elif opts.scenario == "rpc":
        elapsed = max(r["elapsed_s"] for r in results)
        requests = sum(r["rpc"]["requests"] for r in results)
        summary.update(
            seconds=elapsed,
            requests=requests,
            requests_per_s=requests / elapsed,
            errors=sum(r["rpc"]["errors"] for r in results),
            rate_limited=sum(r["rpc"].get("rate_limited", 0) for r in results),
        )
    elif opts.scenario == "connect":
        summary.update(
            connect_figures(
                opts,
                [r["connect"] for r in results],
                [r["storm"] for r in results if "storm" in r],
                facts,
            )
        )
    elif opts.scenario == "idle":
        summary.update(
            clients=sum(r["idle"]["clients"] for r in results),
            connect_s=max(r["idle"]["connect_s"] for r in results),
            closed_by_server=sum(r["idle"]["closed_by_server"] for r in results),
        )
        before, after = facts.get("rss_before_kb"), facts.get("rss_after_kb")
        if before is not None and after is not None:
            summary.update(
                server_rss_before_kb=before,
                server_rss_after_kb=after,
                rss_per_connection_bytes=(after - before) * 1024 / max(1, opts.subscribers),
            )
    if "rss_end_kb" in facts and facts["rss_end_kb"] is not None:
        summary["server_rss_end_kb"] = facts["rss_end_kb"]
    for index, fraction in enumerate(summary["loadgen_cpu"]):
        if fraction > SATURATED:
            summary["warnings"].append(
                f"bench worker {index} used {fraction:.0%} of a core: the load generator is "
                "saturated, the figures are a floor for the server (try --procs)"
            )
    if opts.scenario == "fanout" and summary.get("closed_by_server"):
        summary["warnings"].append(f"{summary['closed_by_server']} subscribers were disconnected")
    _judge_errors(opts, summary)
    return summary


def connect_figures(
    opts: BenchOptions,
    phases: list[dict[str, Any]],
    storms: list[dict[str, Any]],
    facts: dict[str, Any],
) -> dict[str, Any]:
    """The connect scenario's figures from each load generator's raw counts and the
    coordinator's facts; ``benchmarks/storm.py`` gives its C generator's here too.

    ``phases``: per generator, the first connect (``seconds``, ``failed_attempts``,
    ``cpu_s``: its CPU time); ``storms``: per generator, its storm's ``t_storm`` and
    ``t_back`` (``time.monotonic()``), ``recovered``, ``failed_attempts`` and ``cpu_s``.
    The storm counts from the earliest of the generators' starts and the restart's
    signal to the last client back.
    """
    connect_s = max(p["seconds"] for p in phases)
    figures: dict[str, Any] = {
        "clients": opts.subscribers,
        "connect_s": connect_s,
        "connects_per_s": opts.subscribers / connect_s,
        "failed_attempts": sum(p["failed_attempts"] for p in phases),
        "connect_loadgen_cpu": [
            p["cpu_s"] / max(1e-9, p["seconds"]) for p in phases if "cpu_s" in p
        ],
    }
    start_cpu, connected = facts.get("server_cpu_start"), facts.get("server_cpu_connected")
    if start_cpu is not None and connected is not None and connected[0] is not None:
        # the server's CPU per client: handshake, 101, connect and subscribe, replies
        figures["server_us_per_connect"] = (connected[0] - start_cpu) * 1e6 / opts.subscribers
    if not storms:
        return figures
    start = min(s["t_storm"] for s in storms)
    if "t_restart" in facts:
        start = min(start, facts["t_restart"])
    storm: dict[str, Any] = {
        "mode": opts.storm,
        "seconds": max(s["t_back"] for s in storms) - start,
        "recovered": sum(s["recovered"] for s in storms),
        "failed_attempts": sum(s["failed_attempts"] for s in storms),
        # each generator's share of its core from its start of the storm to its last client back
        "loadgen_cpu": [
            s["cpu_s"] / max(1e-9, s["t_back"] - s["t_storm"]) for s in storms if "cpu_s" in s
        ],
        **facts.get("restart", {}),
    }
    back, listening = facts.get("server_cpu_back"), facts.get("listening_cpu")
    if back is not None and listening is not None:
        # the restarted server's CPU from its port answering to every client back
        storm["start_cpu_s"] = listening
        storm["reconnect_us_per_client"] = (back - listening) * 1e6 / opts.subscribers
    figures["storm"] = storm
    return figures


def _judge_errors(opts: BenchOptions, summary: dict[str, Any]) -> None:
    """Error replies make the figures wrong: warn, name rate limiting, and set
    ``error_fraction`` / ``too_many_errors`` (the CLI exits 1 on the latter)."""
    if opts.scenario == "fanout":
        total, errors = summary["publications"], summary["publish_errors"]
        limited, what = summary["publish_rate_limited"], "publishes"
    elif opts.scenario == "rpc":
        total, errors, limited, what = (summary["requests"], summary["errors"],
                                        summary["rate_limited"], "RPC requests")  # fmt: skip
    else:
        return
    fraction = errors / total if total else 0.0
    summary["error_fraction"] = fraction
    summary["too_many_errors"] = fraction > opts.max_errors
    if not errors:
        return
    message = (f"{errors:,} of {total:,} {what} ({fraction:.1%}) were answered with an error: "
               "the figures above do not measure the work asked for")  # fmt: skip
    if limited * 2 > errors:
        fix = "publish through the HTTP API (--api) or " if opts.scenario == "fanout" else ""
        message += (f"; {limited:,} were error 111 (too many requests): the server's per-"
                    "connection command rate limit throttles the bench (hubbub: "
                    f"client.command_rate_limit, 0 = off): {fix}lift the limit")  # fmt: skip
    elif summary.get("first_error"):
        message += f"; first: {summary['first_error'][:200]}"
    summary["warnings"].insert(0, message)
