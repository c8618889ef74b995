"""FrameReader's cost per frame, this tree's reader next to another revision's, in one run.

What a server reads most: small masked text frames (one command each), one
per TCP read or several per read; and the paths the incremental UTF-8 check
touches: a large text frame arriving in pieces, a text message in fragments.
Each workload is timed with both readers, interleaved (``--repeat`` rounds
of ``timeit``), so a noisy machine slows both alike; medians with ranges.

    python benchmarks/frame_reader.py                    # against HEAD's frames.py
    python benchmarks/frame_reader.py --baseline main~3  # against any revision
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from hubbub.websocket import frames as current
from hubbub.websocket.frames import OP_CONTINUATION, build_frame

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 1 << 20
SMALL = b'{"id":7,"publish":{"channel":"chat:index","data":{"text":"hello there","n":12345}}}'
BIG = ("Hello, world! κόσμε " * 1700).encode()[:32768]


def load_revision(revision: str) -> ModuleType:
    """``hubbub/websocket/frames.py`` as it is at ``revision``, imported under another name."""
    source = subprocess.run(
        ["git", "show", f"{revision}:src/hubbub/websocket/frames.py"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout  # fmt: skip
    directory = tempfile.mkdtemp(prefix="hubbub-frames-")
    path = os.path.join(directory, "frames_baseline.py")
    with open(path, "wb") as file:
        file.write(source)
    spec = importlib.util.spec_from_file_location("frames_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["frames_baseline"] = module
    spec.loader.exec_module(module)
    return module


def workloads(module: ModuleType) -> dict[str, tuple[Callable[[], object], int]]:
    """Each workload: a function feeding one reader, and the frames it reads per call."""
    small = build_frame(SMALL)
    ten = small * 10
    big = build_frame(BIG)
    big_pieces = [big[i : i + 4096] for i in range(0, len(big), 4096)]
    fragments = b"".join(
        build_frame(SMALL[i : i + 16], opcode=0x1 if i == 0 else OP_CONTINUATION,
                    fin=i + 16 >= len(SMALL))
        for i in range(0, len(SMALL), 16)
    )  # fmt: skip
    reader = module.FrameReader(LIMIT)

    def one_per_read() -> None:
        reader.feed(small)

    def ten_per_read() -> None:
        reader.feed(ten)

    def big_in_pieces() -> None:
        for piece in big_pieces:
            reader.feed(piece)

    def fragmented() -> None:
        reader.feed(fragments)

    return {
        "small text, 1 frame per read": (one_per_read, 1),
        "small text, 10 frames per read": (ten_per_read, 10),
        "32 KiB text frame in 4 KiB reads": (big_in_pieces, 1),
        "text in 6 fragments, one read": (fragmented, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="HEAD", help="git revision to compare with")
    parser.add_argument("--repeat", type=int, default=7, help="rounds per workload")
    args = parser.parse_args()
    baseline = load_revision(args.baseline)
    readers = {f"baseline ({args.baseline})": baseline, "this tree": current}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; ns per frame, median "
          f"of {args.repeat} (min-max)")  # fmt: skip
    names = list(workloads(current))
    for name in names:
        runs: dict[str, list[float]] = {label: [] for label in readers}
        loaded = {label: workloads(module)[name] for label, module in readers.items()}
        frames = loaded["this tree"][1]
        number = max(1, 200_000 // (frames * (40 if "32 KiB" in name else 1)))
        for _ in range(args.repeat):
            for label, (function, per_call) in loaded.items():
                seconds = timeit.timeit(function, number=number)
                runs[label].append(seconds / (number * per_call) * 1e9)
        medians = {label: statistics.median(values) for label, values in runs.items()}
        print(f"{name}:")
        for label, values in runs.items():
            print(f"  {label:22s} {medians[label]:9.0f} ns  ({min(values):.0f}-{max(values):.0f})")
        base, new = medians.values()
        print(f"  ratio this/baseline   {new / base:9.2f}")


if __name__ == "__main__":
    main()
