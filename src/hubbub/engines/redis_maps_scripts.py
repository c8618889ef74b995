"""Lua scripts of the Redis map engine: each runs atomically on the channel's shard.

Rule: whatever must be ordered happens in one script (engines/redis_scripts.py
Rule): a write checks its conditions, takes the next offset, changes the
state, appends the change to the stream and PUBLISHes it; an expiry sweep
removes due keys the same way, one offset each.

Keys of map channel C under prefix P (Centrifugo's names for map brokers):
``P:state:C`` (hash key -> ``<offset>:<epoch>:<JSON publication>``),
``P:state:order:C`` (sorted set key -> score, ordered maps),
``P:state:expire:C`` (sorted set key -> expiry in ms),
``P:state:meta:C`` (hash key -> ``<version>:<version epoch>``),
``P:meta:C`` (hash: ``e`` epoch, ``s`` top offset, ``r`` the replication ID of the
master that took the epoch, and the channel's stream size ``z``, stream ttl ``t``
and meta ttl ``m`` for the sweep),
``P:stream:C`` (stream, entry ID ``<offset>-1``, field ``d`` the JSON
publication: the layout redis_scripts.HISTORY reads), ``P.result.C.K``
(idempotency key K: ``<offset>:<epoch>``) and ``P:cleanup:channels`` (sorted
set channel -> the earliest expiry of its keys, in ms).
"""

from __future__ import annotations

from hubbub.engines.redis_scripts import REPLID

#: KEYS: 1 state, 2 order, 3 expire, 4 state meta, 5 meta, 6 stream, 7 idempotency
#: key (or the meta key), 8 cleanup registry.
#: ARGV: 1 key, 2 JSON publication (no offset), 3 "1": removal, 4 key mode, 5 version,
#: 6 version epoch, 7 key ttl (ms), 8 stream size, 9 stream ttl (ms), 10 meta ttl (ms,
#: "0": keep), 11 a fresh epoch, 12 pub/sub channel, 13 idempotency window (s, "0":
#: none), 14 now (ms), 15 "1": ordered, 16 score, 17 "1": renew the TTL of a key an
#: if_new write finds, 18 channel name.
#: Returns {suppressed reason ("" when applied), top, epoch}.
MAP_PUBLISH = (
    REPLID
    + """
if ARGV[13] ~= '0' then
  local seen = redis.call('GET', KEYS[7])
  if seen then
    local sep = string.find(seen, ':', 1, true)
    return {'idempotency', tonumber(string.sub(seen, 1, sep - 1)), string.sub(seen, sep + 1)}
  end
end
local now = tonumber(ARGV[14])
local key = ARGV[1]
local meta = redis.call('HMGET', KEYS[5], 'e', 's', 'r')
local epoch = meta[1]
local top = tonumber(meta[2] or '0')
local here = replid()
if not epoch then
  epoch = ARGV[11]
  top = 0
  redis.call('DEL', KEYS[6])
  redis.call('HSET', KEYS[5], 'e', epoch, 's', 0, 'r', here)
elseif meta[3] ~= here then  -- taken on another master: a new epoch (redis_scripts.py)
  epoch = ARGV[11]
  redis.call('HSET', KEYS[5], 'e', epoch, 'r', here)
end
local exists = redis.call('HEXISTS', KEYS[1], key) == 1
if exists then
  local at = redis.call('ZSCORE', KEYS[3], key)
  if at and tonumber(at) <= now then exists = false end
end
if ARGV[3] == '1' then
  if not exists then return {'key_not_found', top, epoch} end
else
  if ARGV[4] == 'if_new' and exists then
    if ARGV[17] == '1' and ARGV[7] ~= '0' then
      redis.call('ZADD', KEYS[3], now + tonumber(ARGV[7]), key)
    end
    return {'key_exists', top, epoch}
  end
  if ARGV[4] == 'if_exists' and not exists then return {'key_not_found', top, epoch} end
  if ARGV[5] ~= '0' and exists then
    local held = redis.call('HGET', KEYS[4], key)
    if held then
      local sep = string.find(held, ':', 1, true)
      local version = tonumber(string.sub(held, 1, sep - 1))
      if string.sub(held, sep + 1) == ARGV[6] and tonumber(ARGV[5]) <= version then
        return {'version', top, epoch}
      end
    end
  end
end
top = top + 1
redis.call('HSET', KEYS[5], 's', top, 'z', ARGV[8], 't', ARGV[9], 'm', ARGV[10])
if ARGV[3] == '1' then
  redis.call('HDEL', KEYS[1], key)
  redis.call('ZREM', KEYS[2], key)
  redis.call('ZREM', KEYS[3], key)
  redis.call('HDEL', KEYS[4], key)
else
  redis.call('HSET', KEYS[1], key, top .. ':' .. epoch .. ':' .. ARGV[2])
  if ARGV[15] == '1' then redis.call('ZADD', KEYS[2], ARGV[16], key) end
  if ARGV[7] ~= '0' then
    local at = now + tonumber(ARGV[7])
    redis.call('ZADD', KEYS[3], at, key)
    local due = redis.call('ZSCORE', KEYS[8], ARGV[18])
    if not due or tonumber(due) > at then redis.call('ZADD', KEYS[8], at, ARGV[18]) end
  else
    redis.call('ZREM', KEYS[3], key)
  end
  if ARGV[5] ~= '0' then redis.call('HSET', KEYS[4], key, ARGV[5] .. ':' .. ARGV[6]) end
end
redis.call('XADD', KEYS[6], 'MAXLEN', ARGV[8], top .. '-1', 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[6], ARGV[9])
if ARGV[10] == '0' then
  redis.call('PERSIST', KEYS[5])
else
  for i = 1, 5 do redis.call('PEXPIRE', KEYS[i], ARGV[10]) end
end
local position = top .. ':' .. epoch
if ARGV[13] ~= '0' then redis.call('SET', KEYS[7], position, 'EX', ARGV[13]) end
redis.call('PUBLISH', ARGV[12], 'p' .. position .. ':' .. ARGV[2])
return {'', top, epoch}
"""
)

