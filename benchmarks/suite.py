# ruff: noqa: E501
"""The side-by-side benchmark suite: one command, every workload, every server.

    python benchmarks/suite.py            # full: 3 runs each (~12-15 min)
    python benchmarks/suite.py --quick    # 1 run, smaller loads (~3 min)

Each measurement is one ``hubbub bench`` subprocess that starts the server
itself (pinned to CPU 0 with ``taskset``), pins itself to CPU 1, and writes a
JSON summary. Servers: hubbub (memory engine, Centrifugo protocol), Node ``ws``
broadcast, python-socketio room broadcast, ``websockets`` broadcast(), and the
floors: the Python one (benchmarks/servers/floor.py) and the C one
(benchmarks/servers/floor_c, built here with make and gcc). Non-hubbub servers
are driven in plain mode. The ``floor-ratio`` workload runs
benchmarks/floor_ratio.py: hubbub against both floors at 64, 256 and 1024
publications in flight, driven by the C load generator (benchmarks/loadgen_c),
since one Python bench process saturates before these servers do.
The ``connect`` workload (connect rate, then the reconnect storm after a
restart) is driven by the C load generator too (benchmarks/loadgen_c
``--mode storm``, through benchmarks/storm.py's ``c_storm``): the Python bench
saturates its core during the storm. It speaks hubbub's Centrifugo protocol and
the text dialect; socketio keeps ``hubbub bench connect --storm restart``, and
every server does when the C generator does not build (said loudly).
The ``scaleout`` workload runs benchmarks/scaleout.py (memory 1 node, Redis 2
workers, Redis Cluster 2 nodes, NATS 2 nodes, and publishes/s of one connection
on Redis; it starts redis-server, a 3-master cluster and nats-server itself).
Figures are medians over the runs with min and max; ratios compare medians of
the same suite run. Needs: ``pip install -r benchmarks/requirements.txt`` and
``npm install`` in benchmarks/servers/node_ws. Loopback only; every run bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import floor_ratio  # benchmarks/floor_ratio.py, next to this file
import storm  # benchmarks/storm.py: the C generator's storm (c_storm) and its rows

from hubbub.tools.managed import compile_bytecode
from hubbub.tools.runner import hubbub_config, run_async
from hubbub.tools.scenarios import BenchOptions

HERE = Path(__file__).resolve().parent
SERVERS_DIR = HERE / "servers"

# name -> (server command with {port}, url, dialect: "text", "socketio", "centrifugo"; None: hubbub)
SERVERS: dict[str, tuple[str | None, str | None, str | None]] = {
    "hubbub": (None, None, None),
    "node-ws": (f"node {SERVERS_DIR}/node_ws/server.js --port {{port}}", "ws://127.0.0.1:{port}/", "text"),
    # Node ws doing hubbub's per-client work: Centrifugo's connect, subscribe, publish.
    "node-ws-centrifugo": (
        f"node {SERVERS_DIR}/node_ws/server.js --port {{port}}{storm.NODE_WS['node-ws-centrifugo']}",
        "ws://127.0.0.1:{port}/connection/websocket",
        "centrifugo",
    ),
    "websockets": (
        f"{sys.executable} {SERVERS_DIR}/websockets_broadcast.py --port {{port}}",
        "ws://127.0.0.1:{port}/",
        "text",
    ),
    "socketio": (
        f"{sys.executable} {SERVERS_DIR}/socketio_room.py --port {{port}}",
        "ws://127.0.0.1:{port}/",
        "socketio",
    ),
    "floor": (f"{sys.executable} {SERVERS_DIR}/floor.py --port {{port}}", "ws://127.0.0.1:{port}/", "text"),
    "floor-c": (f"{SERVERS_DIR}/floor_c/floor_c --port {{port}}", "ws://127.0.0.1:{port}/", "text"),
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def workloads(quick: bool) -> dict[str, dict[str, Any]]:
    """Workload -> bench arguments, the figure to keep, and how to read it."""
    n_idle, n_connect, seconds = (2000, 1000, 3) if quick else (10_000, 5_000, 5)
    return {
        "fanout": {
            "args": ["fanout", "-n", "1000", "--seconds", str(seconds)],
            "title": "fan-out saturation, 1 channel, 1000 subscribers, 100 B (deliveries/s)",
        },
        "fixed": {
            "args": ["fanout", "-n", "1000", "--rate", "50", "--seconds", str(seconds)],
            "title": "fixed 50 k deliveries/s, 1000 subscribers (latency)",
        },
        "idle": {
            "args": ["idle", "-n", str(n_idle), "--hold", "2", "--seconds", "2"],
            "title": f"{n_idle} idle connections on one channel (server RSS per connection)",
        },
        "connect": {
            "args": ["connect", "-n", str(n_connect), "--storm", "restart"],
            "clients": n_connect,  # the C generator's -n (benchmarks/storm.py)
            "title": f"{n_connect} clients: connect rate and reconnect storm after a restart",
        },
    }


#: The C generator's bound on one storm, s (storm.py's default).
STORM_TIMEOUT = 60.0
#: Dialects the C load generator speaks (benchmarks/loadgen_c).
C_DIALECTS = ("text", "centrifugo")


def storm_loadgen(server: str, c_problem: str | None) -> str:
    """Which generator drives ``server``'s connect workload: "c" or "python"."""
    if c_problem is not None:
        return "python"
    return "c" if server == "hubbub" or SERVERS[server][2] in C_DIALECTS else "python"


