"""The C load generator's storm mode (benchmarks/loadgen_c/storm.c) and storm.py's use of it.

Benchmark tools, so nothing here is timed; what is checked over real sockets,
against real ``hubbub serve`` processes restarted by ``ManagedServer``, is that
the figures can be trusted:
- every client comes back after a restart; the JSON has every key, the failed
  attempts are counted by reason and add up;
- a client subscribes as the Python bench's does and, through a Redis engine
  that keeps the stream across the restart, recovers from the epoch and offset
  of its first subscribe reply (a wrong offset would fail: the history holds two);
- a server that never comes back ends the run non-zero within its bound, the
  JSON saying so; a refused subscribe ends it at once with the reply on stderr;
- ``benchmarks/storm.py --loadgen c`` runs hubbub and the C floor (the text
  dialect) and prints the table with the generator's CPU;
- the Node ``ws`` server's ``--centrifugo`` mode (storm.py's node-ws-centrifugo)
  brings every storm client back connected and subscribed after a restart, and
  speaks the protocol a raw client sees: replies joined in one frame, a publish
  pushed to a subscriber, 100 for what it lacks, 3501 for bad JSON, 3001 at exit;
- ``benchmarks/suite.py``'s connect workload takes the same C path for hubbub
  (and the Python one where it must), says which generator made which figure,
  and reports a server that fails instead of ending the suite.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hubbub.tools.runner import ManagedServer, hubbub_config
from tests import test_floor_c
from tests.rawws import RawWS, text
from tests.redis_fixtures import RedisProcess, free_port
from tests.test_floor_c import FLOOR_C, LOADGEN, ROOT

#: test_floor_c's fixture (the C floor and load generator made), and its skip mark.
built = test_floor_c.built
KEYS = {
    "mode", "dialect", "clients", "connect_seconds", "connect_failed_attempts",
    "connect_loadgen_cpu", "t_storm", "t_back", "seconds", "loadgen_cpu", "back",
    "failed_attempts", "recovered", "closed_again", "loadgen_cpu_s", "timed_out", "failures",
    "errors",
}  # fmt: skip

pytestmark = test_floor_c.pytestmark
NODE_WS = ROOT / "benchmarks" / "servers" / "node_ws"
node_ws = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_WS / "node_modules" / "ws").is_dir(),
    reason="node and `npm ci --prefix benchmarks/servers/node_ws` needed",
)


def hubbub(tmp_path: Path, config: dict[str, Any] | None = None) -> tuple[ManagedServer, int]:
    port = free_port()  # below the ephemeral range: free again when the server restarts
    path = hubbub_config(str(tmp_path), "test-api-key")
    if config is not None:
        base = json.loads(Path(path).read_text())
        Path(path).write_text(json.dumps(base | config))
    command = [sys.executable, "-m", "hubbub.cli.main", "serve", "--config", path]
    server = ManagedServer(
        [*command, "--port", str(port)], port, None, tmp_path / "log",
        ws_path="/connection/websocket",
    )  # fmt: skip
    return server, port


async def generator(port: int, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(LOADGEN / "loadgen"), "--mode", "storm", "--port", str(port), *extra,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def line_of(process: asyncio.subprocess.Process, within: float) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), within)
    assert line, await stderr_of(process)
    result: dict[str, Any] = json.loads(line)
    return result


async def stderr_of(process: asyncio.subprocess.Process) -> str:
    assert process.stderr is not None
    if process.returncode is None:
        process.kill()
    await process.wait()
    return (await process.stderr.read()).decode()


async def go(process: asyncio.subprocess.Process) -> float:
    assert process.stdin is not None
    t = time.monotonic()
    process.stdin.write(f"go {t!r}\n".encode())
    await process.stdin.drain()
    return t


async def restart_storm(
    server: ManagedServer, port: int, clients: int, *extra: str
) -> dict[str, Any]:
    """Connect ``clients``, restart the server, return the generator's result."""
    process = await generator(port, "-n", str(clients), *extra)
    try:
        connected = await line_of(process, 60)
        assert connected["connected"] == clients and connected["seconds"] > 0, connected
        t = await go(process)
        restart = await asyncio.to_thread(server.restart)
        result = await line_of(process, 60)
        assert result["t_storm"] == pytest.approx(t, abs=1e-5), result
        assert result["t_back"] - t > restart["stop_s"], (result, restart)
        assert process.stdin is not None
        process.stdin.close()  # the generator closes its clients and exits
        assert await asyncio.wait_for(process.wait(), 35) == 0, await stderr_of(process)
        return result
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def centrifugo_storm(server: ManagedServer, port: int, clients: int) -> dict[str, Any]:
    """Start ``server``, run a restart storm of ``clients`` Centrifugo clients on it, stop it."""
    await asyncio.to_thread(server.start)
    try:
        return await restart_storm(
            server, port, clients, "--path", "/connection/websocket", "--dialect", "centrifugo"
        )
    finally:
        await asyncio.to_thread(server.stop)


