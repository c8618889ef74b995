"""A TCP proxy on 127.0.0.1 whose links can be cut, stalled or partitioned on command.

The chaos run puts one between each node and Redis and between clients and
each node. Users never run it: it stands in for the network between them.

Rule 1: bytes pass unchanged and in order; a side's EOF is passed on as a
close after what it sent was written (so a WebSocket close frame arrives).
Rule 2: ``cut()`` resets every open link at once (both sides get a TCP RST,
as when a router drops the state); ``stall(seconds)`` stops moving bytes on every
link, open or new, for that long (the peers see silence, not an error);
``partition(seconds)`` cuts, then for that long accepts new links only to reset
them (what an L4 proxy or a load balancer with no live backend does); a link
whose upstream cannot be reached is reset the same way.
Rule 3: nothing here blocks the event loop; every pump stops with its link.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

CHUNK = 65536


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (RST), not a FIN: SO_LINGER 0, then abort."""
    transport = writer.transport
    sock = transport.get_extra_info("socket")
    if sock is not None and not transport.is_closing():
        with contextlib.suppress(OSError, ValueError):  # ValueError: already closed (fd -1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Link:
    """One accepted connection and its upstream connection."""

    __slots__ = ("tasks", "writers")

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for writer in self.writers:
            reset(writer)


class LinkProxy:
    """Listen on a free port of 127.0.0.1 and forward every connection to ``upstream``."""

    def __init__(self, name: str, upstream_port: int) -> None:
        self.name = name
        self.upstream_port = upstream_port
        self.port = 0
        self.links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing_until = 0.0
        self._resume: asyncio.TimerHandle | None = None
        # What happened, for the summary.
        self.accepted = 0
        self.cuts = 0
        self.stalls = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        sock: socket.socket = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])

    async def close(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
        self._flowing.set()
        if self._server is not None:
            self._server.close()
            self._server = None
        tasks = [task for link in self.links for task in link.tasks]
        self.cut()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    # --- faults ------------------------------------------------------------------------

    def cut(self) -> int:
        """Abort every open link; the number aborted."""
        links = list(self.links)
        for link in links:
            link.abort()
        self.links.clear()
        self.cuts += 1
        return len(links)

    def stall(self, seconds: float) -> None:
        """Move no bytes on any link for ``seconds``."""
        self.stalls += 1
        self._flowing.clear()
        if self._resume is not None:
            self._resume.cancel()
        self._resume = asyncio.get_running_loop().call_later(seconds, self._flowing.set)

    def partition(self, seconds: float) -> int:
        """Cut every link and refuse new ones for ``seconds``."""
        self._refusing_until = asyncio.get_running_loop().time() + seconds
        return self.cut()

    @property
    def refusing(self) -> bool:
        return asyncio.get_running_loop().time() < self._refusing_until

    # --- forwarding --------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            reset(writer)  # upstream down: the client sees its connection reset
            return
        if self.refusing:  # partitioned while connecting
            reset(up_writer)
            reset(writer)
            return
        self.accepted += 1
        link = _Link()
        link.writers = [writer, up_writer]
        self.links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer)),
            asyncio.create_task(self._pump(link, up_reader, writer)),
        ]
        await asyncio.wait(link.tasks)
        self.links.discard(link)

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        flowing = self._flowing
        try:
            while data := await reader.read(CHUNK):
                if not flowing.is_set():
                    await flowing.wait()
                writer.write(data)
                await writer.drain()
        except Exception:
            link.abort()  # one side failed: the other sees a reset too
            return
        # EOF from this side: deliver what it sent, then close the other side.
        with contextlib.suppress(Exception):
            writer.close()
            await writer.wait_closed()
        link.abort()
