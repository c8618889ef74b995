"""The ways into hubbub's one WebSocket implementation, for tests that must hold on each.

``Door(name, start_server)``: "serve" is the listener of ``hubbub serve``,
"attach" an aiohttp application embedding hubbub, "tls" the listener over TLS
(clients trust the test CA), "attach-tls" the aiohttp application on a TLS
site. A test takes the ``door`` fixture (conftest.py) and runs once per door;
``Door`` opens raw connections the right way for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tests.rawws import TIMEOUT, HttpReply, RawWS, read_http_head, text, wait_eof

if TYPE_CHECKING:
    from tests.conftest import RunningServer

HOST = "127.0.0.1"


class Door:
    def __init__(self, name: str, start_server: Callable[..., Awaitable[RunningServer]]) -> None:
        self.name = name
        self._start_server = start_server

    def __repr__(self) -> str:
        return self.name

    async def start(self, extra: dict[str, Any] | None = None, **kwargs: Any) -> RunningServer:
        return await self._start_server(
            extra, embedded="attach" in self.name, tls="tls" in self.name, **kwargs
        )

    async def open_stream(
        self, server: RunningServer
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            HOST, server.port, ssl=server.tls, server_hostname=HOST if server.tls else None
        )

    async def exchange(self, server: RunningServer, request: bytes) -> HttpReply:
        """Send a raw request; the response head (the connection is then dropped)."""
        reader, writer = await self.open_stream(server)
        try:
            writer.write(request)
            reply = await read_http_head(reader)
            with contextlib.suppress(ConnectionError):
                await wait_eof(reader, within=0.2)
            return reply
        finally:
            writer.transport.abort()

    async def open(self, server: RunningServer, *, headers: list[str] | None = None) -> RawWS:
        reader, writer = await self.open_stream(server)
        return await RawWS.handshake(reader, writer, HOST, server.port, headers=headers)

    async def connected(self, server: RunningServer, **kwargs: Any) -> RawWS:
        """An open WebSocket that has connected (protocol ``connect`` answered)."""
        ws = await self.open(server, **kwargs)
        await ws.send(text({"id": 1, "connect": {}}))
        reply = await ws.reply(1, within=TIMEOUT)
        assert "connect" in reply, reply
        return ws
