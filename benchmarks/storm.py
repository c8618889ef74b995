# ruff: noqa: E501
"""The reconnect storm after a restart, paired: hubbub (and an older tree) against Node ``ws``.

    python benchmarks/storm.py --runs 5                                   # hubbub and the three Node ws variants
    git worktree add /tmp/before main   # or: git archive main | tar -x -C /tmp/before
    python benchmarks/storm.py --runs 5 --before-src /tmp/before          # + hubbub-before
    python benchmarks/storm.py --runs 3 --servers hubbub,node-ws,floor-c  # + the C floor
    python benchmarks/storm.py --runs 3 --loadgen python                  # the Python generator

Node ``ws`` runs as up to three variants (benchmarks/servers/node_ws/server.js).
``node-ws`` exits at SIGTERM (its clients see the kernel close their sockets),
``node-ws-close`` first writes every client a close frame (1001) without waiting
for the answers, as hubbub writes Centrifugo's 3001 (~10 us of kernel time per
client on loopback: the stop's main cost). Both only do the handshake: their
clients are back at the 101. ``node-ws-centrifugo`` (``--centrifugo
--close-on-exit``) does the same per-client work as hubbub: it answers each
client's connect and subscribe (Centrifugo's JSON protocol, both replies in one
frame) and writes 3001 at SIGTERM, so that hubbub / node-ws-centrifugo compares
servers doing the same job, and the plain ratios show the protocol's share.

Each run: N clients connect (hubbub: connect and subscribe), then the harness
stops the server (SIGTERM, waits for the process to exit), starts it again and
times from the signal until every client is back. Two load generators, one
client behaviour (200 attempts at a time, the same retry schedule, the same
frames): ``--loadgen c`` (the default when ``make -C benchmarks/loadgen_c``
builds: its ``--mode storm``, storm.c) and ``--loadgen python`` (``hubbub bench
connect -n N --storm restart``, which saturates its core during hubbub's storm).
Both go through the same phases and figures (``hubbub.tools.runner``'s
``Coordinator`` and ``connect_figures``). The variants run interleaved (run 1 of
each, then run 2, ...), so that a noisy neighbour on this shared machine hurts
them alike. Server on CPU 0, load generator (and this harness) on CPU 1. Each
hubbub tree's bytecode is compiled first (``PYTHONDONTWRITEBYTECODE`` would make
every start compile every module).

Printed per variant: the storm (median [min-max]), when half and 90 % of the
clients were back (C only: a tail of clients backing off after refused attempts
shows there), how long the stop and the start took as the bench saw them, the refused or failed connection attempts
during the storm, the server's CPU per connect (first connect phase), its CPU
to stop, the restarted server's CPU per reconnect, and the load generator's
share of its core in the connect phase and in the storm (C only: the share of
the storm it waited runnable for a CPU). A storm whose generator was above 85 %
of its core is marked ``!``: the generator, not only the server, set its pace.
Loopback only; bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hubbub.tools.managed import ManagedServer, cpu_seconds, rss_kb
from hubbub.tools.runner import (
    Coordinator,
    compile_bytecode,
    connect_figures,
    free_port,
    hubbub_config,
    raise_nofile,
    run_async,
    run_bench,
    serve_command_from,
)
from hubbub.tools.scenarios import BenchOptions

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS = HERE / "servers"
LOADGEN = HERE / "loadgen_c"
#: Above this share of its core the generator may be what sets the storm's pace.
HOT = 0.85
#: The Node ``ws`` variants and their server.js flags; hubbub's storm is divided by each.
NODE_WS = {
    "node-ws": "",
    "node-ws-close": " --close-on-exit",
    "node-ws-centrifugo": " --centrifugo --close-on-exit",
}
VARIANTS = ("hubbub", "hubbub-before", *NODE_WS, "floor-c")


def variant_options(name: str, before: Path | None, config: str, port: int) -> tuple[str, str, str]:
    """(server command, url, dialect) of a variant."""
    if name in ("hubbub", "hubbub-before"):
        src = ROOT if name == "hubbub" else before
        assert src is not None
        command = serve_command_from(src, config, port)
        return command, f"ws://127.0.0.1:{port}/connection/websocket", "centrifugo"
    if name in NODE_WS:
        command = f"node {SERVERS}/node_ws/server.js --port {port}{NODE_WS[name]}"
        if name == "node-ws-centrifugo":
            return command, f"ws://127.0.0.1:{port}/connection/websocket", "centrifugo"
        return command, f"ws://127.0.0.1:{port}/", "text"
    if name == "floor-c":
        return f"{SERVERS}/floor_c/floor_c --port {port}", f"ws://127.0.0.1:{port}/", "text"
    raise SystemExit(f"unknown variant {name!r}")


def build_loadgen() -> str | None:
    """Build the C load generator; why it cannot be used, or None when built."""
    if shutil.which("make") is None or shutil.which("gcc") is None:
        return "gcc and make are needed for the C load generator"
    done = subprocess.run(["make", "-s", "-C", str(LOADGEN)], capture_output=True, text=True)
    if done.returncode != 0:
        return f"make -C {LOADGEN} failed: {done.stderr.strip()[-300:]}"
    return None


def loadgen_argv(opts: BenchOptions, storm_timeout: float) -> list[str]:
    """The C generator's command line for ``opts`` (pinned to ``opts.cpu``)."""
    assert opts.url is not None
    parts = urlsplit(opts.url)
    argv = [str(LOADGEN / "loadgen"), "--mode", "storm", "--port", str(parts.port),
            "--path", parts.path or "/", "--dialect", opts.dialect, "-n", str(opts.subscribers),
            "--channel", opts.channel, "--channels", str(opts.channels),
            "--storm-timeout", str(storm_timeout)]  # fmt: skip
    if opts.namespace:
        argv += ["--namespace", opts.namespace]
    if opts.token:
        argv += ["--token", opts.token]
    return argv if opts.cpu is None else ["taskset", "-c", str(opts.cpu), *argv]