def c_storm_run(server: str, clients: int, config: str) -> dict[str, Any] | None:
    """One connect phase and restart storm on ``server`` by the C load generator.

    benchmarks/storm.py's ``c_storm``, in this process: the server starts as
    storm.py starts it (hubbub: ``hubbub serve`` with ``config``), on CPU 0, the
    generator and this harness on CPU 1 (this process's CPUs are given back after).
    Bounded by ``c_storm``'s own waits; a failure is printed and gives None.
    """
    port = free_port()
    if server == "hubbub":
        command, url, dialect = storm.variant_options("hubbub", None, config, port)
    else:
        template, url_template, plain = SERVERS[server]
        assert template is not None and url_template is not None and plain is not None
        command, url, dialect = template.format(port=port), url_template.format(port=port), plain
    two = (os.cpu_count() or 1) >= 2
    opts = BenchOptions(
        scenario="connect", url=url, dialect=dialect, server_cmd=command, subscribers=clients,
        storm="restart", cpu=1 if two else None, server_cpu=0 if two else None, quiet=True,
    )  # fmt: skip
    cpus = os.sched_getaffinity(0)
    try:
        return run_async(storm.c_storm(opts, STORM_TIMEOUT))
    except Exception as exc:  # reported, not raised: the other servers' runs go on
        print(f"  {server}: failed (C load generator): {exc}", file=sys.stderr)
        return None
    finally:
        os.sched_setaffinity(0, cpus)


