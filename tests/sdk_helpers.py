"""Helpers for tests that drive real Centrifugo SDKs against hubbub.

They prove nothing by themselves; they let SDK tests prove things briefly:

* ``EventProcess``: a child process (an SDK driver script) that prints one JSON
  event a line on stdout and reads one JSON command a line on stdin. Every wait
  has a timeout, and a failed wait says which events did arrive and what the
  process wrote on stderr.
* ``PythonSubscriber``: a centrifuge-python client subscribed to one channel.
* ``DeliveryReport``: sent vs received sequence numbers, as counts of lost,
  duplicated and out-of-order messages.
* ``install_js_dependencies``: ``npm ci`` in tests/js when node_modules is stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import ssl
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import pytest
from centrifuge import (
    Client,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
)

Event = dict[str, Any]
EventFilter = Callable[[Event], bool]

DEFAULT_TIMEOUT = 5.0
JS_DIR = Path(__file__).parent / "js"
NPM_CI_TIMEOUT = 300.0


def _installed_version(package: str) -> str | None:
    manifest = JS_DIR / "node_modules" / package / "package.json"
    if not manifest.is_file():
        return None
    version: str = json.loads(manifest.read_text())["version"]
    return version


def install_js_dependencies() -> None:
    """Make ``tests/js/node_modules`` match package.json, running ``npm ci`` if not."""
    if shutil.which("node") is None:
        pytest.fail("node is not installed: the tests under tests/js need Node >= 18")
    wanted: dict[str, str] = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    if all(_installed_version(name) == version for name, version in wanted.items()):
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("tests/js/node_modules is missing and npm is not installed")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=NPM_CI_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"npm ci failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


class EventProcess:
    """A JSON-lines child process: events out on stdout, commands in on stdin.

    ``next(name)`` returns the oldest event of that name not returned yet, so a
    test reads each kind of event in arrival order, whatever else came between.
    """

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        label: str,
        listener: Callable[[Event], None] | None = None,
    ) -> None:
        self.process = process
        self.label = label
        self.listener = listener  # called with each event as it arrives
        self.events: list[Event] = []  # everything received, in order
        self._taken: set[int] = set()  # indexes of ``events`` already returned by next()
        self._eof = False
        self._changed = asyncio.Condition()
        self._stderr = bytearray()
        self._ids = itertools.count(1)
        self._tasks = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    @classmethod
    async def start(
        cls,
        *argv: str,
        cwd: Path,
        label: str,
        env: dict[str, str] | None = None,
        listener: Callable[[Event], None] | None = None,
    ) -> EventProcess:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process, label, listener)

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        try:
            async for line in self.process.stdout:
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    event = {"event": "unparsed", "line": line.decode(errors="replace")}
                if self.listener is not None:
                    self.listener(event)
                async with self._changed:
                    self.events.append(event)
                    self._changed.notify_all()
        finally:
            async with self._changed:
                self._eof = True
                self._changed.notify_all()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(4096):
            self._stderr.extend(chunk)

    def describe(self) -> str:
        lines = "\n  ".join(json.dumps(e) for e in self.events) or "(none)"
        stderr = self._stderr.decode(errors="replace").strip() or "(empty)"
        return f"{self.label} events so far:\n  {lines}\n{self.label} stderr: {stderr}"

    def pending(self, name: str) -> list[Event]:
        """Events of ``name`` received but not returned by ``next`` yet."""
        return [e for i, e in enumerate(self.events) if i not in self._taken and e["event"] == name]

    async def next(
        self, name: str, *, where: EventFilter | None = None, within: float = DEFAULT_TIMEOUT
    ) -> Event:
        """The oldest not yet returned event ``name`` (matching ``where``), waiting for it."""

        async def find() -> Event:
            async with self._changed:
                while True:
                    for index, event in enumerate(self.events):
                        if index in self._taken or event.get("event") != name:
                            continue
                        if where is None or where(event):
                            self._taken.add(index)
                            return event
                    if self._eof:
                        raise AssertionError(
                            f"{self.label} ended before a {name!r} event\n{self.describe()}"
                        )
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(find(), within)
        except TimeoutError:
            raise AssertionError(
                f"no {name!r} event from {self.label} within {within}s\n{self.describe()}"
            ) from None

    async def send(self, command: dict[str, Any]) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(command).encode() + b"\n")
        await asyncio.wait_for(stdin.drain(), DEFAULT_TIMEOUT)

    async def request(self, cmd: str, *, within: float = DEFAULT_TIMEOUT, **fields: Any) -> Event:
        """Send command ``cmd`` and return its result event (matched by a fresh id)."""
        command_id = next(self._ids)
        await self.send({"cmd": cmd, "id": command_id, **fields})
        return await self.next(cmd, where=lambda e: e.get("id") == command_id, within=within)

    async def close(self, exit_command: dict[str, Any] | None = None) -> None:
        """Ask the process to exit (if given a command), then kill it if it has not."""
        process = self.process
        try:
            if exit_command is not None and process.returncode is None:
                with contextlib.suppress(ConnectionError, TimeoutError):
                    await self.send(exit_command)
                    await asyncio.wait_for(process.wait(), DEFAULT_TIMEOUT)
        finally:
            if process.returncode is None:
                process.kill()
            await asyncio.wait_for(process.wait(), DEFAULT_TIMEOUT)
            if process.stdin is not None:
                process.stdin.close()
            await asyncio.wait_for(
                asyncio.gather(*self._tasks, return_exceptions=True), DEFAULT_TIMEOUT
            )


class ScenarioEvents(Protocol):
    """What a test reads a driven SDK through: an ``EventProcess`` (Node) or a page
    (tests/browser.py's ``PageEvents``)."""

    @property
    def events(self) -> list[Event]: ...

    async def next(
        self, name: str, *, where: EventFilter | None = None, within: float = DEFAULT_TIMEOUT
    ) -> Event: ...

    async def request(
        self, cmd: str, *, within: float = DEFAULT_TIMEOUT, **fields: Any
    ) -> Event: ...


class PythonSubscriber:
    """A centrifuge-python client subscribed to ``channel``; use with ``async with``."""

    def __init__(
        self, url: str, channel: str, *, token: str = "", ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.channel = channel
        self.publications: asyncio.Queue[PublicationContext] = asyncio.Queue()
        self.subscribed: asyncio.Queue[SubscribedContext] = asyncio.Queue()
        self.client = Client(url, token=token, name="python-sdk-test", ssl_context=ssl_context)
        self.subscription = self.client.new_subscription(channel, self._Handler(self))

    class _Handler(SubscriptionEventHandler):
        def __init__(self, owner: PythonSubscriber) -> None:
            self.owner = owner

        async def on_subscribed(self, ctx: SubscribedContext) -> None:
            await self.owner.subscribed.put(ctx)

        async def on_publication(self, ctx: PublicationContext) -> None:
            await self.owner.publications.put(ctx)

    async def __aenter__(self) -> PythonSubscriber:
        await asyncio.wait_for(self.client.connect(), DEFAULT_TIMEOUT)
        await self.subscription.subscribe()
        await self.subscription.ready(timeout=DEFAULT_TIMEOUT)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.wait_for(self.client.disconnect(), DEFAULT_TIMEOUT)

    async def publish(self, data: Any) -> None:
        await self.subscription.publish(data, timeout=DEFAULT_TIMEOUT)

    async def next_publication(self, within: float = DEFAULT_TIMEOUT) -> PublicationContext:
        return await asyncio.wait_for(self.publications.get(), within)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """How a received sequence of message numbers compares with the sent one."""

    sent: int
    received: int
    lost: int  # sent, never received
    duplicated: int  # received more than once (each extra copy counts)
    out_of_order: int  # received after a message sent later than it
    unexpected: int  # received, never sent

    @classmethod
    def compare(cls, sent: Sequence[int], received: Sequence[int]) -> DeliveryReport:
        order = {number: index for index, number in enumerate(sent)}
        seen: set[int] = set()
        duplicated = out_of_order = unexpected = 0
        latest = -1  # highest send index received so far
        for number in received:
            if number not in order:
                unexpected += 1
                continue
            if number in seen:
                duplicated += 1
                continue
            seen.add(number)
            if order[number] < latest:
                out_of_order += 1
            latest = max(latest, order[number])
        return cls(
            sent=len(sent),
            received=len(received),
            lost=len(set(sent) - seen),
            duplicated=duplicated,
            out_of_order=out_of_order,
            unexpected=unexpected,
        )

    def __str__(self) -> str:
        return (
            f"sent={self.sent} received={self.received} lost={self.lost} "
            f"duplicated={self.duplicated} out_of_order={self.out_of_order} "
            f"unexpected={self.unexpected}"
        )
