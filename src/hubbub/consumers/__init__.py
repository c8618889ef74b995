"""Consumers: API commands read from an external queue and applied as if posted
to the server HTTP API (Centrifugo v6 ``consumers[]``).

Rule: every node runs every enabled ``redis_stream`` and ``nats_jetstream``
consumer (the queue's consumer group / durable consumer gives each message to
one node); each message's command goes through the API's dispatch, handed in
by the server as ``execute``. Other consumer types load with a warning and are
not run (config/engine_checks.py). ``close`` lets a command being applied
finish (bounded), then stops the readers and their connections.

    commands.py        the message format and what an API reply means for the message
    redis_stream.py    Redis streams through a consumer group
    nats_jetstream.py  a durable JetStream pull consumer
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from hubbub.config.model import ConsumerConfig
from hubbub.consumers.commands import Execute
from hubbub.consumers.nats_jetstream import NatsJetStreamReader
from hubbub.consumers.redis_stream import RedisStreamReader
from hubbub.tasks import stop_task

log = logging.getLogger("hubbub.consumers")

#: How long shutdown waits for a command being applied.
STOP_GRACE = 5.0


class Reader(Protocol):
    label: str
    applied: int
    skipped: int
    idle: asyncio.Event  # clear while a command is being applied

    async def run(self) -> None: ...

    def stop(self) -> None: ...

    async def close(self) -> None: ...


class Consumers:
    """The running consumers of one node."""

    def __init__(self, configs: tuple[ConsumerConfig, ...]) -> None:
        self.configs = configs
        self.readers: list[Reader] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, node: str, execute: Execute) -> None:
        for i, config in enumerate(self.configs):
            if not config.enabled:
                continue
            label = f"consumers[{i}] {config.name or config.type}"
            reader: Reader
            if config.type == "redis_stream":
                key = f"consumers[{i}].redis_stream"
                reader = RedisStreamReader(label, config.redis_stream, node, execute, key=key)
            elif config.type == "nats_jetstream":
                key = f"consumers[{i}].nats_jetstream"
                reader = NatsJetStreamReader(label, config.nats_jetstream, execute, key=key)
            else:
                continue  # not implemented: warned about at load
            self.readers.append(reader)
            self._tasks.append(asyncio.create_task(reader.run(), name=label))
            log.info("%s: consuming (%s)", label, config.type)

    async def close(self) -> None:
        for reader in self.readers:
            reader.stop()
        idle = [asyncio.ensure_future(r.idle.wait()) for r in self.readers]
        if idle:
            await asyncio.wait(idle, timeout=STOP_GRACE)
        for waiter in idle:
            waiter.cancel()
        for task in self._tasks:
            await stop_task(task)
        for reader in self.readers:
            with contextlib.suppress(Exception):
                await reader.close()
        self._tasks.clear()
        self.readers.clear()
