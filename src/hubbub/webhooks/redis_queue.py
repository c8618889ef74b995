"""The webhook queue in Redis: a stream with a consumer group, and channel holders.

Rule 1: accepted events are entries of one stream (``<prefix>.webhooks.stream``)
on the first Redis of ``engine.redis.address`` (with ``sentinel_address``: the
master the first entry's sentinels name; a Redis Cluster is refused at start),
with the engine's connection settings; every node reads it through one
consumer group, so each batch goes to one node. An entry is deleted when its
POST succeeded; an entry a node took and did not acknowledge within
``webhooks.claim_after`` (the node died, or the receiver is down and the node
stopped holding it) is taken over.
Rule 2: a channel's holders are a set of node ids; a Lua script adds or
removes this node and appends occupied (first holder) or vacated (last
holder gone) in the same atomic step, so each happens once cluster-wide.
Rule 3: nodes heartbeat in a sorted set; any node removes the holdings of a
node silent for ``claim_after`` (killed without shutdown), appending the
vacated events it owed, in one script.
Rule 4: the stream is bounded (queues.py Rule 2): each accept and heartbeat
trims it exactly to ``webhooks.queue_max_length`` entries and, with
``queue_max_age``, drops entries older than that (entry ids are Redis's
milliseconds), in the same round trip, and reports how many went.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError, ResponseError

from hubbub.config.model import RedisConfig
from hubbub.engines.redis_single import single_client
from hubbub.webhooks.events import now_ms
from hubbub.webhooks.queues import (
    OVER_AGE,
    OVER_LENGTH,
    Bounds,
    Dropped,
    Item,
    QueueUnavailable,
)

GROUP = "hubbub-webhooks"

# KEYS: holders of the channel, channels of the node, stream. ARGV: node, channel, event.
OCCUPY = """
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
if added == 1 and redis.call('SCARD', KEYS[1]) == 1 then
  redis.call('XADD', KEYS[3], '*', 'e', ARGV[3])
  return 1