async def test_every_client_comes_back_after_a_restart(built: None, tmp_path: Path) -> None:
    result = await centrifugo_storm(*hubbub(tmp_path), 200)
    assert result.keys() >= KEYS, result
    assert result["back"] == 200 and result["clients"] == 200 and not result["timed_out"]
    assert result["errors"] == [] and result["closed_again"] == 0, result
    assert result["seconds"] == pytest.approx(result["t_back"] - result["t_storm"], abs=1e-3)
    assert isinstance(result["failed_attempts"], int) and result["failed_attempts"] >= 0
    assert sum(result["failures"].values()) == result["failed_attempts"], result
    assert result["recovered"] == 0, result  # the bench's config keeps no history
    assert 0 <= result["loadgen_cpu"] < 1.5 and result["loadgen_cpu_s"] >= 0, result
    shares = [result["back_s"][k] for k in ("first", "p10", "p50", "p90", "p99", "last")]
    assert shares[0] > 0 and shares == sorted(shares), result
    assert shares[-1] == pytest.approx(result["seconds"], abs=1e-3), result


async def test_clients_recover_from_their_position_through_redis(
    built: None, tmp_path: Path, redis_server: RedisProcess
) -> None:
    config = {
        "engine": {
            "type": "redis",
            "redis": {"address": redis_server.address, "prefix": f"storm{free_port()}"},
        },
        "channel": {
            "without_namespace": {
                "allow_subscribe_for_client": True,
                "allow_subscribe_for_anonymous": True,
                "history_size": 2,
                "history_ttl": "300s",
                "force_recovery": True,
            }
        },
    }
    server, port = hubbub(tmp_path, config)
    await asyncio.to_thread(server.start)
    try:
        for n in range(5):  # offset 5 while the history keeps 2: recovering from 0 fails
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/publish",
                data=json.dumps({"channel": "bench", "data": {"n": n}}).encode(),
                headers={"X-API-Key": "test-api-key", "Content-Type": "application/json"},
            )
            with await asyncio.to_thread(urllib.request.urlopen, request, timeout=10) as answer:
                assert "result" in json.loads(answer.read()), n
        result = await restart_storm(
            server, port, 50, "--path", "/connection/websocket", "--dialect", "centrifugo"
        )
    finally:
        await asyncio.to_thread(server.stop)
    assert result["back"] == 50 and result["recovered"] == 50, result


async def test_a_server_that_never_returns_ends_the_storm_within_its_bound(
    built: None, tmp_path: Path
) -> None:
    port = free_port()
    server = ManagedServer(
        [str(FLOOR_C / "floor_c"), "--port", str(port)], port, None, tmp_path / "log"
    )
    await asyncio.to_thread(server.start)
    process = await generator(port, "-n", "50", "--storm-timeout", "3")
    try:
        assert (await line_of(process, 60))["connected"] == 50
        t = await go(process)
        await asyncio.to_thread(server.stop)  # and never started again
        result = await line_of(process, 30)
        code = await asyncio.wait_for(process.wait(), 30)
        ended = time.monotonic() - t
    finally:
        await asyncio.to_thread(server.stop)
        said = await stderr_of(process)
    assert code == 1 and "timed out after 3 s" in said, said
    assert result["timed_out"] and result["back"] == 0 and result["failed_attempts"] > 0, result
    assert result["errors"] and "0 of 50 clients back" in result["errors"][0], result
    assert 3 <= ended < 20, ended


async def test_a_refused_subscribe_ends_the_run_with_the_reply(built: None, tmp_path: Path) -> None:
    refusing = {"channel": {"without_namespace": {"allow_subscribe_for_client": False}}}
    server, port = hubbub(tmp_path, refusing)
    await asyncio.to_thread(server.start)
    try:
        process = await generator(
            port, "-n", "5", "--path", "/connection/websocket", "--dialect", "centrifugo"
        )
        code = await asyncio.wait_for(process.wait(), 30)
        said = await stderr_of(process)
    finally:
        await asyncio.to_thread(server.stop)
    assert code == 1 and "refused connect or subscribe" in said and '"error"' in said, said