#: KEYS: 1 state, 2 order, 3 expire, 4 state meta, 5 meta, 6 stream, 7 cleanup registry.
#: ARGV: 1 now (ms), 2 most keys to remove, 3 pub/sub channel, 4 channel name.
#: Removes due keys (each a change: offset, stream, PUBLISH) and sets the channel's
#: next due time in the registry (removes it when none); returns {removed, next}.
MAP_EXPIRE = (
    REPLID
    + """
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, ARGV[2])
if #due > 0 then
  local meta = redis.call('HMGET', KEYS[5], 'e', 's', 'z', 't', 'm', 'r')
  local epoch, top = meta[1], tonumber(meta[2] or '0')
  local here = replid()
  if not epoch then
    epoch = 'x' .. now
    top = 0
    redis.call('DEL', KEYS[6])
    redis.call('HSET', KEYS[5], 'e', epoch, 'r', here)
  elseif meta[6] ~= here then
    epoch = 'x' .. now
    redis.call('HSET', KEYS[5], 'e', epoch, 'r', here)
  end
  local size, stream_ttl, meta_ttl = meta[3] or '100', meta[4] or '60000', meta[5] or '0'
  for _, key in ipairs(due) do
    top = top + 1
    redis.call('HDEL', KEYS[1], key)
    redis.call('ZREM', KEYS[2], key)
    redis.call('ZREM', KEYS[3], key)
    redis.call('HDEL', KEYS[4], key)
    local body = '{"key":' .. cjson.encode(key) .. ',"removed":true}'
    redis.call('XADD', KEYS[6], 'MAXLEN', size, top .. '-1', 'd', body)
    redis.call('PUBLISH', ARGV[3], 'p' .. top .. ':' .. epoch .. ':' .. body)
  end
  redis.call('HSET', KEYS[5], 's', top)
  redis.call('PEXPIRE', KEYS[6], stream_ttl)
  if meta_ttl ~= '0' then redis.call('PEXPIRE', KEYS[5], meta_ttl) end
end
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if first[2] then
  redis.call('ZADD', KEYS[7], first[2], ARGV[4])
else
  redis.call('ZREM', KEYS[7], ARGV[4])
end
return {#due, first[2] or ''}
"""
)

