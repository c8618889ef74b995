"""Lua scripts of the Redis engine: each one runs atomically on the channel's shard.

Rule: whatever must be ordered or gap-free happens inside one script (offset,
stream entry, expiries, idempotency record and the PUBLISH to other nodes), so
two nodes publishing to one channel can never interleave halfway.

Keys of a channel C under prefix P: ``P.meta.C`` (hash: ``e`` epoch, ``s`` top
offset, ``r`` the replication ID of the Redis master that wrote them, lives
``meta_ttl``), ``P.stream.C`` (stream, entry ID ``<offset>-1``,
field ``d`` the JSON publication without its offset, lives ``history_ttl``),
``P.idem.C.K`` (idempotency key K: ``<offset>:<epoch>``), ``P.presence.C``
(hash client -> JSON ClientInfo) and ``P.presence_exp.C`` (sorted set client ->
expiry time). Pub/sub messages go to Redis channel ``P.channel.C``.

A stream's epoch belongs to one Redis master: replication is asynchronous, so
a replica promoted after a failover (Sentinel or Cluster) may lack the last
publications its master acknowledged, and would hand their offsets out again
with other data. Every script that reads or extends a stream first compares
the meta's ``r`` with the replication ID of the server it runs on (a promoted
replica takes a new one; so does a restarted server): when they differ, the
stream starts a new epoch (its offsets and entries stay), so every client
positioned in the old epoch is told (``recovered: false``) instead of being
silently positioned among replaced publications.

On a Redis Cluster, C is written ``{C}`` in every key and in the channel (a
hash tag), so all of a channel's keys and its shard channel live in one slot,
and the scripts (which touch only those) run on the slot's master; events go
out with SPUBLISH (sharded pub/sub), reaching only the nodes that serve the slot.
"""

from __future__ import annotations

#: The replication ID of the server running the script (Lua prelude of the stream
#: scripts). INFO is allowed in scripts; with effects replication (Redis 7) its
#: answer never reaches the replicas.
REPLID = """
local function replid()
  return string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)') or ''
end
"""

#: KEYS: stream, meta, idempotency key. ARGV: 1 body, 2 history size, 3 history ttl
#: (ms), 4 meta ttl (ms), 5 a fresh epoch (used when the meta key is gone), 6 the
#: Redis pub/sub channel, 7 idempotency window in s ("0": no key), 8 "1": keep history,
#: 9 the publish command ("PUBLISH", or "SPUBLISH" on a cluster).
#: Returns {duplicate (0/1), "<offset>:<epoch>"}; publishes "p<offset>:<epoch>:<body>".
PUBLISH = (
    REPLID
    + """
if ARGV[7] ~= '0' then
  local seen = redis.call('GET', KEYS[3])
  if seen then return {1, seen} end
end
local offset = 0
local epoch = ''
if ARGV[8] == '1' then
  local meta = redis.call('HMGET', KEYS[2], 'e', 'r')
  epoch = meta[1]
  local here = replid()
  if not epoch then
    epoch = ARGV[5]
    redis.call('DEL', KEYS[1])
    redis.call('HSET', KEYS[2], 'e', epoch, 's', 0, 'r', here)
  elseif meta[2] ~= here then
    epoch = ARGV[5]
    redis.call('HSET', KEYS[2], 'e', epoch, 'r', here)
  end
  offset = redis.call('HINCRBY', KEYS[2], 's', 1)
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], offset .. '-1', 'd', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
local position = offset .. ':' .. epoch
if ARGV[7] ~= '0' then
  redis.call('SET', KEYS[3], position, 'EX', ARGV[7])
end
redis.call(ARGV[9], ARGV[6], 'p' .. position .. ':' .. ARGV[1])
return {0, position}
"""
)

#: KEYS: stream, meta. ARGV: 1 "1": history on (create the meta key when missing),
#: 2 a fresh epoch, 3 meta ttl (ms), 4 the caller's epoch ("" : unchecked), 5 "f"
#: forward, "r" reverse, "" position only, 6 range start (forward) or end (reverse)
#: ID, 7 count ("-1": all). Returns {top, epoch, mismatch (0/1), entries}.
HISTORY = (
    REPLID
    + """
local meta = redis.call('HMGET', KEYS[2], 'e', 's', 'r')
local epoch = meta[1]
local top = tonumber(meta[2] or '0')
if not epoch then
  if ARGV[1] ~= '1' then return {0, '', 0, {}} end
  epoch = ARGV[2]
  top = 0
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch, 's', 0, 'r', replid())
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
else
  local here = replid()
  if meta[3] ~= here then
    epoch = ARGV[2]
    redis.call('HSET', KEYS[2], 'e', epoch, 'r', here)
  end
end
if ARGV[4] ~= '' and ARGV[4] ~= epoch then return {top, epoch, 1, {}} end
local entries = {}
if ARGV[5] == 'f' then
  if ARGV[7] == '-1' then
    entries = redis.call('XRANGE', KEYS[1], ARGV[6], '+')
  else
    entries = redis.call('XRANGE', KEYS[1], ARGV[6], '+', 'COUNT', ARGV[7])
  end
elseif ARGV[5] == 'r' then
  if ARGV[7] == '-1' then
    entries = redis.call('XREVRANGE', KEYS[1], ARGV[6], '-')
  else
    entries = redis.call('XREVRANGE', KEYS[1], ARGV[6], '-', 'COUNT', ARGV[7])
  end
end
return {top, epoch, 0, entries}
"""
)

#: KEYS: presence hash, expiry set. ARGV: 1 client, 2 JSON ClientInfo, 3 expiry time,
#: 4 key lifetime in s.
PRESENCE_ADD = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

#: KEYS: presence hash, expiry set. ARGV: 1 now. Drops expired entries, returns HGETALL.
PRESENCE_GET = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
if #expired > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
  for i = 1, #expired, 1000 do
    redis.call('HDEL', KEYS[1], unpack(expired, i, math.min(i + 999, #expired)))
  end
end
return redis.call('HGETALL', KEYS[1])
"""

#: KEYS: presence hash, expiry set. ARGV: 1 client. Removes the client's entry.
PRESENCE_REMOVE = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
