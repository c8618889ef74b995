"""The C floor and the C load generator (benchmarks/) build and measure what they claim.

These are benchmark tools, so nothing here is timed; what is checked over real
sockets is that the figures they print can be trusted:
- both build with the machine's gcc through their Makefiles;
- the load generator against the C floor (plain text) and against hubbub
  (Centrifugo JSON protocol, the config ``hubbub bench`` uses) delivers every
  publication to every subscriber, in order (sequence-checked), none lost;
- the C floor answers a ping, echoes a close and hands a message sent by one
  client to the others (a publisher stops receiving).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hubbub.tools.runner import ManagedServer, free_port, hubbub_config
from tests.rawws import OP_CLOSE, RawWS, build_frame

ROOT = Path(__file__).resolve().parent.parent
FLOOR_C = ROOT / "benchmarks" / "servers" / "floor_c"
LOADGEN = ROOT / "benchmarks" / "loadgen_c"

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None or shutil.which("make") is None, reason="gcc and make needed"
)


@pytest.fixture(scope="module")
def built() -> None:
    for directory in (FLOOR_C, LOADGEN):
        done = subprocess.run(["make", "-s", "-C", str(directory)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def c_floor(port: int, tmp_path: Path) -> ManagedServer:
    command = [str(FLOOR_C / "floor_c"), "--port", str(port)]
    return ManagedServer(command, port, None, tmp_path / "log")


def loadgen(port: int, pid: int, *extra: str) -> dict[str, object]:
    command = [str(LOADGEN / "loadgen"), "--port", str(port), "-n", "50", "--window", "64"]
    command += ["--seconds", "1", "--server-pid", str(pid), *extra]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def check(result: dict[str, object]) -> None:
    assert result["delivered"] and result["publications"], result
    assert result["lost"] == 0 and result["seq_lost"] == 0 and result["duplicated"] == 0, result
    assert result["seq_checked_subscribers"] == 5 and result["closed_by_server"] == 0, result
    assert result["expected"] == result["delivered_after_drain"], result


def test_loadgen_against_the_c_floor(built: None, tmp_path: Path) -> None:
    port = free_port()
    server = ManagedServer(
        [str(FLOOR_C / "floor_c"), "--port", str(port)], port, None, tmp_path / "log"
    )
    server.start()
    try:
        check(loadgen(port, server.pid))
    finally:
        server.stop()


def test_loadgen_against_hubbub(built: None, tmp_path: Path) -> None:
    port = free_port()
    config = hubbub_config(str(tmp_path), "")
    command = [sys.executable, "-m", "hubbub.cli.main", "serve", "--config", config]
    server = ManagedServer([*command, "--port", str(port)], port, None, tmp_path / "log")
    server.start()
    try:
        result = loadgen(
            port, server.pid, "--path", "/connection/websocket", "--dialect", "centrifugo"
        )
        check(result)
        assert result["unacknowledged"] == 0 and result["publish_errors"] == 0, result
        assert 150 < float(str(result["wire_bytes_per_delivery"])) < 300, result  # a push each
    finally:
        server.stop()


async def test_the_c_floor_broadcasts_pings_and_closes(built: None, tmp_path: Path) -> None:
    port = free_port()
    server = ManagedServer(
        [str(FLOOR_C / "floor_c"), "--port", str(port)], port, None, tmp_path / "log"
    )
    await asyncio.to_thread(server.start)
    try:
        publisher = await RawWS.open("127.0.0.1", port, path="/")
        subscriber = await RawWS.open("127.0.0.1", port, path="/")
        await publisher.send(build_frame(b"one", mask_key=b"abcd"))
        await publisher.send(build_frame(b"two", mask_key=b"wxyz"))
        received: list[bytes] = []
        while len(received) < 2:  # one frame per loop iteration: one or two frames here
            frame = await subscriber.read_frame()
            assert frame.opcode == 1 and frame.fin
            received += frame.payload.split(b"\n")
        assert received == [b"one", b"two"]
        await subscriber.send(build_frame(b"hi", opcode=9, mask_key=b"abcd"))
        pong = await subscriber.read_frame()
        assert (pong.opcode, pong.payload) == (10, b"hi")
        await subscriber.send(build_frame(b"\x03\xe8", opcode=OP_CLOSE, mask_key=b"abcd"))
        assert await subscriber.read_close_code() == 1000
        assert await subscriber.eof()
        subscriber.abort()
        publisher.abort()
    finally:
        server.stop()
