"""The Redis side of ``RedisLimiter``: key names and the Lua scripts (text only, no I/O).

As in Redisson's ``RPermitExpirableSemaphore`` and redis-py's ``lock.py``,
each script is one atomic step, registered once (EVALSHA, reloaded by
redis-py after a server restart), with keys and arguments passed, never
built into the text. Every step is idempotent on the caller's permit id: a
command cancelled on our side may still have run on the server, so running
it twice, or a release after it, must leave the same state.

Keys, all under one hash tag so that a Redis Cluster keeps them on one slot:

* ``holders`` ZSET: permit id -> lease expiry (ms, Redis server clock).
* ``queue``   ZSET: ticket id -> arrival number (FIFO order).
* ``waiting`` ZSET: ticket id -> expiry of the waiter's own lease (a waiter
  that died leaves the queue within ``WAITER_TTL``).
* ``state``   HASH: ``effective`` (the AIMD limit, a float), ``throttles``,
  ``seq`` (the last arrival number).

Time is always the server's ``TIME``, never a client's clock. A key of the
wrong type, a holder leased absurdly far ahead, a queued ticket without a
waiter or a non-numeric ``effective`` is garbage: the scripts remove or reset
it rather than fail or wait on it forever.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "HEARTBEAT", "RELEASE", "STATS", "channel", "keys"]


def keys(name: str) -> list[str]:
    tag = f"polly-limiter:{{{name}}}"
    return [f"{tag}:holders", f"{tag}:queue", f"{tag}:waiting", f"{tag}:state"]


def channel(name: str) -> str:
    """The pub/sub channel on which a release wakes the waiters."""
    return f"polly-limiter:{{{name}}}:wake"


# Shared by every script: ARGV[1] is always the configured limit (ceiling).
# The scripts' bodies run through `guarded`: a key of the wrong type (garbage,
# found by the WRONGTYPE error rather than four TYPE calls on every run) is
# deleted and the body runs once more.
_PRELUDE = """
local holders, queue, waiting, state = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ceiling = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- A lease is at most 10 minutes (RedisLimiter refuses longer): anything
-- further ahead was not written by us.
local horizon = now + 600000 + 60000

local function own(key, kind)
  local found = redis.call('TYPE', key)
  found = found['ok'] or found
  if found ~= kind and found ~= 'none' then
    redis.call('DEL', key)
  end
end

local function guarded(body)
  local ok, result = pcall(body)
  if ok then
    return result
  end
  local text = type(result) == 'table' and (result['err'] or '') or tostring(result)
  if not string.find(text, 'WRONGTYPE', 1, true) then
    error(result)
  end
  own(holders, 'zset'); own(queue, 'zset'); own(waiting, 'zset'); own(state, 'hash')
  return body()
end

