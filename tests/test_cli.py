"""The ``hubbub`` command as a user runs it: a real process, real signals, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from hubbub.auth.tokens import TokenVerifier
from hubbub.cli.main import main
from hubbub.config.model import TokenConfig
from tests.conftest import API_KEY, SECRET

TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


async def start_serve(*args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBBUB_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubbub.cli.main",
        "serve",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None
    while True:
        line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
        assert line, "hubbub serve exited before it was ready"
        if b"serving on" in line:
            return process


async def test_serve_without_config_runs_demo_preset_and_sigterm_sends_3001() -> None:
    port = free_port()
    process = await start_serve("--port", str(port))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/health") as response:
                assert response.status == 200
            async with http.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 200
                assert "text/html" in response.headers["Content-Type"]
            ws = await http.ws_connect(f"ws://127.0.0.1:{port}/connection/websocket")
            await ws.send_str('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"chat:x"}}')
            seen = ""
            while '"join"' not in seen:  # the reply, then the client's own join push
                seen += (await asyncio.wait_for(ws.receive(), TIMEOUT)).data
            assert '"id":2' in seen and "error" not in seen
            process.send_signal(signal.SIGTERM)
            closing = await asyncio.wait_for(ws.receive(), TIMEOUT)
            assert closing.type is aiohttp.WSMsgType.CLOSE, closing
            assert ws.close_code == 3001
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_with_config_file_and_flag_override(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path,
        {"http_server": {"port": 1}, "http_api": {"key": API_KEY}, "log": {"level": "warn"}},
    )
    process = await start_serve("--config", str(config), "--port", str(port))
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/api/info", json={}, headers={"X-API-Key": API_KEY}
            ) as response,
        ):
            body = await response.json()
            assert body["result"]["nodes"][0]["num_clients"] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0


async def test_serve_refuses_a_bad_config_naming_the_key(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {"channel": {"namespaces": [{"name": "chat", "history_size": 10}]}},
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubbub.cli.main",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
    assert process.returncode == 1
    assert b"channel.namespaces[0].history" in err
    assert b"Traceback" not in err + out


async def test_gentoken_prints_a_token_the_server_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {"client": {"token": {"hmac_secret_key": SECRET}}})
    assert main(["gentoken", "--user", "alice", "--ttl", "60", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    token = captured.out.strip()
    claims = await TokenVerifier(TokenConfig(hmac_secret_key=SECRET)).verify_connection(token)
    assert claims.user == "alice" and claims.expire_at > 0
    with pytest.raises(SystemExit):
        main(["gentoken"])  # --user is required: argparse exits with a usage line


def test_gentoken_without_secret_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gentoken", "--user", "alice"]) == 1
    captured = capsys.readouterr()
    assert "client.token.hmac_secret_key" in captured.err
