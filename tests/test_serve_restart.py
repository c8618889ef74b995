"""What a restart of ``hubbub serve`` costs its clients: the port bound before the
server stack is imported (server/early.py), and a shutdown that does not wait
for clients' answers unless ``shutdown.close_timeout`` says so, bounded by
``shutdown.timeout``. Real processes, real signals, real sockets."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hubbub.config.loader import load_config
from hubbub.server.early import listen_early, planned_address
from tests.rawws import RawWS
from tests.redis_fixtures import RedisProcess, free_port
from tests.test_cli import TIMEOUT, start_serve, write_config


def test_listen_early_listens_on_a_literal_address_and_queues_connections() -> None:
    sock = listen_early("127.0.0.1", 0)
    assert sock is not None
    try:
        assert not sock.getblocking()
        port = sock.getsockname()[1]
        # Nothing accepts yet: the kernel completes the connection into the queue.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"GET / HTTP/1.1\r\n\r\n")
            sock.setblocking(True)
            sock.settimeout(5)
            accepted, _ = sock.accept()
            with accepted:
                assert accepted.recv(64).startswith(b"GET / ")
    finally:
        sock.close()


def test_listen_early_leaves_names_and_every_interface_to_asyncio() -> None:
    assert listen_early("localhost", 0) is None
    assert listen_early("", 0) is None


def test_listen_early_on_a_taken_port_raises_oserror() -> None:
    taken = listen_early("127.0.0.1", 0)
    assert taken is not None
    try:
        with pytest.raises(OSError):
            listen_early("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


async def connected_client(port: int) -> RawWS:
    ws = await RawWS.open("127.0.0.1", port)
    reply = await ws.reply(await ws.command("connect"))
    assert "connect" in reply, reply
    return ws


def config(tmp_path: Path, shutdown: dict[str, str] | None = None) -> Path:
    data: dict[str, object] = {
        "client": {"allow_anonymous_connect_without_token": True},
        "log": {"level": "warn"},
    }
    if shutdown is not None:
        data["shutdown"] = shutdown
    return write_config(tmp_path, data)


async def stop(process: asyncio.subprocess.Process) -> str:
    """SIGTERM, wait for the exit (bounded), return what the process printed."""
    process.send_signal(signal.SIGTERM)
    assert process.stdout is not None
    output = await asyncio.wait_for(process.stdout.read(), TIMEOUT)
    assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    return output.decode(errors="replace")


async def test_a_client_that_never_answers_3001_does_not_hold_the_shutdown(
    tmp_path: Path,
) -> None:
    port = free_port()
    process = await start_serve("--config", str(config(tmp_path)), "--port", str(port))
    try:
        async with await connected_client(port) as ws:
            stopping = asyncio.ensure_future(stop(process))
            # The client reads its 3001 and never answers; TCP ends all the same.
            assert await ws.read_close_code() == 3001
            assert await ws.eof()
        output = await stopping
        assert "shutdown.timeout" not in output  # nothing was waited for
        # The port was released with the process: a new node binds it at once.
        again = listen_early("127.0.0.1", port)
        assert again is not None
        again.close()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_shutdown_timeout_bounds_a_close_timeout_that_waits_for_answers(
    tmp_path: Path,
) -> None:
    # close_timeout 30 s would wait for the silent client's answer; the whole
    # shutdown is bounded by shutdown.timeout (1 s), then it is dropped.
    path = config(tmp_path, {"timeout": "1s", "close_timeout": "30s"})
    port = free_port()
    process = await start_serve("--config", str(path), "--port", str(port))
    try:
        async with await connected_client(port) as ws:
            stopping = asyncio.ensure_future(stop(process))
            assert await ws.read_close_code() == 3001
            output = await stopping  # well before close_timeout's 30 s
            assert "shutdown.timeout (1s) passed" in output
            assert await ws.eof()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_stop_sends_every_client_3001_and_the_exit_closes_their_sockets(
    tmp_path: Path,
) -> None:
    # Nothing outside the process hears of these sessions' end: each gets its pending
    # output and its close frame, and the process's exit ends TCP (Hub.close).
    port = free_port()
    path = write_config(tmp_path, {"client": {"insecure": True}, "log": {"level": "warn"}})
    process = await start_serve("--config", str(path), "--port", str(port))
    clients: list[RawWS] = []
    try:
        for _ in range(30):
            ws = await connected_client(port)
            clients.append(ws)
            reply = await ws.reply(await ws.command("subscribe", {"channel": "news"}))
            assert "subscribe" in reply, reply
        stopping = asyncio.ensure_future(stop(process))
        codes = await asyncio.gather(*(ws.read_close_code() for ws in clients))
        assert codes == [3001] * len(clients)
        assert all(await asyncio.gather(*(ws.eof() for ws in clients)))
        output = await stopping
        assert "Traceback" not in output
    finally:
        for ws in clients:
            ws.abort()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_stop_still_takes_back_presence_and_says_leave_to_other_nodes(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    # A session whose end other nodes hear of (presence, join/leave) gets its whole
    # teardown at a stop: node b's subscriber sees the leave of node a's client.
    shared = {
        "client": {"insecure": True},
        "log": {"level": "warn"},
        "engine": {
            "type": "redis",
            "redis": {"address": redis_server.address, "prefix": f"stop{free_port()}"},
        },
        "channel": {
            "namespaces": [{"name": "room", "presence": True, "join_leave": True}],
        },
    }
    ports = free_port(), free_port()
    nodes: list[asyncio.subprocess.Process] = []
    try:
        for index, port in enumerate(ports):
            (tmp_path / str(index)).mkdir()
            path = write_config(tmp_path / str(index), shared)
            nodes.append(await start_serve("--config", str(path), "--port", str(port)))
        async with await connected_client(ports[1]) as watcher:
            params = {"channel": "room:1", "join_leave": True}
            assert "subscribe" in await watcher.reply(await watcher.command("subscribe", params))
            async with await RawWS.open("127.0.0.1", ports[0]) as leaving:
                client = (await leaving.reply(await leaving.command("connect")))["connect"][
                    "client"
                ]
                reply = await leaving.reply(
                    await leaving.command("subscribe", {"channel": "room:1"})
                )
                assert "subscribe" in reply, reply
                await push_of(watcher, "join", client)
                stopping = asyncio.ensure_future(stop(nodes[0]))
                assert await leaving.read_close_code() == 3001
                await push_of(watcher, "leave", client)
                await stopping
    finally:
        for node in nodes:
            if node.returncode is None:
                node.kill()
                await node.wait()


async def push_of(ws: RawWS, kind: str, client: str) -> None:
    """Wait for the ``kind`` push (join, leave) of ``client`` on ``ws``, skipping
    other messages (TimeoutError if it does not come)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            for message in await ws.messages():
                if message.get("push", {}).get(kind, {}).get("info", {}).get("client") == client:
                    return


