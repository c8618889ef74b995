"""The ``hubbub`` command as a user runs it: a real process, real signals, real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from hubbub.auth.tokens import TokenVerifier, make_token
from hubbub.cli.main import main
from hubbub.config.model import TokenConfig
from hubbub.version import __version__
from tests.conftest import API_KEY, SECRET
from tests.redis_fixtures import free_port

TIMEOUT = 20.0


def write_config(tmp_path: Path, data: dict[str, object]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


async def start_serve(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """``hubbub serve ARGS`` once it says it serves; ``HUBBUB_*`` variables: ``env``'s only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBBUB_")} | (env or {})
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


# --- the smaller commands, run as a user runs them ---------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``hubbub ARGS`` in a child process, without any HUBBUB_* of the test's environment."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUBBUB_")}
    result = subprocess.run(
        [sys.executable, "-m", "hubbub.cli.main", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=TIMEOUT,
        check=False,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"hubbub {__version__}"


def test_checkconfig_reports_every_problem(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "http_server": {"port": "abc", "trusted_proxies": ["10.0.0.0/8", "not-an-ip"]},
            "client": {"pong_timeout": "30s", "allow_anonymous_connect_without_token": True},
            "log": {"level": "loud", "format": "xml"},
            "channel": {"namespaces": [{"name": "chat", "history_size": 10}, {"name": "x"}]},
            "admin": {"enabled": True},
            "typo_key": 1,
        },
    )
    result = run_cli("checkconfig", str(config))
    assert result.returncode == 1
    assert result.stdout == ""
    errors = result.stderr.splitlines()
    assert all(line.startswith("error: ") for line in errors), errors
    keys = [line.removeprefix("error: ").split(":")[0] for line in errors]
    assert sorted(keys) == sorted(
        [
            "typo_key",
            "http_server.port",
            "http_server.trusted_proxies[1]",
            "client.pong_timeout",
            "log.level",
            "log.format",
            "channel.namespaces[0].history_ttl",
            "channel.namespaces[1].name",
            "admin.password",
            "admin.secret",
        ]
    ), errors


def test_checkconfig_warns_when_no_client_could_connect(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"http_api": {"key": API_KEY}})
    result = run_cli("checkconfig", str(config))
    assert result.returncode == 0
    assert result.stdout == (
        f"config OK: {config}\n1 option set: 1 implemented, 0 accepted but not implemented\n"
    )
    assert result.stderr.startswith("warning: no client can connect: set a token key")
    opened = write_config(tmp_path, {"http_api": {"key": API_KEY}, "client": {"insecure": True}})
    assert run_cli("checkconfig", str(opened)).stderr == ""


def test_serve_reports_every_problem_at_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, {"log": {"level": "loud"}, "engine": {"type": "nats"}})
    result = run_cli("serve", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: log.level: expected one of none, trace, debug, info, warn, warning, error, "
        'fatal, got "loud"',
        'error: engine.type: "nats" is unknown: use "memory" or "redis"',
    ]


def test_gentoken_then_checktoken(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, {"client": {"token": {"hmac_secret_key": SECRET}}}))
    token = run_cli("gentoken", "--user", "alice", "--ttl", "600", "--config", config)
    assert token.returncode == 0
    checked = run_cli("checktoken", token.stdout.strip(), "--config", config)
    assert checked.returncode == 0, checked.stderr
    lines = checked.stdout.splitlines()
    assert lines[0] == "valid connection token for user 'alice'"
    assert lines[1].startswith("  expires: at ") and "(in 9m)" in lines[1]

    sub = run_cli("gentoken", "-u", "bob", "--channel", "$room", "--info", '{"a":1}', "-c", config)
    checked = run_cli("checktoken", sub.stdout.strip(), "--config", config)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == [
        "valid subscription token for user 'bob'",
        "  channel: $room",
        checked.stdout.splitlines()[2],
        '  info: {"a":1}',
    ]


def test_checktoken_says_why_a_token_is_refused(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, {"client": {"token": {"hmac_secret_key": SECRET}}}))
    expired = make_token(SECRET, "alice", ttl=60, now=time.time() - 3600)
    result = run_cli("checktoken", expired, "--config", config)
    assert result.returncode == 1
    assert result.stderr.startswith("error: token expired at ") and "(59m ago)" in result.stderr

    forged = make_token("another-secret-of-enough-length!", "alice", ttl=60)
    result = run_cli("checktoken", forged, "--config", config)
    assert (result.returncode, result.stderr) == (
        1,
        "error: invalid token: Signature verification failed\n",
    )
    result = run_cli("checktoken", "not.a.token", "--config", config)
    assert result.returncode == 1 and result.stderr.startswith("error: invalid token: malformed")

    result = run_cli("checktoken", forged)  # no config: no key to check with
    assert result.returncode == 1 and "client.token.hmac_secret_key" in result.stderr


async def test_serve_prints_what_it_serves(tmp_path: Path) -> None:
    port, internal = free_port(), free_port()
    config = write_config(
        tmp_path,
        {
            "http_server": {"port": port, "internal_port": internal},
            "http_api": {"key": API_KEY},
            "client": {"token": {"hmac_secret_key": SECRET}},
            "health": {"enabled": True},
        },
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubbub.cli.main",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        lines = [await asyncio.wait_for(process.stdout.readline(), TIMEOUT) for _ in range(4)]
        text = b"".join(lines).decode()
        assert text == (
            f"hubbub {__version__} serving on http://127.0.0.1:{port}/\n"
            f"  websocket   ws://127.0.0.1:{port}/connection/websocket\n"
            f"  server API  http://127.0.0.1:{internal}/api\n"
            f"  health      http://127.0.0.1:{port}/health\n"
        )
        async with aiohttp.ClientSession() as http:  # each URL answers
            async with http.get(f"http://127.0.0.1:{port}/health") as response:
                assert response.status == 200
            async with http.get(f"http://127.0.0.1:{port}/") as response:
                assert response.status == 404  # no demo page outside the preset
            async with http.post(
                f"http://127.0.0.1:{internal}/api/info", json={}, headers={"X-API-Key": API_KEY}
            ) as response:
                assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