-- Expired leases leave; so do waiters that stopped polling, and tickets
-- without a waiter at the head of the queue (they would block it for ever).
local function sweep()
  redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', holders, '(' .. horizon, '+inf')
  if redis.call('ZCARD', queue) == 0 then
    return 0
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', waiting, '-inf', now)) do
    redis.call('ZREM', queue, id)
  end
  redis.call('ZREMRANGEBYSCORE', waiting, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', waiting, '(' .. horizon, '+inf')
  for _, id in ipairs(redis.call('ZRANGE', queue, 0, ceiling)) do
    if not redis.call('ZSCORE', waiting, id) then
      redis.call('ZREM', queue, id)
    end
  end
  return redis.call('ZCARD', queue)
end

local function effective()
  local value = tonumber(redis.call('HGET', state, 'effective'))
  if value == nil or value ~= value or value < 1 or value > ceiling then
    return ceiling
  end
  return value
end

local function counter(field)
  local value = tonumber(redis.call('HGET', state, field))
  if value == nil or value ~= value or value < 0 or value >= 2^52 then
    return 0
  end
  return math.floor(value)
end
"""

#: ARGV: ceiling, id, lease_ms, waiter_ttl_ms, stale_ms -> {granted, rank, holders, effective}
#: ``rank`` counts only the live tickets ahead: one whose waiter has not
#: polled for ``stale_ms`` (a live waiter polls at least every SAFETY_POLL)
#: is passed over, so a killed process's waiters do not keep the next free
#: permits idle for the whole WAITER_TTL; it keeps its place, and if its
#: waiter was only slow it is first again at its next poll.
ACQUIRE = (
    _PRELUDE
    + """
local id, lease, ttl, stale = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
return guarded(function()
  local queued = sweep()
  local limit = math.floor(effective())
  if redis.call('ZSCORE', holders, id) then
    redis.call('ZADD', holders, now + lease, id)
    return {1, 0, redis.call('ZCARD', holders), limit}
  end
  local count = redis.call('ZCARD', holders)
  if queued == 0 and count < limit then
    -- Nobody waits and there is room: straight in, no ticket.
    redis.call('ZADD', holders, now + lease, id)
    return {1, 0, count + 1, limit}
  end
  if not redis.call('ZSCORE', queue, id) then
    local seq = counter('seq') + 1
    redis.call('HSET', state, 'seq', seq)
    redis.call('ZADD', queue, seq, id)
  end
  redis.call('ZADD', waiting, now + ttl, id)
  local rank = 0
  local fresh = now + ttl - stale  -- renewed after now - stale
  if count < limit then
    local ahead = redis.call('ZRANK', queue, id)
    if ahead > 0 then
      for _, other in ipairs(redis.call('ZRANGE', queue, 0, ahead - 1)) do
        if tonumber(redis.call('ZSCORE', waiting, other) or 0) > fresh then
          rank = rank + 1
          if count + rank >= limit then
            break
          end
        end
      end
    end
  else
    rank = redis.call('ZRANK', queue, id)
  end
  if count + rank < limit then
    redis.call('ZREM', queue, id)
    redis.call('ZREM', waiting, id)
    redis.call('ZADD', holders, now + lease, id)
    return {1, rank, count + 1, limit}
  end
  return {0, rank, count, limit}
end)
"""
)

#: ARGV: ceiling, id, outcome, backoff, channel -> 1 if it held a permit
#: The AIMD arithmetic is amazon_polly_streaming._aimd's, on the server.
RELEASE = (
    _PRELUDE
    + """
local id, outcome, backoff = ARGV[2], ARGV[3], tonumber(ARGV[4])
return guarded(function()
  local held = redis.call('ZREM', holders, id)
  if redis.call('ZREM', queue, id) == 1 then
    redis.call('ZREM', waiting, id)
  end
  if held == 1 then
    local value = effective()
    if outcome == 'throttled' then
      redis.call('HSET', state, 'effective', tostring(math.max(1, value * backoff)))
      redis.call('HSET', state, 'throttles', counter('throttles') + 1)
    elseif outcome == 'success' and value < ceiling then
      redis.call('HSET', state, 'effective', tostring(math.min(ceiling, value + 1 / value)))
    end
  end
  if sweep() > 0 then
    redis.call('PUBLISH', ARGV[5], id)
  end
  return held
end)
"""
)

#: ARGV: ceiling, lease_ms, id... -> how many ids were re-registered (their lease had gone)
HEARTBEAT = (
    _PRELUDE
    + """
local lease = tonumber(ARGV[2])
return guarded(function()
  sweep()
  local missing = 0
  for i = 3, #ARGV do
    if not redis.call('ZSCORE', holders, ARGV[i]) then
      missing = missing + 1
    end
    redis.call('ZADD', holders, now + lease, ARGV[i])
  end
  return missing
end)
"""
)

#: ARGV: ceiling -> {holder ids, queue length, effective (string), throttles}
STATS = (
    _PRELUDE
    + """
return guarded(function()
  local queued = sweep()
  return {redis.call('ZRANGE', holders, 0, -1), queued, tostring(effective()), counter('throttles')}
end)
"""
)
