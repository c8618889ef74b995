"""How fast ``hubbub serve`` starts, paired: this tree against an older one.

    git worktree add /tmp/before main   # or: git archive main | tar -x -C /tmp/before
    python benchmarks/startup.py --runs 7 --before-src /tmp/before

Four figures per tree and run, the trees interleaved (run 1 of each, then
run 2, ...) so that a noisy neighbour on a shared machine hurts them alike:

- ``import cli``: what ``python -X importtime -c "import hubbub.cli.main"``
  prints for ``hubbub.cli.main`` (cumulative), in ms;
- ``import serve``: wall ms to import every module ``hubbub serve`` imports
  before it serves (the command, the early listener, logging, workers, run);
- ``listening``: ms from spawning ``hubbub serve --port P`` until P accepts a
  connection (the early listener: the connection waits in its queue);
- ``first 101``: ms from the spawn to the 101 answering a WebSocket upgrade
  sent on that connection (the whole server stack is up).

Each tree's bytecode is compiled first, as an installed one is. One process at
a time, loopback only, every wait bounded (10 s per start).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hubbub.tools.runner import compile_bytecode, free_port, hubbub_config, serve_argv
from hubbub.websocket.handshake import client_request, new_key

ROOT = Path(__file__).resolve().parent.parent
SERVE_IMPORTS = (
    "hubbub.cli.main, hubbub.server.early, hubbub.server.logs, hubbub.server.workers, "
    "hubbub.server.run, hubbub.server.urls"
)
START_LIMIT = 10.0  # seconds a server may take to answer


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree / "src")}


def import_cli(tree: Path) -> float:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import hubbub.cli.main"],
        env=_env(tree),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    last = proc.stderr.strip().splitlines()[-1]
    if not last.endswith("hubbub.cli.main"):
        raise RuntimeError(f"unexpected importtime line: {last}")
    return int(last.split("|")[1]) / 1000


def import_serve(tree: Path) -> float:
    code = (
        "import time; t = time.perf_counter(); "
        f"import {SERVE_IMPORTS}; print((time.perf_counter() - t) * 1000)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(tree),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return float(proc.stdout)


def start(tree: Path, config: str) -> tuple[float, float]:
    """(listening, first 101) of one start, in ms."""
    port = free_port()
    upgrade = client_request(f"127.0.0.1:{port}", "/connection/websocket", new_key())
    argv = serve_argv(config)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*argv, "--port", str(port)],
        env=_env(tree),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while time.perf_counter() - started < START_LIMIT:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=START_LIMIT)
            except ConnectionRefusedError:
                time.sleep(0.002)
                continue
            with conn:
                listening = time.perf_counter() - started
                conn.sendall(upgrade)
                answer = conn.recv(64)
                if not answer.startswith(b"HTTP/1.1 101 "):
                    raise RuntimeError(f"the upgrade got {answer!r}")
                return listening * 1000, (time.perf_counter() - started) * 1000
        raise RuntimeError(f"not listening within {START_LIMIT} s")
    finally:
        proc.terminate()
        try:
            proc.wait(START_LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before-src", type=Path, help="a tree of hubbub before the change")
    args = parser.parse_args()
    trees = {"hubbub": ROOT}
    if args.before_src is not None:
        trees["hubbub-before"] = args.before_src.resolve()
    for tree in trees.values():
        compile_bytecode(tree / "src" / "hubbub")
    figures = ("import cli", "import serve", "listening", "first 101")
    results = {name: {f: [] for f in figures} for name in trees}
    with tempfile.TemporaryDirectory(prefix="hubbub-startup-") as tmp:
        config = hubbub_config(tmp, "bench-api-key")
        for tree in trees.values():  # one start each first: the file cache, warm
            start(tree, config)
        for run in range(args.runs):
            order = list(trees.items())
            for name, tree in order if run % 2 == 0 else reversed(order):
                values = (import_cli(tree), import_serve(tree), *start(tree, config))
                for figure, value in zip(figures, values, strict=True):
                    results[name][figure].append(value)
                print(f"run {run + 1} {name:14s} " + ", ".join(f"{v:.1f}" for v in values))
    print(f"\n{'ms, median [min-max]':22s}" + "".join(f"{f:>24s}" for f in figures))
    for name in trees:
        cells = []
        for figure in figures:
            values = results[name][figure]
            cells.append(f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]")
        print(f"{name:22s}" + "".join(f"{c:>24s}" for c in cells))


if __name__ == "__main__":
    main()