async def c_storm(opts: BenchOptions, storm_timeout: float = 60.0) -> dict[str, Any]:
    """One restart storm driven by the C generator, through the Python bench's phases.

    The server is started as ``hubbub bench`` starts it; ``Coordinator`` reads its
    CPU at "connected", restarts it in a thread right after ``go <time>`` is
    written (the time taken just before the signal, as the Python bench's) and
    reads its CPU at "back", while every client is still connected; the figures
    come from ``connect_figures``. RuntimeError when the generator fails or times out.
    """
    assert opts.url is not None and opts.server_cmd is not None
    raise_nofile()
    if opts.cpu is not None:  # this harness shares the generator's CPU, as in the Python bench
        os.sched_setaffinity(0, {opts.cpu})
    parts = urlsplit(opts.url)
    with tempfile.TemporaryDirectory(prefix="hubbub-storm-c-") as tmp:
        server = ManagedServer(
            shlex.split(opts.server_cmd), parts.port or 80, opts.server_cpu,
            Path(tmp) / "server.log", ws_path=parts.path or "/",
        )  # fmt: skip
        await asyncio.to_thread(server.start)
        coordinator = Coordinator(opts, server, server.pid)
        coordinator.facts["rss_before_kb"] = rss_kb(server.pid)
        coordinator.facts["server_cpu_start"] = cpu_seconds(server.pid)
        try:
            generator = await asyncio.create_subprocess_exec(
                *loadgen_argv(opts, storm_timeout),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                result = await _drive(generator, coordinator, storm_timeout)
            finally:
                if generator.returncode is None:
                    generator.kill()
                    await generator.wait()
        finally:
            for task in coordinator.tasks:  # a restart still going ends before the stop
                await asyncio.gather(task, return_exceptions=True)
            await asyncio.to_thread(server.stop)
    phase = {
        "seconds": result["connect_seconds"],
        "failed_attempts": result["connect_failed_attempts"],
        "cpu_s": result["connect_loadgen_cpu"] * result["connect_seconds"],
    }
    storm = {k: result[k] for k in ("t_storm", "t_back", "recovered", "failed_attempts")}
    storm["cpu_s"] = result["loadgen_cpu_s"]
    summary: dict[str, Any] = {
        "scenario": "connect",
        "loadgen": "c",
        "target": opts.url,
        "dialect": opts.dialect,
        "generator": result,
        **connect_figures(opts, [phase], [storm], coordinator.facts),
    }
    if "loadgen_runqueue" in result:
        summary["storm"]["loadgen_runqueue"] = result["loadgen_runqueue"]
    return summary


async def _drive(
    generator: asyncio.subprocess.Process, coordinator: Coordinator, storm_timeout: float
) -> dict[str, Any]:
    """The C generator's side of one storm: connected, go + restart, result, back."""
    assert generator.stdin is not None and generator.stdout is not None
    assert generator.stderr is not None

    async def failure(what: str) -> RuntimeError:
        if generator.returncode is None:
            generator.kill()
        await generator.wait()
        assert generator.stderr is not None
        said = (await generator.stderr.read()).decode(errors="replace").strip()[-500:]
        return RuntimeError(f"{what} (exit {generator.returncode}): {said}")

    line = await asyncio.wait_for(generator.stdout.readline(), 90)
    if not line or "connected" not in json.loads(line):
        raise await failure("the C load generator did not connect its clients")
    await coordinator.before("connected")
    generator.stdin.write(f"go {time.monotonic()!r}\n".encode())
    await generator.stdin.drain()
    await coordinator.after("storm")  # the restart task: its signal follows at once
    line = await asyncio.wait_for(generator.stdout.readline(), storm_timeout + 30)
    if not line:
        raise await failure("the C load generator ended without its result")
    result: dict[str, Any] = json.loads(line)
    if result["timed_out"] or result["errors"]:
        raise await failure("; ".join(result["errors"]))
    await coordinator.before("back")  # the restart ended; the restarted server's CPU
    generator.stdin.close()  # the generator closes its clients and exits
    if await asyncio.wait_for(generator.wait(), 35) != 0:
        raise await failure("the C load generator failed after the storm")
    return result


def nan(value: float | None) -> float:
    return float("nan") if value is None else value


def back_at(result: dict[str, Any], share: str) -> float:
    """When that share of the clients was back, from the signal (C generator only)."""
    return float(result.get("generator", {}).get("back_s", {}).get(share, float("nan")))


ROWS = (
    ("storm s", lambda r: r["storm"]["seconds"], "{:.2f}"),
    ("50 % of clients back s", lambda r: back_at(r, "p50"), "{:.2f}"),
    ("90 % of clients back s", lambda r: back_at(r, "p90"), "{:.2f}"),
    ("stop s", lambda r: nan(r["storm"].get("stop_s")), "{:.2f}"),
    ("start s", lambda r: nan(r["storm"].get("start_s")), "{:.2f}"),
    ("refused attempts", lambda r: r["storm"]["failed_attempts"], "{:,.0f}"),
    ("connects/s", lambda r: r["connects_per_s"], "{:,.0f}"),
    ("server CPU us/connect", lambda r: nan(r.get("server_us_per_connect")), "{:.0f}"),
    ("server CPU ms to stop", lambda r: 1000 * nan(r["storm"].get("stop_cpu_s")), "{:.0f}"),
    ("server CPU us/reconnect", lambda r: nan(r["storm"].get("reconnect_us_per_client")), "{:.0f}"),
    ("load generator CPU % (connect)", lambda r: 100 * max(r["connect_loadgen_cpu"]), "{:.0f}"),
    ("load generator CPU % (storm)", lambda r: 100 * max(r["storm"]["loadgen_cpu"]), "{:.0f}"),
    (
        "load generator waited runnable % (storm)",
        lambda r: 100 * nan(r["storm"].get("loadgen_runqueue")),
        "{:.0f}",
    ),
)


def hot(result: dict[str, Any]) -> bool:
    """The generator was above HOT of its core during the storm."""
    return max(result["storm"]["loadgen_cpu"], default=0.0) > HOT


def cell(values: list[float], fmt: str) -> str:
    values = [v for v in values if v == v]  # NaN: not measured
    if not values:
        return "-"
    median = statistics.median(values)
    return f"{fmt.format(median)} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def render(results: dict[str, list[dict[str, Any]]], runs: int, clients: int, loadgen: str) -> str:
    names = [n for n, rs in results.items() if rs]
    lines = [
        f"{clients} clients, reconnect storm after a restart; {runs} runs, interleaved "
        f"(median [min-max]); {loadgen} load generator",
        "",
        "| | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for label, get, fmt in ROWS:
        cells = []
        for n in names:
            text = cell([get(r) for r in results[n]], fmt)
            if label == "storm s" and any(hot(r) for r in results[n]):
                text += " !"
            cells.append(text)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for other in NODE_WS:
        if "hubbub" in results and other in results:
            pairs = [
                a["storm"]["seconds"] / b["storm"]["seconds"]
                for a, b in zip(results["hubbub"], results[other], strict=False)
            ]
            lines += ["", f"hubbub / {other} storm, per run: {cell(pairs, '{:.2f}')}"]
    for n in names:
        over = [r for r in results[n] if hot(r)]
        if over:
            top = max(max(r["storm"]["loadgen_cpu"]) for r in over)
            lines += [
                "",
                f"WARNING (!): in {len(over)} of {len(results[n])} {n} storms the load generator "
                f"was above {HOT:.0%} of its core (up to {top:.0%}): those storms are partly the "
                "generator's, not only the server's.",
            ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("-n", "--clients", type=int, default=5000)
    parser.add_argument(
        "--servers",
        default="hubbub,node-ws,node-ws-close,node-ws-centrifugo",
        help=f"comma-separated, of: {', '.join(VARIANTS)} (default: %(default)s)",
    )
    parser.add_argument("--before-src", type=Path, help="a tree of hubbub before the change")
    parser.add_argument(
        "--loadgen", choices=("c", "python"), help="the load generator (default: c when it builds)"
    )
    parser.add_argument(
        "--storm-timeout", type=float, default=60.0, help="C generator: the storm's bound, s"
    )
    parser.add_argument("--json", help="write the raw summaries here")
    args = parser.parse_args()
    names = args.servers.split(",")
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"--servers: unknown {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    if "hubbub-before" in names and args.before_src is None:
        parser.error("--servers: hubbub-before needs --before-src")
    if args.before_src is not None and "hubbub-before" not in names:
        names.insert(1, "hubbub-before")
    loadgen = args.loadgen
    if loadgen != "python":
        why = build_loadgen()
        if why is not None and loadgen == "c":
            raise SystemExit(f"--loadgen c: {why}")
        if why is not None:
            print(
                f"the C load generator cannot be used ({why}): the Python one runs", file=sys.stderr
            )
        loadgen = "python" if why is not None else "c"
    two = (os.cpu_count() or 1) >= 2
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    # Each hubbub tree starts from its bytecode, as an installed one does.
    for tree in (ROOT, args.before_src):
        if tree is not None:
            compile_bytecode(tree / "src" / "hubbub")
    with tempfile.TemporaryDirectory(prefix="hubbub-storm-") as tmp:
        config = hubbub_config(tmp, "bench-api-key")
        for run in range(args.runs):
            for name in names:
                port = free_port()
                command, url, dialect = variant_options(name, args.before_src, config, port)
                opts = BenchOptions(
                    scenario="connect",
                    url=url,
                    dialect=dialect,
                    server_cmd=command,
                    subscribers=args.clients,
                    storm="restart",
                    cpu=1 if two else None,
                    server_cpu=0 if two else None,
                    quiet=True,
                )
                try:
                    if loadgen == "c":
                        summary = run_async(c_storm(opts, args.storm_timeout))
                    else:
                        summary = run_async(run_bench(opts))
                except (OSError, RuntimeError, TimeoutError) as exc:
                    print(f"run {run + 1} {name}: failed: {exc}", file=sys.stderr)
                    continue
                results[name].append(summary)
                storm = summary["storm"]
                cpu = max(storm["loadgen_cpu"], default=float("nan"))
                print(
                    f"run {run + 1} {name:14s} storm {storm['seconds']:.2f} s (stop {storm.get('stop_s', 0):.2f}, "
                    f"start {storm.get('start_s', 0):.2f}, refused {storm['failed_attempts']}, "
                    f"{loadgen} load generator {cpu:.0%} of its core)",
                    file=sys.stderr,
                )
                if cpu > HOT:
                    print(
                        f"WARNING: the load generator used {cpu:.0%} of its core in this storm "
                        f"(above {HOT:.0%}): the figure is partly the generator's",
                        file=sys.stderr,
                    )
    print(render(results, args.runs, args.clients, loadgen))
    if args.json:
        slim = {
            n: [{k: v for k, v in r.items() if k != "latency_hist"} for r in rs]
            for n, rs in results.items()
        }
        Path(args.json).write_text(json.dumps(slim, indent=1) + "\n")


if __name__ == "__main__":
    main()
