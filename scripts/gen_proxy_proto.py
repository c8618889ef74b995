"""Regenerate src/hubbub/proxy/grpcproto/proxy_pb2.py(i) from proxy.proto.

    python scripts/gen_proxy_proto.py           # write the files
    python scripts/gen_proxy_proto.py --check   # exit 1 if they are not what protoc makes

Needs grpcio-tools (the test extra). The generated module requires a protobuf
runtime at least as new as the protoc bundled with grpcio-tools: keep the
``protobuf>=`` bound in pyproject.toml equal to the version in its header.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

SRC = Path(__file__).resolve().parents[1] / "src"
PROTO = Path("hubbub/proxy/grpcproto/proxy.proto")
OUTPUTS = (PROTO.with_name("proxy_pb2.py"), PROTO.with_name("proxy_pb2.pyi"))


def generate(out: Path) -> None:
    status = protoc.main(
        ["protoc", f"-I{SRC}", f"--python_out={out}", f"--pyi_out={out}", str(SRC / PROTO)]
    )
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    if not args.check:
        generate(SRC)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        generate(Path(folder))
        stale = [p for p in OUTPUTS if not filecmp.cmp(Path(folder, p), SRC / p, shallow=False)]
    for path in stale:
        print(f"{path} is not what protoc generates from {PROTO}: run {__file__}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
