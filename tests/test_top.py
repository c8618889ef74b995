"""``hubbub top`` in a real terminal: tmux runs it, the test reads the screen.

The server runs in the test (real sockets); clients sit on channels and a
publisher keeps messages flowing, so the screen must show the connections,
the busiest channel, non-zero rates, refresh in place (one header,
a moving clock), say so when the server goes away, and leave the terminal as
it was on ``q``. tmux runs on its own socket, stopped by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from hubbub.tools.top import Reading, render
from tests.conftest import API_KEY, RunningServer, ServerFactory
from tests.wsclient import connected_client

TIMEOUT = 15.0


class Tmux:
    """A tmux server of our own (``-L``), with one session running a command."""

    def __init__(self) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("tmux is not installed: scripts/test.sh installs it (apt-get install tmux)")
        self.socket = f"hubbub-test-{uuid.uuid4().hex[:8]}"

    async def run(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            "tmux",
            "-L",
            self.socket,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)
        assert process.returncode == 0, f"tmux {args}: {err.decode()}"
        return out.decode()

    async def start(self, command: str) -> None:
        """The session ``top`` running ``command`` in a 100x30 terminal. The tmux server
        it starts must not inherit pipes of ours (a read would wait for it forever)."""
        process = await asyncio.create_subprocess_exec(
            "tmux",
            "-L",
            self.socket,
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "100",
            "-y",
            "30",
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0, "tmux new-session failed"

    async def screen(self) -> str:
        return await self.run("capture-pane", "-p", "-t", "top")

    async def wait_screen(self, pattern: str) -> str:
        """The screen once ``pattern`` (a regular expression) is on it."""
        screen = ""
        try:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    screen = await self.screen()
                    if re.search(pattern, screen, re.M):
                        return screen
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"{pattern!r} never showed; the screen:\n{screen}") from None


@contextlib.asynccontextmanager
async def tmux_top(server: RunningServer) -> AsyncIterator[Tmux]:
    tmux = Tmux()
    env = " ".join(
        f"{k}={v}" for k, v in {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}.items() if v
    )
    command = (
        f"env -u HUBBUB_HTTP_API_KEY {env} {sys.executable} -m hubbub.cli.main top "
        f"--url {server.http_url} --api-key {API_KEY} --interval 0.3; "
        # The shell stays (sleep): tmux may drop a dead pane's last output.
        'echo "top exited with $?"; sleep 60'
    )
    try:
        await tmux.start(command)
        yield tmux
    finally:
        with contextlib.suppress(AssertionError, TimeoutError):
            await tmux.run("kill-server")


async def publish_forever(server: RunningServer, channel: str) -> None:
    async with aiohttp.ClientSession() as http:
        n = 0
        while True:
            n += 1
            async with http.post(
                f"{server.api_url}/publish",
                json={"channel": channel, "data": {"n": n}},
                headers={"X-API-Key": API_KEY},
            ) as response:
                await response.read()
            await asyncio.sleep(0.02)


async def test_top_in_tmux(start_server: ServerFactory) -> None:
    server = await start_server()
    async with contextlib.AsyncExitStack() as stack:
        for i in range(3):
            await stack.enter_async_context(
                connected_client(server.ws_url, server.token(f"u{i}"), channels=("chat:busy",))
            )
        await stack.enter_async_context(
            connected_client(server.ws_url, server.token("quiet"), channels=("chat:quiet",))
        )
        publisher = asyncio.create_task(publish_forever(server, "chat:busy"))
        stack.callback(publisher.cancel)
        async with tmux_top(server) as tmux:
            screen = await tmux.wait_screen(r"^in [\d.k]+ msg/s +out [1-9][\d.k]* msg/s")
            assert re.search(r"api [1-9][\d.k]* calls/s", screen), screen
            assert re.search(r"^connections 4 +users 4 +channels 2 +subscriptions 4", screen, re.M)
            assert re.search(rf"^{server.hub.node_id[:11]} ", screen, re.M), screen
            channels = screen[screen.index("TOP CHANNELS") :].splitlines()
            assert re.match(r"chat:busy +3$", channels[1]) and re.match(
                r"chat:quiet +1$", channels[2]
            )
            # In place: one header however many readings, and the clock moves.
            clock = re.search(r"(\d\d:\d\d:\d\d) every", screen)
            assert clock is not None
            later = await tmux.wait_screen(
                rf"^hubbub top .* (?!{clock.group(1)})\d\d:\d\d:\d\d every"
            )
            assert later.count("hubbub top") == 1 and later.count("TOP CHANNELS") == 1

            await server.stop()  # the server goes away: said on the screen, retried
            await tmux.wait_screen(r"^! cannot read http://127\.0\.0\.1:\d+/api/info")

            await tmux.run("send-keys", "-t", "top", "q")
            # top quit with status 0, and the screen from before it is back (the shell
            # printed the status on it; nothing of top's is left).
            screen = await tmux.wait_screen(r"^top exited with \d+$")
            assert "top exited with 0" in screen and "hubbub top" not in screen


def test_render_fits_the_terminal() -> None:
    node = {
        "uid": "n1",
        "name": "node-with-a-long-name",
        "num_clients": 123456,
        "num_users": 99,
        "num_subs": 7,
        "num_channels": 3,
        "uptime": 90061,
        "process": {"rss": 50 * 1024 * 1024},
    }
    reading = Reading(
        0.0,
        [node],
        [(f"chat:{i}" + "x" * 60, 100 - i) for i in range(30)],
        rates={"n1": {"client.messages_out": 123456.0, "process.cpu_seconds": 0.5}},
        error="",
    )
    lines = render(reading, url="http://h:1", width=80, height=16, interval=1)
    assert len(lines) <= 16 and all(len(line) <= 80 for line in lines)
    assert "out 123k msg/s" in lines[2]
    row = next(line for line in lines if line.startswith("node-with-a"))
    assert row.split()[1:4] == ["1d01h", "123k", "99"] and "50.0M" in row
    start = next(i for i, line in enumerate(lines) if line.startswith("TOP CHANNELS")) + 1
    shown = lines[start:]
    assert shown, lines
    for i, line in enumerate(shown):  # the busiest first, long names cut to fit
        assert re.fullmatch(rf"chat:{i}x+\.\.\. +{100 - i}", line) and len(line) == 68, line


def test_top_once_against_nothing_fails_in_one_line(tmp_path: Path) -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "hubbub.cli.main", "top", "--url", "http://127.0.0.1:1", "--once"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot read http://127.0.0.1:1/api/info")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