def node_centrifugo(tmp_path: Path) -> tuple[ManagedServer, int]:
    """benchmarks/storm.py's node-ws-centrifugo: Node ``ws`` speaking Centrifugo's protocol."""
    port = free_port()  # node cannot be given port 0 and say which it took
    command = ["node", str(NODE_WS / "server.js"), "--port", str(port), "--centrifugo"]
    server = ManagedServer(
        [*command, "--close-on-exit"], port, None, tmp_path / "log",
        ws_path="/connection/websocket",
    )  # fmt: skip
    return server, port


@node_ws
async def test_node_ws_centrifugo_brings_every_storm_client_back_subscribed(
    built: None, tmp_path: Path
) -> None:
    # restart_storm checks the connected line: all 50 got their subscribe reply.
    result = await centrifugo_storm(*node_centrifugo(tmp_path), 50)
    assert result["dialect"] == "centrifugo" and result["clients"] == 50, result
    assert result["back"] == 50 and not result["timed_out"] and result["errors"] == [], result
    assert result["closed_again"] == 0 and result["recovered"] == 0, result


#: What Centrifugo closes a connection for (3501, bad request), as lines of one frame.
BAD_REQUESTS = (
    "[1]",
    '{"id":1,"subscribe":{"channel":"c"}}',  # before connect
    '{"connect":{}}',  # without an id
    '{"id":1,"connect":{}}\n{"id":2,"connect":{}}',
    '{"id":1,"connect":{}}\n{"id":2,"subscribe":null}',
    '{"id":1,"connect":{}}\n{"id":2,"publish":{"channel":"c"}}',  # no data
)


@node_ws
async def test_node_ws_centrifugo_speaks_the_protocol(tmp_path: Path) -> None:
    server, port = node_centrifugo(tmp_path)
    await asyncio.to_thread(server.start)
    try:
        async with (
            await RawWS.open("127.0.0.1", port) as subscriber,
            await RawWS.open("127.0.0.1", port, "/any/path") as publisher,
        ):
            await subscriber.send(
                text('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"c"}}')
            )
            connect, subscribe = await subscriber.messages()  # both replies in one frame
            assert connect["id"] == 1 and subscribe == {"id": 2, "subscribe": {}}, connect
            result = connect["connect"]
            assert len(result["client"]) == 36 and result["ping"] == 25 and result["pong"], result
            await publisher.send(text({"id": 1, "connect": {}}))
            assert (await publisher.messages())[0]["id"] == 1
            # A pong is not answered: the frame that follows holds the other two replies.
            await publisher.send(
                text('{}\n{"id":2,"publish":{"channel":"c","data":{"n":1}}}\n{"id":3,"history":{}}')
            )
            assert await publisher.messages() == [
                {"id": 2, "publish": {}},
                {"id": 3, "error": {"code": 100, "message": "unsupported"}},
            ]
            push = {"push": {"channel": "c", "pub": {"data": {"n": 1}}}}
            assert await subscriber.messages() == [push]
            await publisher.send(text("{not json"))
            assert await publisher.read_close_code() == 3501
            for bad in BAD_REQUESTS:  # each closes its connection, the server goes on
                async with await RawWS.open("127.0.0.1", port) as client:
                    await client.send(text(bad))
                    assert await client.read_close_code() == 3501, bad
            await subscriber.send(text('{"id":3,"publish":{"channel":"c","data":2}}'))
            assert await subscriber.messages() == [{"push": {"channel": "c", "pub": {"data": 2}}}]
            assert await subscriber.messages() == [{"id": 3, "publish": {}}]
            await asyncio.to_thread(server.stop)
            frame = await subscriber.read_close()
            assert frame is not None and frame.close_code == 3001, frame
            assert frame.close_reason == "shutdown"
    finally:
        await asyncio.to_thread(server.stop)


