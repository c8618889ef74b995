"""Fan-out with Prometheus metrics on and off, side by side in one run.

Each run starts ``hubbub serve`` twice with the same configuration but for
``prometheus.enabled`` (off, then on: interleaved, so drift hits both alike),
pinned to CPU 0 with the load generator on CPU 1, and measures deliveries per
second at saturation (``hubbub bench fanout``). While metrics are on, a scraper
reads ``/metrics`` every ``--scrape-every`` seconds (Prometheus's default is
15 s; 1 s is the pessimistic case), so the figure includes scrapes too.
Reports medians with min and max per mode and their ratio. Loopback only;
every run bounded in time.

    python benchmarks/metrics_overhead.py --subscribers 1000 --seconds 5 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

from hubbub.tools.runner import free_port, hubbub_config, run_async, run_bench
from hubbub.tools.scenarios import BenchOptions

API_KEY = "bench-api-key"


class Scraper(threading.Thread):
    """GET ``url`` every ``every`` seconds until stopped; counts good scrapes."""

    def __init__(self, url: str, every: float) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.every = every
        self.scrapes = 0
        self.failures = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as response:
                    if response.status == 200 and b"centrifugo_node_num_clients" in response.read():
                        self.scrapes += 1
                        continue
            except OSError:
                pass
            self.failures += 1


def configs(directory: str) -> dict[str, str]:
    """The two configuration files: metrics off and on, nothing else different."""
    base = json.loads(Path(hubbub_config(directory, API_KEY)).read_text())
    paths = {}
    for mode in ("off", "on"):
        data = {**base, "prometheus": {"enabled": mode == "on"}}
        path = Path(directory) / f"metrics-{mode}.json"
        path.write_text(json.dumps(data))
        paths[mode] = str(path)
    return paths


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} vCPU {model or platform.processor()}, Python {platform.python_version()}"
    )


def one_run(config: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    two = (os.cpu_count() or 1) >= 2
    opts = BenchOptions(
        scenario="fanout",
        url=f"ws://127.0.0.1:{port}/connection/websocket",
        server_cmd=f"{sys.executable} -m hubbub.cli.main serve --config {config} --port {port}",
        subscribers=args.subscribers,
        seconds=args.seconds,
        payload=args.payload,
        cpu=1 if two else None,
        server_cpu=0 if two else None,
        quiet=True,
    )
    scraper = Scraper(f"http://127.0.0.1:{port}/metrics", args.scrape_every)
    if mode == "on":
        scraper.start()
    try:
        result = run_async(run_bench(opts))
    finally:
        scraper.done.set()
    result["scrapes"] = scraper.scrapes
    result["scrape_failures"] = scraper.failures
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--payload", type=int, default=100, help="approximate data bytes")
    parser.add_argument("--scrape-every", type=float, default=1.0, help="seconds between scrapes")
    parser.add_argument("--json", help="write every run's summary here")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"off": [], "on": []}
    summaries: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hubbub-metrics-bench-") as directory:
        paths = configs(directory)
        for run in range(args.runs):
            for mode in ("off", "on"):
                result = one_run(paths[mode], mode, args)
                summaries.append({"mode": mode, "run": run + 1, **result})
                rates[mode].append(result["deliveries_per_s"])
                scrapes = f", {result['scrapes']} scrapes" if mode == "on" else ""
                print(
                    f"run {run + 1} metrics {mode:>3}: {result['deliveries_per_s']:,.0f} "
                    f"deliveries/s (loadgen CPU {max(result['loadgen_cpu']):.0%}, "
                    f"lost {result['lost']}{scrapes})",
                    flush=True,
                )
    print(
        f"\n{machine()}; fan-out, 1 channel, {args.subscribers} subscribers, "
        f"~{args.payload} B payload, {args.seconds:g} s per run, {args.runs} runs per mode"
    )
    for mode in ("off", "on"):
        values = rates[mode]
        print(
            f"metrics {mode:>3}: median {statistics.median(values):,.0f} deliveries/s "
            f"(min {min(values):,.0f}, max {max(values):,.0f})"
        )
    ratio = statistics.median(rates["on"]) / statistics.median(rates["off"])
    print(f"on/off: {ratio:.3f} ({(ratio - 1) * 100:+.1f} %)")
    for summary in summaries:
        for warning in summary.get("warnings", []):
            print(f"WARNING ({summary['mode']} run {summary['run']}): {warning}")
    if args.json:
        Path(args.json).write_text(json.dumps(summaries, indent=1, default=str))


if __name__ == "__main__":
    main()
