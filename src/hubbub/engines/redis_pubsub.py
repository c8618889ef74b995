"""One pub/sub connection to one Redis server, kept alive, with the channels a node wants.

Rule 1: ``subscribe`` returns only once Redis confirmed the subscription, so a
history read after it cannot miss a publication.
Rule 2: when the connection breaks, events may have been lost: ``on_lost`` is
called with every channel it carried, at once, and the connection is re-made
with backoff (each attempt counted by the server's Reachability); every wanted
channel is subscribed again on the new connection.
Rule 3 (sharded pub/sub, Redis Cluster): channels are subscribed with one
SSUBSCRIBE each (a command may only name channels of one slot). When the
server drops one (its slot moved: an ``sunsubscribe`` nobody asked for) or
refuses one (MOVED), it is no longer carried here: ``on_moved`` is called with
it, and the owner of the slot must take it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError, ResponseError

from hubbub.engines.base import EngineUnavailable
from hubbub.engines.health import Reachability
from hubbub.tasks import stop_task

log = logging.getLogger("hubbub.engines.redis")

#: Silence on a pub/sub connection after which it is pinged, and declared dead.
PING_AFTER = 5.0
DEAD_AFTER = 12.0
#: What a broken connection raises: redis-py's errors, the socket's, and on uvloop a
#: RuntimeError ("the handler is closed") for a write to a transport the peer reset
#: (see redis_shard.OUTAGE_ERRORS). Anything of these means: the connection is lost.
LOST = (RedisError, OSError, RuntimeError)
#: Reconnect backoff bounds, seconds.
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0


class PubSubConnection:
    """The pub/sub connection of a node to one Redis server."""

    def __init__(
        self,
        name: str,
        connect: Callable[[], AbstractConnection],
        health: Reachability,
        *,
        sharded: bool,
        on_message: Callable[[bytes, bytes], None],
        on_lost: Callable[[set[bytes]], None],
        on_moved: Callable[[bytes], None] | None = None,
    ) -> None:
        self.name = name
        self.channels: set[bytes] = set()  # what this node wants from this server
        self._connect = connect
        self._health = health
        self._sharded = sharded
        self._on_message = on_message
        self._on_lost = on_lost
        self._on_moved = on_moved
        self._acks: dict[bytes, list[asyncio.Future[None]]] = {}
        self._asked: deque[bytes] = deque()  # sharded: channels whose SSUBSCRIBE is unanswered
        self._conn: AbstractConnection | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"redis-pubsub {self.name}"
            )

    async def close(self) -> None:
        self._closed = True  # a cancellation lost in redis-py ends the loop all the same
        await stop_task(self._task)
        self._task = None

    # --- interest ----------------------------------------------------------------------

    async def subscribe(self, channel: bytes, wait: float) -> None:
        self.channels.add(channel)
        try:
            async with asyncio.timeout(wait):
                await self._connected.wait()
                conn = self._conn
                assert conn is not None
                ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._acks.setdefault(channel, []).append(ack)
                await self._send_subscribe(conn, (channel,))
                await ack
        except TimeoutError as exc:
            raise EngineUnavailable(f"{self.name}: no pub/sub connection") from exc
        except LOST as exc:
            raise EngineUnavailable(f"{self.name}: {exc}") from exc

    async def unsubscribe(self, channel: bytes) -> None:
        self.channels.discard(channel)
        conn = self._conn
        if conn is not None:
            command = "SUNSUBSCRIBE" if self._sharded else "UNSUBSCRIBE"
            with contextlib.suppress(*LOST):
                await conn.send_command(command, channel)

    def forget(self, channel: bytes) -> None:
        """Stop carrying ``channel`` (it moved elsewhere) without telling the server."""
        self.channels.discard(channel)
        for ack in self._acks.pop(channel, ()):
            if not ack.done():
                ack.set_exception(EngineUnavailable(f"{self.name}: {channel!r} moved"))

    async def _send_subscribe(self, conn: AbstractConnection, channels: Iterable[bytes]) -> None:
        if not self._sharded:
            await conn.send_command("SUBSCRIBE", *channels)
            return
        packed: list[bytes] = []
        for channel in channels:
            self._asked.append(channel)
            packed.extend(conn.pack_command("SSUBSCRIBE", channel))
        await conn.send_packed_command(packed)

    # --- the reader --------------------------------------------------------------------

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while not self._closed:
            conn = self._connect()
            was_live = False
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                if self._closed:  # closed meanwhile: its cancellation was lost
                    return
                self._asked.clear()
                if self.channels:
                    await self._send_subscribe(conn, list(self.channels))
                self._conn = conn
                self._connected.set()
                was_live = True
                delay = BACKOFF_MIN
                self._health.succeeded()
                await self._read(conn)
            except LOST as exc:
                # Uncaught (a RuntimeError once was), it would end this task: no pub/sub
                # until the node was restarted, its subscribers silent. Once closed, the
                # error is the close's doing (its cancellation lost: tasks.py), no outage.
                if not self._closed:
                    self._health.failed(exc)
            finally:
                self._conn = None
                self._connected.clear()
                for waiters in self._acks.values():
                    for ack in waiters:
                        if not ack.done():
                            ack.set_exception(EngineUnavailable(f"{self.name}: connection lost"))
                self._acks.clear()
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
            if self._closed:
                return
            if was_live and self.channels:
                self._on_lost(set(self.channels))
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _read(self, conn: AbstractConnection) -> None:
        silent = 0.0
        on_message = self._on_message
        channels = self.channels  # the same set object for the node's life
        while True:
            try:
                message = await conn.read_response(timeout=PING_AFTER, push_request=True)
            except ResponseError as exc:  # an SSUBSCRIBE refused (MOVED: not this node's slot)
                if not self._asked:
                    raise
                self._moved(self._asked.popleft(), str(exc))
                continue
            if message is None:
                silent += PING_AFTER
                if silent >= DEAD_AFTER:
                    raise ConnectionError("no answer to PING")
                await conn.send_command("PING")
                continue
            silent = 0.0
            kind = message[0]
            if kind == b"message" or kind == b"smessage":
                # UNSUBSCRIBE is not awaited: what Redis sent before it took effect
                # may still arrive, for a channel this node no longer carries.
                if message[1] in channels:
                    on_message(message[1], message[2])
            elif kind == b"subscribe" or kind == b"ssubscribe":
                if self._asked and self._asked[0] == message[1]:
                    self._asked.popleft()
                for ack in self._acks.pop(message[1], ()):
                    if not ack.done():
                        ack.set_result(None)
            elif kind == b"sunsubscribe" and message[1] in self.channels:
                self._moved(message[1], "the server dropped it (slot moved)")

    def _moved(self, channel: bytes, why: str) -> None:
        if channel not in self.channels:
            return
        log.info("%s: %r is served elsewhere now: %s", self.name, channel, why)
        self.forget(channel)
        if self._on_moved is not None:
            self._on_moved(channel)