end
return 0
"""

VACATE = """
local removed = redis.call('SREM', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
if removed == 1 and redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('XADD', KEYS[3], '*', 'e', ARGV[3])
  return 1
end
return 0
"""

# KEYS: nodes (zset), stream. ARGV: key prefix, now ms, silent-since ms, node to remove now
# ("" for none). Removes every node silent since ARGV[3] (and ARGV[4]) with its holdings.
RELEASE = """
local nodes = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
if ARGV[4] ~= '' then table.insert(nodes, ARGV[4]) end
local released = 0
for _, node in ipairs(nodes) do
  local held = ARGV[1] .. 'node.' .. node
  for _, channel in ipairs(redis.call('SMEMBERS', held)) do
    local holders = ARGV[1] .. 'chan.' .. channel
    if redis.call('SREM', holders, node) == 1 and redis.call('SCARD', holders) == 0 then
      local event = cjson.encode({type = 'vacated', time_ms = tonumber(ARGV[2]),
                                  node = node, channel = channel})
      redis.call('XADD', KEYS[2], '*', 'e', event)
      released = released + 1
    end
  end
  redis.call('DEL', held)
  redis.call('ZREM', KEYS[1], node)
end
return released
"""


class RedisQueue:
    """Webhook events in a Redis stream, shared by the nodes of a cluster."""

    durable = True

    def __init__(self, config: RedisConfig, *, claim_after: float, bounds: Bounds) -> None:
        self.bounds = bounds
        self.queued = 0
        self._sentinel: Any  # the Sentinel manager to close, with sentinel_address
        self.client, self._sentinel = single_client(config, "engine.redis")
        self.prefix = f"{config.prefix}.webhooks."
        self.stream = self.prefix + "stream"
        self.nodes = self.prefix + "nodes"
        self.claim_ms = int(claim_after * 1000)
        self.max_wait = max(config.io_timeout - 1.0, 0.1)  # a blocking read within io_timeout
        self._occupy = self.client.register_script(OCCUPY)
        self._vacate = self.client.register_script(VACATE)
        self._release = self.client.register_script(RELEASE)
        self._node = ""
        self._next_claim = 0.0
        self._group_ready = False

    async def open(self, node: str) -> None:
        self._node = node
        await self._ensure_group()
        await self.heartbeat()

    async def _ensure_group(self) -> None:
        """Create the consumer group (with the stream) unless it exists; again after
        Redis lost it (a restart without persistence)."""
        if self._group_ready:
            return
        try:
            await self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise QueueUnavailable(f"creating the consumer group: {exc}") from None
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc) or type(exc).__name__) from None
        self._group_ready = True

    async def close(self) -> None:
        """This node leaves: its holdings go now (vacated where it was the last)."""
        with contextlib.suppress(RedisError, OSError):
            await self._release(
                keys=[self.nodes, self.stream], args=[self.prefix, now_ms(), 0, self._node]
            )
        await self.client.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()

    async def accept(self, items: Sequence[Item]) -> Dropped:
        pipe = self.client.pipeline(transaction=False)
        for item in items:
            if item.kind == "event":
                pipe.xadd(self.stream, {"e": item.payload})
                continue
            script = self._occupy if item.kind == "occupy" else self._vacate
            keys = [self.prefix + "chan." + item.channel, self._held_key, self.stream]
            await script(keys=keys, args=[self._node, item.channel, item.payload], client=pipe)
        trims = self._trim(pipe)
        try:
            replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc) or type(exc).__name__) from None
        return self._trimmed(trims, replies)

    def _trim(self, pipe: Any) -> list[str]:
        """Queue Rule 4's trims and a length read on ``pipe``; the reasons, in order."""
        reasons = []
        if self.bounds.max_age > 0:
            oldest = now_ms() - int(self.bounds.max_age * 1000)
            pipe.xtrim(self.stream, minid=str(max(oldest, 0)), approximate=False)
            reasons.append(OVER_AGE)
        pipe.xtrim(self.stream, maxlen=self.bounds.max_length, approximate=False)
        reasons.append(OVER_LENGTH)
        pipe.xlen(self.stream)
        return reasons

    def _trimmed(self, reasons: list[str], replies: list[Any]) -> Dropped:
        """What the trims of ``_trim`` (the last replies of a pipeline) dropped."""
        self.queued = int(replies[-1])
        counts = replies[-1 - len(reasons) : -1]
        return {reason: int(n) for reason, n in zip(reasons, counts, strict=True) if n}

    @property
    def _held_key(self) -> str:
        return self.prefix + "node." + self._node

    async def next_batch(self, size: int, wait: float) -> list[tuple[str, bytes]]:
        await self._ensure_group()
        try:
            loop_time = asyncio.get_running_loop().time()
            if loop_time >= self._next_claim:
                # Take over what a silent node (or this one, before a restart) left.
                self._next_claim = loop_time + self.claim_ms / 2000
                _, claimed, *_ = await self.client.xautoclaim(
                    self.stream, GROUP, self._node, self.claim_ms, start_id="0-0", count=size
                )
                if claimed:
                    return _entries(claimed)
            reply: Any = await self.client.xreadgroup(
                GROUP,
                self._node,
                {self.stream: ">"},
                count=size,
                block=int(min(wait, self.max_wait) * 1000),
            )
        except (RedisError, OSError) as exc:
            if "NOGROUP" in str(exc):
                self._group_ready = False  # created again by the next call
            raise QueueUnavailable(str(exc) or type(exc).__name__) from None
        return _entries(reply[0][1]) if reply else []

    async def ack(self, ids: Sequence[str]) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.xack(self.stream, GROUP, *ids)
        pipe.xdel(self.stream, *ids)
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc) or type(exc).__name__) from None

    async def hold(self, ids: Sequence[str]) -> None:
        """Still delivering these: reset their idle time so no other node takes them."""
        try:
            await self.client.xclaim(self.stream, GROUP, self._node, 0, list(ids), justid=True)
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc) or type(exc).__name__) from None

    async def heartbeat(self) -> Dropped:
        now = now_ms()
        try:
            await self.client.zadd(self.nodes, {self._node: now})
            await self._release(
                keys=[self.nodes, self.stream], args=[self.prefix, now, now - self.claim_ms, ""]
            )
            pipe = self.client.pipeline(transaction=False)
            trims = self._trim(pipe)  # also while nothing new arrives (age)
            replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc) or type(exc).__name__) from None
        return self._trimmed(trims, replies)

    async def length(self) -> int:
        """Entries in the stream (accepted, not yet delivered): for tests and tools."""
        return int(await self.client.xlen(self.stream))


def _entries(raw: list[Any]) -> list[tuple[str, bytes]]:
    out = []
    for entry_id, fields in raw:
        event = (fields or {}).get(b"e")
        if event is not None:  # an entry deleted meanwhile has no fields
            out.append((entry_id.decode() if isinstance(entry_id, bytes) else entry_id, event))
    return out


__all__ = ["GROUP", "RedisQueue"]
