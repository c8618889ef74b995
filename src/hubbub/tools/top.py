"""``hubbub top``: a live terminal view of a running node or cluster, through its API.

Rule 1: everything shown comes from the server API (``info`` for the nodes and
their cumulative counters, ``channels`` for the busiest channels): ``top``
works from anywhere the API is reachable, on any node of a cluster. Rates are
differences between two readings of the same node, never guesses.
Rule 2: drawing is plain ANSI (cursor home, erase to the end of each line, the
alternate screen), so it works in any terminal, over SSH and inside tmux,
without curses; ``once`` prints one plain reading for scripts.
Rule 3: a failed reading is shown on the screen (and retried next time), never
a traceback; ``q`` or Ctrl-C leaves the terminal as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import aiohttp

__all__ = ["Reading", "Top", "TopError", "render"]

#: How many channels the channel list shows at most (the terminal may allow fewer).
TOP_CHANNELS = 20
#: Messages in: client commands (server API calls are shown apart: top makes some).
IN = ("client.commands",)


class TopError(Exception):
    """The API could not be read (unreachable, refused, wrong key)."""


@dataclass
class Reading:
    """One reading of the cluster: nodes (with rates since the last one) and channels."""

    at: float
    nodes: list[dict[str, Any]]
    channels: list[tuple[str, int]]
    rates: dict[str, dict[str, float]] = field(default_factory=dict)  # node uid -> rates
    error: str = ""


class Top:
    """Reads the API of ``url`` (``http://HOST:PORT``, the server API's address)."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self._previous: dict[str, tuple[float, dict[str, float]]] = {}

    async def _call(
        self, http: aiohttp.ClientSession, method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            async with http.post(
                f"{self.url}/api/{method}",
                json=params,
                headers={"X-API-Key": self.api_key},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                if response.status == 401:
                    raise TopError("the API refused the key (401): pass --api-key or --config")
                if response.status != 200:
                    raise TopError(f"{method}: HTTP {response.status}")
                body: dict[str, Any] = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            detail = str(exc) or type(exc).__name__
            raise TopError(f"cannot read {self.url}/api/{method}: {detail}") from exc
        if "error" in body:
            raise TopError(
                f"{method}: {body['error'].get('message')} ({body['error'].get('code')})"
            )
        result: dict[str, Any] = body.get("result", {})
        return result

    async def read(self, http: aiohttp.ClientSession) -> Reading:
        info = await self._call(http, "info", {})
        channels = await self._call(http, "channels", {})
        now = time.monotonic()
        nodes = sorted(info.get("nodes", []), key=lambda n: str(n.get("name", "")))
        busiest = sorted(
            (
                (name, int(c.get("num_clients", 0)))
                for name, c in channels.get("channels", {}).items()
            ),
            key=lambda item: (-item[1], item[0]),
        )[:TOP_CHANNELS]
        reading = Reading(now, nodes, busiest)
        for node in nodes:
            uid = str(node.get("uid", node.get("name", "")))
            items = {k: float(v) for k, v in node.get("metrics", {}).get("items", {}).items()}
            items["process.cpu_seconds"] = float(node.get("process", {}).get("cpu_seconds", 0.0))
            before = self._previous.get(uid)
            if before is not None and now > before[0]:
                elapsed = now - before[0]
                reading.rates[uid] = {
                    key: max(value - before[1].get(key, value), 0.0) / elapsed
                    for key, value in items.items()
                }
            self._previous[uid] = (now, items)
        return reading


# --- drawing -------------------------------------------------------------------------


def _count(value: float) -> str:
    """1234 -> "1,234"; 12345678 -> "12.3M"."""
    if value >= 10_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 100_000:
        return f"{value / 1000:.0f}k"
    return f"{value:,.0f}"


def _rate(value: float) -> str:
    if value >= 100_000:
        return f"{value / 1000:.0f}k"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _bytes(value: float) -> str:
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}G"


def _uptime(seconds: float) -> str:
    seconds = int(seconds)
    days, hours, minutes = seconds // 86400, seconds % 86400 // 3600, seconds % 3600 // 60
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds % 60:02d}s"


def render(reading: Reading, *, url: str, width: int, height: int, interval: float) -> list[str]:
    """The screen for ``reading``: lines no wider than ``width``, at most ``height``."""
    nodes = reading.nodes
    total = {
        key: sum(int(n.get(key, 0)) for n in nodes)
        for key in ("num_clients", "num_users", "num_subs", "num_channels")
    }
    rates = reading.rates.values()

    def rate_sum(*keys: str) -> float:
        return sum(r.get(key, 0.0) for r in rates for key in keys)

    stamp = time.strftime("%H:%M:%S")
    lines = [
        f"hubbub top  {url}  {len(nodes)} node{'s' * (len(nodes) != 1)}  "
        f"{stamp} every {interval:g}s  q: quit",
        f"connections {_count(total['num_clients'])}   users {_count(total['num_users'])}   "
        f"channels {_count(total['num_channels'])}   subscriptions {_count(total['num_subs'])}",
        f"in {_rate(rate_sum(*IN))} msg/s   "
        f"out {_rate(rate_sum('client.messages_out'))} msg/s "
        f"({_bytes(rate_sum('client.bytes_out'))}/s)   "
        f"api {_rate(rate_sum('api.calls'))} calls/s   "
        f"errors {_rate(rate_sum('client.reply_errors'))}/s   "
        f"engine failures {_rate(rate_sum('engine.failures'))}/s",
        "",
        f"{'NODE':<12}{'UPTIME':>7}{'CONNS':>7}{'USERS':>7}{'SUBS':>7}{'CHANS':>6}"
        f"{'IN/s':>7}{'OUT/s':>8}{'ERR/s':>6}{'CPU%':>6}{'RSS':>7}",
    ]
    for node in nodes:
        uid = str(node.get("uid", node.get("name", "")))
        node_rates = reading.rates.get(uid, {})
        process = node.get("process", {})
        lines.append(
            f"{str(node.get('name', uid))[:11]:<12}"
            f"{_uptime(node.get('uptime', 0)):>7}"
            f"{_count(node.get('num_clients', 0)):>7}"
            f"{_count(node.get('num_users', 0)):>7}"
            f"{_count(node.get('num_subs', 0)):>7}"
            f"{_count(node.get('num_channels', 0)):>6}"
            f"{_rate(sum(node_rates.get(key, 0.0) for key in IN)):>7}"
            f"{_rate(node_rates.get('client.messages_out', 0.0)):>8}"
            f"{_rate(node_rates.get('client.reply_errors', 0.0)):>6}"
            f"{node_rates.get('process.cpu_seconds', 0.0) * 100:>6.1f}"
            f"{_bytes(float(process.get('rss', 0))):>7}"
        )
    lines += ["", f"{'TOP CHANNELS':<56}{'SUBSCRIBERS':>12}"]
    room = max(height - len(lines) - 2, 0)
    for name, count in reading.channels[:room]:
        shown = name if len(name) <= 55 else name[:52] + "..."
        lines.append(f"{shown:<56}{count:>12,}")
    if not reading.channels:
        lines.append("(no channel has subscribers)")
    if reading.error:
        lines += ["", f"! {reading.error}"]
    return [line[:width] for line in lines[:height]]


# --- the terminal --------------------------------------------------------------------

_HOME, _ERASE_LINE, _ERASE_BELOW = "\x1b[H", "\x1b[K", "\x1b[J"
_ALT_ON, _ALT_OFF, _HIDE, _SHOW = "\x1b[?1049h", "\x1b[?1049l", "\x1b[?25l", "\x1b[?25h"


@contextlib.contextmanager
def _screen(out: IO[str]) -> Iterator[None]:
    """The alternate screen without a cursor, and keys one at a time, while drawing."""
    restore = None
    with contextlib.suppress(ImportError, OSError, ValueError):
        import termios
        import tty

        if sys.stdin.isatty():
            fd = sys.stdin.fileno()
            restore = (fd, termios.tcgetattr(fd))
            tty.setcbreak(fd)
    out.write(_ALT_ON + _HIDE)
    out.flush()
    try:
        yield
    finally:
        out.write(_SHOW + _ALT_OFF)
        out.flush()
        if restore is not None:
            import termios

            termios.tcsetattr(restore[0], termios.TCSADRAIN, restore[1])


async def watch(top: Top, *, interval: float, out: IO[str] = sys.stdout) -> None:
    """Draw readings in place every ``interval`` seconds until ``q`` or Ctrl-C."""
    quit_pressed = asyncio.Event()
    loop = asyncio.get_running_loop()
    reading_keys = False
    if sys.stdin.isatty():

        def key() -> None:
            data = os.read(sys.stdin.fileno(), 32)
            if not data or b"q" in data.lower():
                quit_pressed.set()

        loop.add_reader(sys.stdin.fileno(), key)
        reading_keys = True
    last: Reading | None = None
    try:
        with _screen(out):
            async with aiohttp.ClientSession() as http:
                while not quit_pressed.is_set():
                    try:
                        last = await top.read(http)
                    except TopError as exc:
                        last = Reading(time.monotonic(), [], [], error=str(exc))
                    size = shutil.get_terminal_size()
                    lines = render(
                        last, url=top.url, width=size.columns, height=size.lines, interval=interval
                    )
                    out.write(_HOME + "".join(f"{line}{_ERASE_LINE}\n" for line in lines))
                    out.write(_ERASE_BELOW)
                    out.flush()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(quit_pressed.wait(), interval)
    finally:
        if reading_keys:
            loop.remove_reader(sys.stdin.fileno())


async def once(top: Top, *, out: IO[str] = sys.stdout, pause: float = 1.0) -> None:
    """Two readings ``pause`` apart (for rates), printed once without escape codes."""
    async with aiohttp.ClientSession() as http:
        await top.read(http)
        await asyncio.sleep(pause)
        reading = await top.read(http)
    for line in render(reading, url=top.url, width=200, height=1000, interval=pause):
        out.write(line + "\n")
    out.flush()