# -- where to listen, read before the configuration's model is loaded ---------------


@pytest.mark.parametrize(
    ("name", "text", "env", "flags"),
    [
        ("none", None, {}, {}),
        ("c.json", '{"http_server": {"port": 9101}}', {}, {}),
        ("c.json", '{"http_server": {"address": "127.0.0.2", "port": 0}}', {}, {}),
        ("c.toml", '[http_server]\naddress = "::1"\nport = 9102\n', {}, {}),
        ("c.yaml", "http_server:\n  port: 9103\n", {}, {}),
        ("c.yml", "", {}, {}),
        ("c.conf", '{"http_server": {"port": 9104}}', {}, {}),  # JSON by default
        ("c.json", "{}", {"HUBBUB_HTTP_SERVER_PORT": " 9105 "}, {}),
        ("c.json", '{"http_server": {"port": 9106}}', {"HUBBUB_HTTP_SERVER_PORT": "9107"}, {}),
        (
            "c.json",
            '{"http_server": {"port": 9106, "address": "127.0.0.3"}}',
            {"HUBBUB_HTTP_SERVER_PORT": "9107", "HUBBUB_HTTP_SERVER_ADDRESS": "127.0.0.4"},
            {"http_server.port": 9108, "http_server.address": "127.0.0.5"},
        ),
        ("c.json", '{"http_server": {"address": ""}}', {}, {"http_server.port": 9109}),
    ],
)
def test_planned_address_is_where_the_loaded_configuration_listens(
    tmp_path: Path, name: str, text: str | None, env: dict[str, str], flags: dict[str, object]
) -> None:
    path = None
    if text is not None:
        path = tmp_path / name
        path.write_text(text)
    loaded = load_config(path, env=env, overrides=flags).config.http_server
    planned = planned_address(
        None if path is None else str(path),
        flags.get("http_server.address"),  # type: ignore[arg-type]
        flags.get("http_server.port"),  # type: ignore[arg-type]
        env,
    )
    assert planned == (loaded.address, loaded.port)


@pytest.mark.parametrize(
    ("text", "env"),
    [
        (None, {}),  # the file does not exist
        ('{"http_server": {"port": 91', {}),
        ('{"http_server": {"port": "9100"}}', {}),
        ('{"http_server": {"port": true}}', {}),
        ('{"http_server": ["port"]}', {}),
        ('{"http_server": {"address": 127}}', {}),
        ("{}", {"HUBBUB_HTTP_SERVER_PORT": "ninety"}),
    ],
)
def test_planned_address_is_none_when_unsure(
    tmp_path: Path, text: str | None, env: dict[str, str]
) -> None:
    path = tmp_path / "c.json"
    if text is not None:
        path.write_text(text)
    assert planned_address(str(path), None, None, env) is None


def test_the_command_module_does_not_load_the_configuration_model() -> None:
    """``hubbub serve`` binds its port right after parsing its flags: importing the
    command must not build the configuration's model (or the hub) first."""
    code = (
        "import sys, hubbub.cli.main; "
        "print(sorted(m for m in sys.modules if m.startswith(('hubbub.config.', 'hubbub.hub'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['hubbub.config.files', 'hubbub.config.generate']"


async def test_a_port_out_of_range_is_the_loaders_error_not_a_bind_failure(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, {"http_server": {"port": 70000}})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hubbub.cli.main", "serve", "--config", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    output = (await asyncio.wait_for(process.stdout.read(), TIMEOUT)).decode()
    assert await asyncio.wait_for(process.wait(), TIMEOUT) == 1
    assert "http_server.port" in output and "Traceback" not in output, output
    assert "cannot listen" not in output, output


async def test_serve_listens_where_the_file_and_the_environment_say(tmp_path: Path) -> None:
    port = free_port()
    path = write_config(
        tmp_path,
        {
            "http_server": {"port": free_port()},  # the variable wins over the file
            "client": {"allow_anonymous_connect_without_token": True},
        },
    )
    process = await start_serve("--config", str(path), env={"HUBBUB_HTTP_SERVER_PORT": str(port)})
    try:
        client = await connected_client(port)
        await client.close()
        await stop(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
