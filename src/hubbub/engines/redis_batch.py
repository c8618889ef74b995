"""Calls of one Lua script issued in one loop turn travel to Redis together.

Rule 1: a call is queued and answered through a future; the queue goes to
Redis as one pipeline (``EVALSHA`` per call, no transaction), so N publishes
of one loop turn cost one round trip, not N. The batch is encoded here
(``pack``: RESP, one bytes join) and written with one write on a pooled
connection; its replies are read under one deadline (``io_timeout``).
Rule 2: one batch at a time per script and shard: calls queued while a batch
is on the wire form the next batch. Redis runs one connection's commands in
order, and batches never overtake each other, so calls reach Redis in the
order they were made (a connection's publishes keep their order).
Rule 3: an outage fails every call of the batch with ``EngineUnavailable``
(counted once per batch by the shard's Reachability); a script missing from
Redis's cache (a restarted Redis) is loaded and the calls it refused are sent
again, in order; any other Redis error fails only its own call.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from hubbub.engines.base import EngineUnavailable
from hubbub.engines.health import Reachability

_Arg = bytes | str | int | float
_Call = tuple[list[str], list[_Arg], "asyncio.Future[Any]"]


class ScriptBatcher:
    """One Lua script on one Redis server, called in batches."""

    def __init__(
        self,
        client: Any,  # aioredis.Redis (a cluster batcher: RedisCluster)
        script: str,
        health: Reachability,
        outage_errors: tuple[type[BaseException], ...],
        name: str,
        io_timeout: float,
    ) -> None:
        self._client = client
        self._io_timeout = io_timeout
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._health = health
        self._outage_errors = outage_errors
        self._name = name
        self._queue: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None
        self.batches = 0  # batches sent (statistics)
        self.calls = 0  # calls sent

    def call(self, keys: list[str], args: list[_Arg]) -> asyncio.Future[Any]:
        """Queue one call; the future holds the script's reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((keys, args, future))
        if self._sender is None:
            # The task's first step runs on the next loop turn: every call made in
            # this turn is in the queue by then.
            self._sender = loop.create_task(self._send_all())
        return future

    async def _send_all(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._send(batch, reload=True)
        finally:
            self._sender = None

    async def _send(self, batch: list[_Call], *, reload: bool) -> None:
        try:
            replies = await self._execute([(keys, args) for keys, args, _ in batch])
        except self._outage_errors as exc:
            self._health.failed(exc)
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(EngineUnavailable(f"{self._name}: {exc}"))
            return
        except BaseException as exc:  # a bug, or cancelled: no call may wait forever
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(EngineUnavailable(f"{self._name}: {exc!r}"))
            raise
        self._health.succeeded()
        self.batches += 1
        self.calls += len(batch)
        refused: list[_Call] = []
        for call, reply in zip(batch, replies, strict=True):
            future = call[2]
            if isinstance(reply, NoScriptError) and reload:
                refused.append(call)
            elif future.done():
                continue
            elif isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
        if refused:
            try:
                await self._client.script_load(self._script)
            except self._outage_errors as exc:
                self._health.failed(exc)
                for _, _, future in refused:
                    if not future.done():
                        future.set_exception(EngineUnavailable(f"{self._name}: {exc}"))
                return
            await self._send(refused, reload=False)

    async def _execute(self, calls: list[tuple[list[str], list[_Arg]]]) -> list[Any]:
        """Send one EVALSHA per call on a pooled connection, in one write; the replies."""
        sha = self._sha.encode()
        packed = b"".join([pack(b"EVALSHA", sha, len(keys), *keys, *args) for keys, args in calls])
        count = len(calls)
        pool = self._client.connection_pool
        conn = await pool.get_connection()
        try:
            await conn.send_packed_command(packed, check_health=False)
            replies: list[Any] = []
            async with asyncio.timeout(self._io_timeout):
                for _ in range(count):
                    try:
                        replies.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as exc:  # this command's error reply
                        replies.append(exc)
        except BaseException:
            # Replies may still be on the way: the connection cannot be reused.
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)
        return replies


def pack(*args: _Arg) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, bytes):
            data = arg
        else:
            data = repr(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)