#: KEYS: 1 state, 2 expire, 3 meta. ARGV: 1 HSCAN cursor ("" : one key), 2 count,
#: 3 now (ms), 4 a fresh epoch, 5 meta ttl (ms, "0": keep), 6 the reader's epoch
#: ("" : unchecked), 7 the one key to read. Returns {top, epoch, mismatch (0/1),
#: next cursor, {key, value, ...}} without expired keys.
MAP_READ = (
    REPLID
    + """
local meta = redis.call('HMGET', KEYS[3], 'e', 's', 'r')
local epoch = meta[1]
local top = tonumber(meta[2] or '0')
local here = replid()
if not epoch then
  epoch = ARGV[4]
  top = 0
  redis.call('HSET', KEYS[3], 'e', epoch, 's', 0, 'r', here)
  if ARGV[5] ~= '0' then redis.call('PEXPIRE', KEYS[3], ARGV[5]) end
elseif meta[3] ~= here then
  epoch = ARGV[4]
  redis.call('HSET', KEYS[3], 'e', epoch, 'r', here)
end
if ARGV[6] ~= '' and ARGV[6] ~= epoch then return {top, epoch, 1, '0', {}} end
local now = tonumber(ARGV[3])
local fields, cursor = {}, '0'
if ARGV[7] ~= '' then
  local value = redis.call('HGET', KEYS[1], ARGV[7])
  if value then fields = {ARGV[7], value} end
else
  local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
  cursor, fields = page[1], page[2]
end
local kept = {}
for i = 1, #fields, 2 do
  local at = redis.call('ZSCORE', KEYS[2], fields[i])
  if not at or tonumber(at) > now then
    kept[#kept + 1] = fields[i]
    kept[#kept + 1] = fields[i + 1]
  end
end
return {top, epoch, 0, cursor, kept}
"""
)

#: KEYS: 1 state, 2 order, 3 expire, 4 meta. ARGV: 1 cursor score ("" : from the top),
#: 2 cursor key, 3 count, 4 now (ms), 5 "1": ascending, 6 fresh epoch, 7 meta ttl
#: (ms), 8 the reader's epoch. Pages by (score, key): descending unless asked.
#: Returns {top, epoch, mismatch, more (0/1), {key, value, score, ...}, the score and
#: key of the last one looked at (the next page's cursor)}.
MAP_READ_ORDERED = (
    REPLID
    + """
local meta = redis.call('HMGET', KEYS[4], 'e', 's', 'r')
local epoch = meta[1]
local top = tonumber(meta[2] or '0')
local here = replid()
if not epoch then
  epoch = ARGV[6]
  top = 0
  redis.call('HSET', KEYS[4], 'e', epoch, 's', 0, 'r', here)
  if ARGV[7] ~= '0' then redis.call('PEXPIRE', KEYS[4], ARGV[7]) end
elseif meta[3] ~= here then
  epoch = ARGV[6]
  redis.call('HSET', KEYS[4], 'e', epoch, 'r', here)
end
if ARGV[8] ~= '' and ARGV[8] ~= epoch then return {top, epoch, 1, 0, {}, '', ''} end
local asc = ARGV[5] == '1'
local count = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local out, taken, skip = {}, 0, 0
local last_score, last_key = '', ''
local bound = asc and '-inf' or '+inf'
if ARGV[1] ~= '' then bound = ARGV[1] end
local more = 0
while true do
  local chunk
  if asc then
    chunk = redis.call('ZRANGEBYSCORE', KEYS[2], bound, '+inf',
      'WITHSCORES', 'LIMIT', skip, count + 1)
  else
    chunk = redis.call('ZREVRANGEBYSCORE', KEYS[2], bound, '-inf',
      'WITHSCORES', 'LIMIT', skip, count + 1)
  end
  if #chunk == 0 then break end
  skip = skip + #chunk / 2
  for i = 1, #chunk, 2 do
    local key, score = chunk[i], chunk[i + 1]
    local after = true
    if ARGV[1] ~= '' and tonumber(score) == tonumber(ARGV[1]) then
      if asc then after = key > ARGV[2] else after = key < ARGV[2] end
    end
    if after then
      if taken == count then more = 1 break end
      local at = redis.call('ZSCORE', KEYS[3], key)
      if not at or tonumber(at) > now then
        local value = redis.call('HGET', KEYS[1], key)
        if value then
          out[#out + 1] = key
          out[#out + 1] = value
          out[#out + 1] = score
        end
      end
      taken = taken + 1
      last_score, last_key = score, key
    end
  end
  if more == 1 or #chunk < 2 * (count + 1) then break end
end
return {top, epoch, 0, more, out, last_score, last_key}
"""
)
