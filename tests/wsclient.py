"""A tiny raw WebSocket client for tests: JSON commands in, replies and pushes out.

It speaks the client protocol by hand (no SDK), so tests can send anything,
including what no SDK would send, and see exactly what the server answers.
A background task reads every frame, splits it on ``\\n`` and keeps the
messages until a test takes them; server pings (``{}``) are answered unless
``auto_pong=False``. Every wait has a timeout.

    async with open_client(server.ws_url) as client:
        reply = await client.connect()
        reply = await client.call("subscribe", {"channel": "chat:1"})
        push = await client.push("chat:1", "pub")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

Message = dict[str, Any]

TIMEOUT = 5.0


class ClosedError(AssertionError):
    """The connection closed while a test waited for a message."""


class WSClient:
    """One raw WebSocket connection to the server."""

    def __init__(
        self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, *, auto_pong: bool
    ) -> None:
        self.http = http
        self.ws = ws
        self.auto_pong = auto_pong
        self.messages: list[Message] = []  # received, not yet taken (pings excluded)
        self.frames: list[str] = []  # every text frame as received
        self.pings = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.client_id = ""  # from the connect result
        self._next_id = 0
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    # --- reading ---------------------------------------------------------------------

    def start_reading(self) -> None:
        """Start the background reader (done by ``open_client`` unless ``read=False``)."""
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                msg = await self.ws.receive()
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self.frames.append(msg.data)
                    for line in msg.data.split("\n"):
                        if not line.strip():
                            continue
                        obj = json.loads(line)
                        if obj == {}:
                            self.pings += 1
                            if self.auto_pong and not self.ws.closed:
                                await self.ws.send_str("{}")
                        else:
                            self.messages.append(obj)
                elif msg.type is aiohttp.WSMsgType.CLOSE:
                    self.close_code = msg.data
                    self.close_reason = msg.extra or ""
                    break
                else:  # CLOSING, CLOSED, ERROR
                    if self.close_code is None:
                        self.close_code = self.ws.close_code
                    break
                self._notify()
        finally:
            if self.close_code is None:
                self.close_code = self.ws.close_code or -1
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, find: Callable[[], Any], within: float, what: str) -> Any:
        """Wait until ``find()`` returns something truthy; AssertionError on timeout/close."""
        self.start_reading()
        try:
            async with asyncio.timeout(within):
                while True:
                    found = find()
                    if found:
                        return found
                    if self.close_code is not None:
                        raise ClosedError(
                            f"closed ({self.close_code} {self.close_reason!r}) "
                            f"while waiting for {what}; got {self.messages}"
                        )
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"timed out after {within}s waiting for {what}; got {self.messages}"
            ) from None

    def _take(self, predicate: Callable[[Message], bool]) -> Message | None:
        for i, message in enumerate(self.messages):
            if predicate(message):
                return self.messages.pop(i)
        return None

    async def take(
        self, predicate: Callable[[Message], bool], *, within: float = TIMEOUT, what: str = ""
    ) -> Message:
        """The first received message matching ``predicate`` (removed from the buffer)."""
        return await self._wait(lambda: self._take(predicate), within, what or "a matching message")

    async def reply(self, command_id: int, *, within: float = TIMEOUT) -> Message:
        """The reply to command ``command_id``."""
        return await self.take(
            lambda m: m.get("id") == command_id, within=within, what=f"reply {command_id}"
        )

    async def push(self, channel: str | None, kind: str, *, within: float = TIMEOUT) -> Message:
        """The next push of type ``kind`` (``pub``, ``join``, ...) for ``channel``; its body."""

        def matches(m: Message) -> bool:
            push = m.get("push")
            return (
                isinstance(push, dict)
                and kind in push
                and (channel is None or push.get("channel", "") == channel)
            )

        message = await self.take(matches, within=within, what=f"{kind} push on {channel}")
        body: Message = message["push"][kind]
        return body

    async def wait_closed(self, *, within: float = TIMEOUT) -> int:
        """Wait for the server's close frame; its code."""
        self.start_reading()
        try:
            async with asyncio.timeout(within):
                while self.close_code is None:
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"not closed after {within}s; got {self.messages}") from None
        return self.close_code

    async def no_close(self, seconds: float) -> None:
        """Assert the connection stays open for ``seconds``."""
        self.start_reading()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while self.close_code is None:
                    await self._changed.wait()
        assert self.close_code is None, f"closed with {self.close_code} {self.close_reason!r}"

    # --- writing ---------------------------------------------------------------------

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def send_text(self, text: str) -> None:
        await self.ws.send_str(text)

    async def send_frame(self, *commands: Message | str) -> None:
        """One text frame: the commands (dicts are JSON-encoded) joined with ``\\n``."""
        parts = [c if isinstance(c, str) else json.dumps(c) for c in commands]
        await self.ws.send_str("\n".join(parts))

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def call(
        self, method: str, params: Message | None = None, *, within: float = TIMEOUT
    ) -> Message:
        """Send one command with a fresh id; its whole reply (``{"id", method|error}``)."""
        command_id = self.new_id()
        await self.send_frame({"id": command_id, method: params or {}})
        return await self.reply(command_id, within=within)

    async def result(
        self, method: str, params: Message | None = None, *, within: float = TIMEOUT
    ) -> Message:
        """``call`` that must succeed: the result object."""
        reply = await self.call(method, params, within=within)
        assert "error" not in reply, f"{method} {params} failed: {reply}"
        result: Message = reply.get(method, {})
        return result

    async def error(self, method: str, params: Message | None = None) -> Message:
        """``call`` that must fail: the error object."""
        reply = await self.call(method, params)
        assert "error" in reply, f"{method} {params} did not fail: {reply}"
        error: Message = reply["error"]
        return error

    async def connect(self, token: str = "", **fields: Any) -> Message:
        """Send connect (with ``token`` when given); the whole reply."""
        params = dict(fields)
        if token:
            params["token"] = token
        reply = await self.call("connect", params)
        if "connect" in reply:
            self.client_id = reply["connect"].get("client", "")
        return reply

    async def close(self) -> None:
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(TIMEOUT):
                    await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self.http.close()


@contextlib.asynccontextmanager
async def open_client(
    url: str,
    *,
    auto_pong: bool = True,
    read: bool = True,
    within: float = TIMEOUT,
    **ws_kwargs: Any,
) -> AsyncIterator[WSClient]:
    """A connected raw WebSocket (no protocol connect sent yet), closed on exit."""
    http = aiohttp.ClientSession()
    try:
        async with asyncio.timeout(within):
            ws = await http.ws_connect(url, autoping=True, **ws_kwargs)
    except BaseException:
        await http.close()
        raise
    client = WSClient(http, ws, auto_pong=auto_pong)
    if read:
        client.start_reading()
    try:
        yield client
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def connected_client(
    url: str, token: str = "", *, channels: tuple[str, ...] = (), **kwargs: Any
) -> AsyncIterator[WSClient]:
    """``open_client`` that also connects and subscribes to ``channels``."""
    async with open_client(url, **kwargs) as client:
        reply = await client.connect(token)
        assert "connect" in reply, reply
        for channel in channels:
            await client.result("subscribe", {"channel": channel})
        yield client