def run_bench(server: str, workload: list[str], json_path: str) -> dict[str, Any] | None:
    command, url, dialect = SERVERS[server]
    args = [sys.executable, "-m", "hubbub.cli.main", "bench", *workload]
    args += ["--cpu", "1", "--server-cpu", "0", "--json", json_path, "--quiet"]
    if (os.cpu_count() or 1) < 2:
        args = [a for a in args if a not in ("--cpu", "1", "--server-cpu", "0")]
    if command is not None:
        port = free_port()
        args += ["--url", str(url).format(port=port), "--server-cmd", command.format(port=port)]
        if dialect != "centrifugo":  # another server speaking Centrifugo's protocol: as hubbub
            args += ["--plain", str(dialect)]
    if server == "socketio" and "--rate" in workload:
        args[args.index("--rate") + 1] = "5"  # 50 k/s is beyond it: 5 k deliveries/s
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        print(f"  {server}: timed out", file=sys.stderr)
        return None
    if done.returncode != 0:
        print(f"  {server}: failed: {done.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(Path(json_path).read_text())
    return result


METRICS: dict[str, list[tuple[str, Callable[[dict[str, Any]], float], str]]] = {
    "fanout": [
        ("deliveries/s", lambda s: s["deliveries_per_s"], "{:,.0f}"),
        ("server CPU ns/delivery", lambda s: s.get("server_ns_per_delivery", float("nan")), "{:,.0f}"),
        ("server CPU %", lambda s: 100 * s.get("server_cpu", float("nan")), "{:.0f}"),
    ],
    "fixed": [
        ("p50 ms", lambda s: s["latency_us"]["p50_us"] / 1000, "{:.2f}"),
        ("p99 ms", lambda s: s["latency_us"]["p99_us"] / 1000, "{:.2f}"),
        ("p99.9 ms", lambda s: s["latency_us"]["p99_9_us"] / 1000, "{:.2f}"),
        ("deliveries/s", lambda s: s["deliveries_per_s"], "{:,.0f}"),
    ],
    "idle": [("KB/conn", lambda s: s.get("rss_per_connection_bytes", float("nan")) / 1024, "{:.2f}")],
    # storm.py's rows: one meaning whichever generator made the figure
    "connect": [next(row for row in storm.ROWS if row[0] == label) for label in (
        "connects/s", "storm s", "50 % of clients back s", "90 % of clients back s",
        "load generator CPU % (connect)", "load generator CPU % (storm)")],
}  # fmt: skip


def figure(get: Callable[[dict[str, Any]], float], summary: dict[str, Any]) -> float:
    """One figure of one run; NaN when that run does not have it (the Python
    generator has no "50 % back"), so a missing key never ends the suite."""
    try:
        return float(get(summary))
    except (KeyError, TypeError, ValueError, IndexError):
        return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description="hubbub side-by-side benchmark suite")
    parser.add_argument("--quick", action="store_true", help="1 run, smaller loads")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, quick 1)")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--workloads", default="fanout,fixed,idle,connect,floor-ratio,scaleout")
    parser.add_argument("--out", default=str(HERE.parent / "docs" / "benchmarks"))
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    servers = args.servers.split(",")
    chosen = workloads(args.quick)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    started = time.monotonic()
    problem = floor_ratio.build()  # the C floor and the C load generator
    if problem is not None:
        print(f"no C floor: {problem}", file=sys.stderr)
        servers = [s for s in servers if s != "floor-c"]
    c_problem = storm.build_loadgen()
    if c_problem is not None and "connect" in args.workloads.split(","):
        print(
            f"WARNING: the C load generator cannot be used ({c_problem}): the connect "
            "workload's storm comes from the Python generator, which saturates its core",
            file=sys.stderr,
        )
    compile_bytecode(storm.ROOT / "src" / "hubbub")  # as `hubbub bench` does before it serves
    with tempfile.TemporaryDirectory() as tmp:
        config = hubbub_config(tmp, "bench-api-key")  # hubbub's config for the C storm
        for run in range(runs):
            for workload in args.workloads.split(","):
                if workload in ("floor-ratio", "scaleout"):
                    continue  # their own runs, after the loop
                for server in servers:
                    print(f"run {run + 1}/{runs}: {workload} on {server}", file=sys.stderr)
                    path = f"{tmp}/{workload}-{server}-{run}.json"
                    if workload == "connect" and storm_loadgen(server, c_problem) == "c":
                        summary = c_storm_run(server, chosen[workload]["clients"], config)
                    else:
                        summary = run_bench(server, chosen[workload]["args"], path)
                    if summary is not None:
                        results.setdefault(workload, {}).setdefault(server, []).append(summary)
    report = render(results, chosen, servers, runs, args.quick, c_problem)
    if "floor-ratio" in args.workloads.split(","):
        report += "\n\n" + floor_table(runs, 3 if args.quick else 5, problem)
    if "scaleout" in args.workloads.split(","):
        report += "\n\n" + scaleout(runs, 2 if args.quick else 5)
    elapsed = time.monotonic() - started
    print(report)
    print(f"\nsuite wall time: {elapsed / 60:.1f} min", file=sys.stderr)
    (out / "results.md").write_text(report + "\n")
    (out / "results.json").write_text(json.dumps(slim(results), indent=1) + "\n")
    plots(results, servers, out)


