"""A ``redis_stream`` consumer: API commands read from Redis streams, as Centrifugo's.

Rule 1: every node reads each stream through the consumer group
``consumer_group`` (created at the stream's end, ``$``, with the stream, when
missing: at start, and again after Redis lost it) under its own node id, so each
entry goes to one node. An entry is acknowledged (XACK) only once its command
was applied or skipped (commands.py Rule 3); an entry left unacknowledged (a
retry, or a node that died) is taken over by any node once idle for
``visibility_timeout`` (XAUTOCLAIM, checked every 5 seconds; 0: never, as in
Centrifugo): at least once.
Rule 2: the entry's ``method_value`` names the API method and its
``payload_value`` holds the request (publication data mode: the data, the other
fields from ``publication_data_mode``'s values). An entry without the payload
value is skipped (acknowledged, logged once).
Rule 3: Redis away is one warning line, then attempts with a growing pause (up to
5 seconds) until it answers again (one info line); nothing else stops.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import RedisError, ResponseError

from hubbub.config.model import RedisStreamConsumer
from hubbub.consumers.commands import (
    RETRY,
    SKIPPED,
    Backoff,
    Command,
    Execute,
    PublicationFields,
    apply,
    command,
    publication,
)
from hubbub.engines.redis_single import single_client

log = logging.getLogger("hubbub.consumers")

#: How often pending entries idle for visibility_timeout are taken over (Centrifugo's).
CLAIM_EVERY = 5.0
#: The longest a read waits for new entries (Centrifugo blocks 5 seconds).
BLOCK = 5.0


class RedisStreamReader:
    """Reads and applies the entries of every stream of one consumer."""

    def __init__(
        self,
        label: str,
        config: RedisStreamConsumer,
        node: str,
        execute: Execute,
        *,
        key: str = "consumers[].redis_stream",  # where config is, named by a TLS error
    ):
        self.label = label
        self.config = config
        self.node = node
        self.execute = execute
        self.client, self._sentinel = single_client(config, key)
        # A read blocks within the socket timeout (io_timeout), or the client gives up.
        self.block_ms = int(max(min(BLOCK, config.io_timeout - 1.0), 0.1) * 1000)
        self.applied = 0
        self.skipped = 0
        self._down = False
        self._stopping = False
        self._busy = 0  # batches being applied: shutdown waits for them (idle)
        self.idle = asyncio.Event()
        self.idle.set()
        mode = config.publication_data_mode
        self._fields = PublicationFields(
            mode.channels_value,
            mode.idempotency_key_value,
            mode.delta_value,
            mode.tags_value_prefix,
        )

    async def run(self) -> None:
        await asyncio.gather(*(self._stream(name) for name in self.config.streams))

    async def close(self) -> None:
        await self.client.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()

    def stop(self) -> None:
        self._stopping = True

    async def _stream(self, stream: str) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        group_ready = False
        next_claim = 0.0
        while not self._stopping:
            try:
                if not group_ready:
                    await self._create_group(stream)
                    group_ready = True
                entries: list[Any] = []
                if self.config.visibility_timeout > 0 and loop.time() >= next_claim:
                    next_claim = loop.time() + CLAIM_EVERY
                    entries = await self._claim(stream)
                if not entries:
                    entries = await self._read(stream)
                if self._down:
                    self._down = False
                    log.info("%s: Redis answers again: reading %s", self.label, stream)
                backoff.reset()
                if entries and not self._stopping:
                    await self._apply_all(stream, entries)
            except (RedisError, OSError) as exc:
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    group_ready = False  # Redis lost it (restarted empty): created again now
                    continue
                if not self._down:
                    self._down = True
                    log.warning(
                        "%s: Redis unavailable (%s): retrying until it answers",
                        self.label,
                        str(exc) or type(exc).__name__,
                    )
                await asyncio.sleep(backoff.next())

    async def _create_group(self, stream: str) -> None:
        try:
            await self.client.xgroup_create(
                stream, self.config.consumer_group, id="$", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _claim(self, stream: str) -> list[Any]:
        reply = await self.client.xautoclaim(
            stream,
            self.config.consumer_group,
            self.node,
            int(self.config.visibility_timeout * 1000),
            start_id="0-0",
            count=self.config.num_workers,
        )
        return list(reply[1]) if reply else []

    async def _read(self, stream: str) -> list[Any]:
        reply: Any = await self.client.xreadgroup(
            self.config.consumer_group,
            self.node,
            {stream: ">"},
            count=self.config.num_workers,
            block=self.block_ms,
        )
        return list(reply[0][1]) if reply else []

    async def _apply_all(self, stream: str, entries: list[Any]) -> None:
        """Apply up to num_workers entries at once; acknowledge those done."""
        self._busy += 1
        self.idle.clear()
        try:
            outcomes = await asyncio.gather(*(self._apply(stream, e) for e in entries))
        finally:
            self._busy -= 1
            if not self._busy:
                self.idle.set()
        done = [entry_id for entry_id, ok in outcomes if ok]
        if done:
            await self.client.xack(stream, self.config.consumer_group, *done)

    async def _apply(self, stream: str, entry: Any) -> tuple[Any, bool]:
        entry_id, raw = entry
        if raw is None:  # deleted from the stream while pending: nothing to apply
            return entry_id, True
        fields = {_text(k): v for k, v in raw.items()}
        payload = fields.get(self.config.payload_value)
        found: Command | str
        if payload is None:
            found = f"no {self.config.payload_value!r} value"
        elif self.config.publication_data_mode.enabled:
            texts = {k: _text(v) for k, v in fields.items()}
            found = publication(payload, texts, self._fields)
        else:
            found = command(_text(fields.get(self.config.method_value, b"")), payload)
        outcome = await apply(self.execute, found)
        if outcome.verdict == RETRY:
            # Taken again after visibility_timeout, by this node or another.
            return entry_id, False
        if outcome.verdict == SKIPPED:
            self.skipped += 1
            log.error(
                "%s: skipped entry %s of stream %s: %s",
                self.label,
                _text(entry_id),
                stream,
                outcome.why,
            )
        else:
            self.applied += 1
        return entry_id, True


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