def test_storm_py_runs_the_c_generator(built: None, tmp_path: Path) -> None:
    out = tmp_path / "storm.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "storm.py"), "--runs", "1", "-n", "200",
         "--servers", "hubbub,floor-c", "--loadgen", "c", "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "c load generator" in done.stdout and "load generator CPU % (storm)" in done.stdout
    results = json.loads(out.read_text())
    for name in ("hubbub", "floor-c"):
        [summary] = results[name]
        storm = summary["storm"]
        assert summary["loadgen"] == "c" and summary["generator"]["back"] == 200, summary
        assert storm["seconds"] > storm["stop_s"] > 0 and storm["restart_s"] > 0, storm
        assert len(storm["loadgen_cpu"]) == 1 and "reconnect_us_per_client" in storm, storm
        assert summary["connects_per_s"] > 0 and "server_us_per_connect" in summary, summary


@pytest.fixture
def suite(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/suite.py, imported as it runs: its siblings (storm, floor_ratio) on the path."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("suite")


def test_the_suite_storm_comes_from_the_c_generator(
    built: None, tmp_path: Path, suite: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    cpus = os.sched_getaffinity(0)
    config = hubbub_config(str(tmp_path), "bench-api-key")
    assert (
        suite.storm_loadgen("hubbub", None) == "c" and suite.storm_loadgen("floor-c", None) == "c"
    )
    assert suite.storm_loadgen("socketio", None) == "python"
    assert suite.storm_loadgen("hubbub", "no gcc") == "python"
    c_run = suite.c_storm_run("hubbub", 100, config)
    assert os.sched_getaffinity(0) == cpus  # the suite's own CPUs are given back
    assert c_run is not None, capsys.readouterr().err
    assert c_run["loadgen"] == "c" and c_run["generator"]["back"] == 100, c_run
    assert c_run["storm"]["seconds"] > c_run["storm"]["stop_s"] > 0, c_run
    # The Python generator, as the suite runs it when the C one cannot be used.
    workload = ["connect", "-n", "100", "--storm", "restart"]
    py_run = suite.run_bench("floor-c", workload, str(tmp_path / "py.json"))
    assert py_run is not None and "loadgen" not in py_run, capsys.readouterr().err
    chosen = suite.workloads(quick=True)
    table = suite.render({"connect": {"hubbub": [c_run], "floor-c": [py_run]}}, chosen,
                         ["hubbub", "floor-c"], 1, True)  # fmt: skip
    assert "C load generator (benchmarks/loadgen_c --mode storm" in table, table
    assert "for hubbub:" in table and "`hubbub bench connect --storm restart`) for floor-c" in table
    rows = {line.split(" | ")[0]: line for line in table.splitlines()}
    header = table.splitlines().index("| 50 % of clients back s | hubbub | floor-c |")
    back = table.splitlines()[header + 2].split(" | ")
    assert back[1][0].isdigit() and back[2] == "- |", table  # no 50 % from the Python generator
    assert "| load generator CPU % (storm)" in rows, table
    fallback = suite.render({"connect": {"floor-c": [py_run]}}, chosen, ["floor-c"], 1, True,
                            "make failed")  # fmt: skip
    assert "**WARNING: Load generators: Python" in fallback, fallback
    assert "cannot be used: make failed" in fallback and "50 % of clients" not in fallback


def test_the_suite_reports_a_server_that_fails_and_goes_on(
    built: None, tmp_path: Path, suite: ModuleType, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    cpus = os.sched_getaffinity(0)
    monkeypatch.setitem(
        suite.SERVERS, "broken", ("false --port {port}", "ws://127.0.0.1:{port}/", "text")
    )
    assert suite.c_storm_run("broken", 50, "unused") is None
    assert "broken: failed (C load generator): server exited with 1" in capsys.readouterr().err
    assert os.sched_getaffinity(0) == cpus


@node_ws
def test_the_suite_runs_node_ws_centrifugo_as_a_centrifugo_server(
    built: None, tmp_path: Path, suite: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # The storm through the C generator's centrifugo dialect (connect + subscribe)...
    assert suite.storm_loadgen("node-ws-centrifugo", None) == "c"
    c_run = suite.c_storm_run("node-ws-centrifugo", 100, "unused")
    assert c_run is not None, capsys.readouterr().err
    assert c_run["generator"]["back"] == 100 and c_run["storm"]["seconds"] > 0, c_run
    # ... and the Python bench speaking Centrifugo's protocol to it (no --plain): its
    # publishes are answered and every subscriber gets every publication as a push.
    workload = ["fanout", "-n", "20", "--seconds", "1"]
    fanout = suite.run_bench("node-ws-centrifugo", workload, str(tmp_path / "fanout.json"))
    assert fanout is not None, capsys.readouterr().err
    assert fanout["deliveries_per_s"] > 0 and fanout["lost"] == 0, fanout