def floor_table(runs: int, seconds: float, problem: str | None) -> str:
    """hubbub / floor at 64, 256 and 1024 publications in flight (benchmarks/floor_ratio.py)."""
    title = "### fan-out against the floors at several publications in flight (C load generator)"
    if problem is not None:
        return f"{title}\n\nnot run: {problem}"
    return f"{title}\n\n" + floor_ratio.render(floor_ratio.run_all(runs, seconds), runs)


def scaleout(runs: int, seconds: float) -> str:
    """The scale-out table (benchmarks/scaleout.py), or why it is missing."""
    print(f"scaleout: {runs} run(s) of {seconds:g} s per setup", file=sys.stderr)
    command = [
        sys.executable,
        str(HERE / "scaleout.py"),
        "--runs",
        str(runs),
        "--seconds",
        str(seconds),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600 * runs)
    except subprocess.TimeoutExpired:
        return "### scaling out\n\ntimed out"
    if done.returncode != 0:
        return f"### scaling out\n\nfailed: {done.stderr.strip()[-500:]}"
    return "### scaling out\n\n" + done.stdout.strip()


def slim(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    return {
        w: {s: [{k: v for k, v in r.items() if k != "latency_hist"} for r in rs] for s, rs in by.items()}
        for w, by in results.items()
    }  # fmt: skip


def render(
    results: dict[str, dict[str, list[dict[str, Any]]]],
    chosen: dict[str, dict[str, Any]],
    servers: list[str],
    runs: int,
    quick: bool,
    c_problem: str | None = None,
) -> str:
    lines = [f"Runs per figure: {runs} (median [min-max]){' - QUICK' if quick else ''}", ""]
    for workload, by_server in results.items():
        lines += [f"### {chosen[workload]['title']}", ""]
        if workload == "connect":
            lines += [connect_generators(by_server, c_problem), ""]
        names = [s for s in servers if by_server.get(s)]
        for label, get, fmt in METRICS[workload]:
            values = {
                s: [v for v in (figure(get, r) for r in by_server[s]) if v == v] for s in names
            }
            medians = {s: statistics.median(vs) for s, vs in values.items() if vs}
            if not medians:
                continue  # no run has it (50 % back from the Python generator)
            lines.append(f"| {label} | " + " | ".join(names) + " |")
            lines.append("| --- |" + " --- |" * len(names))
            cells = [
                f"{fmt.format(medians[s])} [{fmt.format(min(values[s]))}-{fmt.format(max(values[s]))}]"
                if s in medians else "-"
                for s in names
            ]  # fmt: skip
            lines.append("| median [min-max] | " + " | ".join(cells) + " |")
            if "hubbub" in medians and not label.startswith("load generator"):
                ratios = [
                    f"{medians['hubbub'] / medians[s]:.2f}x" if medians.get(s) else "-"
                    for s in names
                ]
                lines.append("| hubbub / this | " + " | ".join(ratios) + " |")
            lines.append("")
        notes = []
        for s, rs in by_server.items():
            for r in rs:
                notes += [f"{s}: {w}" for w in r.get("warnings", [])]
                if r.get("lost"):
                    notes.append(f"{s}: {r['lost']} lost")
                cpu = max(r.get("loadgen_cpu", [0]))
                if workload in ("fanout",):
                    notes.append(f"{s}: bench CPU {cpu:.0%}")
                if workload == "connect":
                    notes += generator_notes(s, r)
        if notes:
            lines += ["Notes: " + "; ".join(sorted(set(notes))), ""]
    return "\n".join(lines)


def generator_notes(server: str, summary: dict[str, Any]) -> list[str]:
    """A connect phase or storm whose load generator was above storm.HOT of its core."""
    notes = []
    rows = {label: get for label, get, _ in storm.ROWS}
    for phase in ("connect", "storm"):
        top = figure(rows[f"load generator CPU % ({phase})"], summary) / 100
        if top > storm.HOT:
            notes.append(
                f"{server}: the {summary.get('loadgen', 'python')} load generator used {top:.0%} "
                f"of its core in the {phase} phase (above {storm.HOT:.0%}): partly its figure"
            )
    return notes


def connect_generators(by_server: dict[str, list[dict[str, Any]]], c_problem: str | None) -> str:
    """Which load generator made the connect workload's figures, per server."""
    by = {
        g: [s for s, rs in by_server.items() if rs and rs[0].get("loadgen", "python") == g]
        for g in ("c", "python")
    }
    parts = []
    if by["c"]:
        parts.append(
            f"C load generator (benchmarks/loadgen_c --mode storm via benchmarks/storm.py) for "
            f"{', '.join(by['c'])}: connects/s is its connect phase, the storm and when 50 % / "
            "90 % of the clients were back its storm"
        )
    if by["python"]:
        why = (
            f"the C load generator cannot be used: {c_problem}"
            if c_problem is not None
            else "the C load generator speaks only the centrifugo and text dialects"
        )
        parts.append(
            f"Python load generator (`hubbub bench connect --storm restart`) for "
            f"{', '.join(by['python'])} ({why}; it has no 50 % / 90 % figures and saturates "
            "its core in a fast storm)"
        )
    text = "Load generators: " + "; ".join(parts) + "."
    return f"**WARNING: {text}**" if c_problem is not None else text


def plots(
    results: dict[str, dict[str, list[dict[str, Any]]]], servers: list[str], out: Path
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plots (pip install -r benchmarks/requirements.txt)")
        return
    from hubbub.tools.histogram import Histogram
    from hubbub.tools.report import percentile_curve

    if "fanout" in results:
        names = [s for s in servers if s in results["fanout"]]
        med = [
            statistics.median(r["deliveries_per_s"] for r in results["fanout"][s]) / 1e6
            for s in names
        ]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.bar(names, med, color=["#d62728" if n == "hubbub" else "#1f77b4" for n in names])
        ax.set_ylabel("M deliveries/s (median)")
        ax.set_title("fan-out, 1 channel, 1000 subscribers, 100 B, saturation", fontsize=10)
        for i, v in enumerate(med):
            ax.text(i, v, f"{v:.2f}", ha="center", va="bottom")
        fig.tight_layout()
        fig.savefig(out / "fanout.png", dpi=100)
        plt.close(fig)
    if "fixed" in results:
        fig, ax = plt.subplots(figsize=(7, 4))
        for s in servers:
            rs = results["fixed"].get(s)
            if not rs:
                continue
            merged = Histogram()
            for r in rs:
                merged.merge(Histogram.from_dict(r["latency_hist"]))
            points = percentile_curve(merged)
            ax.plot([1 / (1 - q / 100) for q, _ in points], [v / 1000 for _, v in points], label=s)
        ticks = [50, 90, 99, 99.9, 99.99]
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([1 / (1 - q / 100) for q in ticks], [f"p{q:g}" for q in ticks])
        ax.set_ylabel("latency, ms (log)")
        ax.set_title(
            "fixed rate, 1000 subscribers (50 k deliveries/s; socketio 5 k/s)", fontsize=10
        )
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "latency.png", dpi=100)
        plt.close(fig)


if __name__ == "__main__":
    main()
