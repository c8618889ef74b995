# ruff: noqa: E501
"""The reconnect storm after a restart, paired: hubbub (and an older tree) against Node ``ws``.

    python benchmarks/storm.py --runs 5                                   # hubbub, node-ws
    git worktree add /tmp/before main   # or: git archive main | tar -x -C /tmp/before
    python benchmarks/storm.py --runs 5 --before-src /tmp/before          # + hubbub-before
    python benchmarks/storm.py --runs 3 --servers hubbub,node-ws,floor-c  # + the C floor

Each run is one ``hubbub bench connect -n N --storm restart``: N clients connect
(hubbub: connect and subscribe), then the bench stops the server (SIGTERM, waits
for the process to exit), starts it again and times from the signal until every
client is back. The variants run interleaved (run 1 of each, then run 2, ...),
so that a noisy neighbour on this shared machine hurts them alike. Server on
CPU 0, load generator on CPU 1. Each hubbub tree's bytecode is compiled first
(``PYTHONDONTWRITEBYTECODE`` would make every start compile every module).

Printed per variant: the storm (median [min-max]), how long the stop and the
start took as the bench saw them, the refused or failed connection attempts
during the storm, the server's CPU per connect (first connect phase), its CPU
to stop, and the restarted server's CPU per reconnect. Loopback only; bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from hubbub.tools.runner import compile_bytecode, free_port, hubbub_config, run_async, run_bench
from hubbub.tools.scenarios import BenchOptions

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SERVERS = HERE / "servers"


def variant_options(name: str, before: Path | None, config: str, port: int) -> tuple[str, str, str]:
    """(server command, url, dialect) of a variant."""
    if name in ("hubbub", "hubbub-before"):
        src = ROOT if name == "hubbub" else before
        assert src is not None
        argv = [
            sys.executable,
            "-m",
            "hubbub.cli.main",
            "serve",
            "--config",
            config,
            "--port",
            str(port),
        ]
        command = f"env PYTHONPATH={shlex.quote(str(src / 'src'))} " + shlex.join(argv)
        return command, f"ws://127.0.0.1:{port}/connection/websocket", "centrifugo"
    if name == "node-ws":
        return f"node {SERVERS}/node_ws/server.js --port {port}", f"ws://127.0.0.1:{port}/", "text"
    if name == "floor-c":
        return f"{SERVERS}/floor_c/floor_c --port {port}", f"ws://127.0.0.1:{port}/", "text"
    raise SystemExit(f"unknown variant {name!r}")


ROWS = (
    ("storm s", lambda r: r["storm"]["seconds"], "{:.2f}"),
    ("stop s", lambda r: r["storm"].get("stop_s", float("nan")), "{:.2f}"),
    ("start s", lambda r: r["storm"].get("start_s", float("nan")), "{:.2f}"),
    ("refused attempts", lambda r: r["storm"]["failed_attempts"], "{:,.0f}"),
    ("connects/s", lambda r: r["connects_per_s"], "{:,.0f}"),
    ("server CPU us/connect", lambda r: r.get("server_us_per_connect", float("nan")), "{:.0f}"),
    (
        "server CPU ms to stop",
        lambda r: 1000 * r["storm"].get("stop_cpu_s", float("nan")),
        "{:.0f}",
    ),
    (
        "server CPU us/reconnect",
        lambda r: r["storm"].get("reconnect_us_per_client", float("nan")),
        "{:.0f}",
    ),
    ("load generator CPU %", lambda r: 100 * max(r["loadgen_cpu"]), "{:.0f}"),
)


def cell(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    return f"{fmt.format(median)} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def render(results: dict[str, list[dict[str, Any]]], runs: int, clients: int) -> str:
    names = [n for n, rs in results.items() if rs]
    lines = [
        f"{clients} clients, reconnect storm after a restart; {runs} runs, interleaved (median [min-max])",
        "",
        "| | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for label, get, fmt in ROWS:
        lines.append(
            f"| {label} | "
            + " | ".join(cell([get(r) for r in results[n]], fmt) for n in names)
            + " |"
        )
    if "hubbub" in results and "node-ws" in results:
        pairs = [
            a["storm"]["seconds"] / b["storm"]["seconds"]
            for a, b in zip(results["hubbub"], results["node-ws"], strict=False)
        ]
        lines += ["", f"hubbub / node-ws storm, per run: {cell(pairs, '{:.2f}')}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("-n", "--clients", type=int, default=5000)
    parser.add_argument("--servers", default="hubbub,node-ws")
    parser.add_argument("--before-src", type=Path, help="a tree of hubbub before the change")
    parser.add_argument("--json", help="write the raw summaries here")
    args = parser.parse_args()
    names = args.servers.split(",")
    if args.before_src is not None and "hubbub-before" not in names:
        names.insert(1, "hubbub-before")
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
                    summary: dict[str, Any] = run_async(run_bench(opts))
                except (OSError, RuntimeError, TimeoutError) as exc:
                    print(f"run {run + 1} {name}: failed: {exc}", file=sys.stderr)
                    continue
                results[name].append(summary)
                storm = summary["storm"]
                print(
                    f"run {run + 1} {name:14s} storm {storm['seconds']:.2f} s (stop {storm.get('stop_s', 0):.2f}, "
                    f"start {storm.get('start_s', 0):.2f}, refused {storm['failed_attempts']})",
                    file=sys.stderr,
                )
    print(render(results, args.runs, args.clients))
    if args.json:
        slim = {
            n: [{k: v for k, v in r.items() if k != "latency_hist"} for r in rs]
            for n, rs in results.items()
        }
        Path(args.json).write_text(json.dumps(slim, indent=1) + "\n")


if __name__ == "__main__":
    main()
