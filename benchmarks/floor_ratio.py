# ruff: noqa: E501
"""hubbub against the floors at several publications in flight, with a C load generator.

    python benchmarks/floor_ratio.py                      # 3 runs, windows 64,256,1024, 5 s each
    python benchmarks/floor_ratio.py --runs 1 --seconds 3

Why a C load generator: one Python ``hubbub bench`` process reading 1000
sockets saturates its core (sampling every 10th subscriber's publications, and
framing in Python) before hubbub or the C floor do, so with it the servers wait
for the generator and their ratio says nothing. benchmarks/loadgen_c runs the
same workload (1000 subscribers on one channel, one publisher keeping WINDOW
publications in flight, 20 per write, ~100 B payloads, in flight measured at the
first subscriber and, for hubbub, by unanswered publish replies) at a fraction
of the CPU per delivery, so the server is the bottleneck; its CPU is reported
with every figure, and so is the share of the window each process waited,
runnable, for a CPU that another process held (from /proc/PID/schedstat: on a
shared machine, how much the other tenants took).

Servers, each started here pinned to CPU 0 (``taskset``), the generator on CPU 1:
hubbub (memory engine, the Centrifugo JSON protocol, the config ``hubbub bench``
uses), the C floor (benchmarks/servers/floor_c: epoll, one coalesced frame per
loop iteration written unchanged to every subscriber) and the Python floor
(benchmarks/servers/floor.py, the same on asyncio + uvloop). The floors get the
publications as bare text frames and send them as they came; hubbub sends each
as a Centrifugo push (~200 B on the wire for a ~100 B payload: the envelope and
the publisher's client info), and the kernel's cost of a write grows with its
bytes, so the C floor runs twice: with the same publications (``floor-c``) and
with publications as long as hubbub's deliveries (``floor-c-bytes``), which
compares the servers' work for the same bytes written.

Runs are interleaved (run 1 of every window and server, then run 2, ...), and a
ratio is taken per run from the two servers' runs next to each other in time,
then the median and range of those ratios are reported: on a shared machine
the load drifts over minutes, and adjacent runs see the same load.
Needs gcc and make (the C programs are built here). Loopback only, bounded.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FLOOR_C = HERE / "servers" / "floor_c"
LOADGEN = HERE / "loadgen_c"
SERVERS = ("hubbub", "floor-c", "floor-c-bytes", "floor")
#: The floors' payload when hubbub's wire bytes per delivery are not known yet.
DEFAULT_BYTES = 200
WINDOWS = (64, 256, 1024)


def build() -> str | None:
    """Build the C floor and the C load generator; why not, or None when built."""
    if shutil.which("make") is None or shutil.which("gcc") is None:
        return "gcc and make are needed for the C floor and the C load generator"
    for directory in (FLOOR_C, LOADGEN):
        done = subprocess.run(["make", "-s", "-C", str(directory)], capture_output=True, text=True)
        if done.returncode != 0:
            return f"make -C {directory} failed: {done.stderr.strip()[-300:]}"
    return None


def server_command(name: str, port: int, config: str) -> list[str]:
    if name == "hubbub":
        from hubbub.tools.runner import serve_argv

        return serve_argv(config, port)
    if name.startswith("floor-c"):
        return [str(FLOOR_C / "floor_c"), "--port", str(port)]
    return [sys.executable, str(HERE / "servers" / "floor.py"), "--port", str(port)]


def one_run(
    name: str, window: int, seconds: float, tmp: str, *, payload: int = 100, subscribers: int = 1000
) -> dict[str, Any] | None:
    """Start ``name`` on CPU 0, run the C load generator on CPU 1, stop the server."""
    from hubbub.tools.runner import ManagedServer, free_port, hubbub_config

    port = free_port()
    config = hubbub_config(tmp, "")
    server = ManagedServer(server_command(name, port, config), port, 0, Path(tmp) / f"{name}.log")
    try:
        server.start()
        command = [str(LOADGEN / "loadgen"), "--port", str(port), "-n", str(subscribers),
                   "--window", str(window), "--seconds", str(seconds), "--payload", str(payload),
                   "--server-pid", str(server.pid)]  # fmt: skip
        if name == "hubbub":
            command += ["--path", "/connection/websocket", "--dialect", "centrifugo"]
        done = subprocess.run(
            ["taskset", "-c", "1", *command], capture_output=True, text=True, timeout=seconds + 120
        )
    except (OSError, RuntimeError, TimeoutError, subprocess.TimeoutExpired) as exc:
        print(f"  {name} window {window}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    finally:
        server.stop()
    if done.returncode != 0:
        print(
            f"  {name} window {window}: loadgen failed: {done.stderr.strip()[-300:]}",
            file=sys.stderr,
        )
        return None
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def run_all(
    runs: int,
    seconds: float,
    windows: tuple[int, ...] = WINDOWS,
    servers: tuple[str, ...] = SERVERS,
) -> dict[int, dict[str, list[dict[str, Any] | None]]]:
    """window -> server -> one result per run (None where a run failed), interleaved."""
    results: dict[int, dict[str, list[dict[str, Any] | None]]] = {
        w: {s: [] for s in servers} for w in windows
    }
    with tempfile.TemporaryDirectory(prefix="hubbub-floor-") as tmp:
        for run in range(runs):
            for window in windows:
                wire = float(DEFAULT_BYTES)  # hubbub's bytes per delivery in this round
                overhead = 0.0  # the C floor's wire bytes per delivery less its --payload
                for name in servers:
                    print(
                        f"floor ratio: run {run + 1}/{runs}, window {window}, {name}",
                        file=sys.stderr,
                    )
                    # floor-c-bytes: deliveries as long as hubbub's of the same round.
                    payload = round(wire - overhead) if name == "floor-c-bytes" else 100
                    result = one_run(name, window, seconds, tmp, payload=payload)
                    if result is not None and name == "hubbub":
                        wire = result["wire_bytes_per_delivery"]
                    if result is not None and name == "floor-c":
                        overhead = result["wire_bytes_per_delivery"] - payload
                    results[window][name].append(result)
    return results


def paired_ratios(
    by: dict[str, list[dict[str, Any] | None]], server: str, other: str
) -> list[float]:
    """deliveries/s of ``server`` over ``other``, per run (the runs next to each other)."""
    return [
        a["deliveries_per_s"] / b["deliveries_per_s"]
        for a, b in zip(by.get(server, []), by.get(other, []), strict=False)
        if a and b and b["deliveries_per_s"]
    ]


def _cell(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


ROWS = (
    ("deliveries/s", lambda r: r["deliveries_per_s"], "{:,.0f}"),
    ("server CPU %", lambda r: 100 * r.get("server_cpu", float("nan")), "{:.0f}"),
    ("server CPU ns/delivery", lambda r: r.get("server_ns_per_delivery", float("nan")), "{:.0f}"),
    ("server waited for a CPU %", lambda r: 100 * r.get("server_runqueue", float("nan")), "{:.0f}"),
    (
        "server idle %",  # neither on a CPU nor waiting for one: waiting for work
        lambda r: (
            100 * (1 - r.get("server_cpu", float("nan")) - r.get("server_runqueue", float("nan")))
        ),
        "{:.0f}",
    ),
    ("load generator CPU %", lambda r: 100 * r["loadgen_cpu"][0], "{:.0f}"),
    (
        "load generator waited for a CPU %",
        lambda r: 100 * r.get("loadgen_runqueue", float("nan")),
        "{:.0f}",
    ),
    ("wire bytes/delivery", lambda r: r["wire_bytes_per_delivery"], "{:.0f}"),
    ("p50 latency ms", lambda r: r["latency_us"]["p50_us"] / 1000, "{:.1f}"),
    ("lost", lambda r: r["lost"], "{:.0f}"),
)


def render(results: dict[int, dict[str, list[dict[str, Any] | None]]], runs: int) -> str:
    """Markdown: the ratio table first, then each window's figures."""
    servers = list(next(iter(results.values())))
    lines = [
        f"Runs per figure: {runs} (median [min-max]); a ratio is taken per run, between runs next to each other in time",
        "",
        "| in flight | hubbub deliveries/s | hubbub / C floor | hubbub / C floor, same bytes | hubbub / Python floor | hubbub server CPU % | C floor server CPU % |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for window, by in results.items():
        hub = [r["deliveries_per_s"] for r in by.get("hubbub", []) if r]
        cpu = {
            s: [100 * r.get("server_cpu", float("nan")) for r in by.get(s, []) if r]
            for s in ("hubbub", "floor-c")
        }
        ratios = [
            _cell(paired_ratios(by, "hubbub", other), "{:.2f}")
            for other in ("floor-c", "floor-c-bytes", "floor")
        ]
        lines.append(
            f"| {window} | {_cell(hub, '{:,.0f}')} | {' | '.join(ratios)} | {_cell(cpu['hubbub'], '{:.0f}')} | {_cell(cpu['floor-c'], '{:.0f}')} |"
        )
    lines += [
        "",
        "C floor, same bytes: the C floor sent payloads as long as hubbub's deliveries of the same round",
        "(hubbub wraps a ~100 B publication in a Centrifugo push of ~200 B: the envelope and the publisher's client info).",
    ]
    for window, by in results.items():
        lines += [
            "",
            f"#### {window} publications in flight",
            "",
            "| | " + " | ".join(servers) + " |",
            "| --- |" + " --- |" * len(servers),
        ]
        for label, get, fmt in ROWS:
            lines.append(
                f"| {label} | "
                + " | ".join(_cell([get(r) for r in by[s] if r], fmt) for s in servers)
                + " |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--windows", default=",".join(map(str, WINDOWS)))
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--json", help="write the raw results here")
    args = parser.parse_args()
    problem = build()
    if problem:
        sys.exit(f"error: {problem}")
    started = time.monotonic()
    windows = tuple(int(w) for w in args.windows.split(","))
    results = run_all(args.runs, args.seconds, windows, tuple(args.servers.split(",")))
    print(render(results, args.runs))
    print(f"\nwall time: {(time.monotonic() - started) / 60:.1f} min", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(
            json.dumps({str(w): by for w, by in results.items()}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
