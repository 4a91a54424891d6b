"""The Lua scripts of :mod:`graph.budget`, run atomically on Redis with Redis's own clock.

Keys of one throttling class (``<prefix>:<class>:...``, see ``RequestBudget._keys``):

* ``bucket`` hash ``tokens``, ``ts``: the token bucket;
* ``pause``: "paused until" (ms) after a 429;
* ``waiting:0`` / ``:1`` / ``:2``: sorted sets of the waiting calls per priority rank
  (interactive, bulk, sync), member ``<fair key>|<waiter id>``, score = the waiter's expiry;
* ``since`` hash member -> when that waiter first waited (ms), for "waiting for" and stalls;
* ``served`` hash fair key -> when that key was last granted (ms): the round-robin order;
* ``state`` hash ``last_grant`` (ms), ``moved``: when the budget last moved while calls wait
  (the last grant, or the first waiter after a time with none; gone while nobody waits);
* ``stats:<minute>`` hashes (epoch minute), kept 62 minutes: ``granted:<rank>`` tokens,
  ``calls:<rank>``, ``waits:<rank>`` (calls that had to wait), ``waited_ms:<rank>`` (their total
  wait), ``throttled`` (429s seen), ``pauses`` / ``paused_ms`` (Retry-After pauses started or
  extended, and by how much). The stats keys are named inside the script from the prefix it is
  given: fine on one Redis (the portal's), not on Redis Cluster.

Fair shares: within one rank, the waiting fair keys are served least-recently-served first. A
call is granted only when no waiter of a higher rank exists and the bucket holds a token for each
other waiting key of its rank that was served longer ago, and one for itself; every grant stamps
its key with "now", which sends it to the back of the round. One agent with many parallel loops
is one key: it gets one grant per round.
"""

from __future__ import annotations

# KEYS: 1 bucket, 2 pause, 3..5 waiting:0..2, 6 served, 7 since, 8 state, 9 stats prefix.
# ARGV: 1 capacity, 2 window ms, 3 tokens wanted, 4 priority rank, 5 reserve, 6 fair key,
#       7 waiter id, 8 waiter ttl ms (0 with mode 1: do not register), 9 mode (0 acquire,
#       1 try, 2 estimate: changes nothing), 10 ms this call has waited so far.
# Returns {granted (0/1), ms to wait before asking again (the estimate), calls ahead}.
ACQUIRE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local rank = tonumber(ARGV[4])
local reserve = tonumber(ARGV[5])
local fkey = ARGV[6]
local member = fkey .. '|' .. ARGV[7]
local ttl = tonumber(ARGV[8])
local mode = tonumber(ARGV[9])
local waited = tonumber(ARGV[10])
local rate = capacity / window
local slot = math.max(1, math.ceil(1 / rate))
local keep = 3720000
local stats = KEYS[9] .. ':' .. math.floor(now / 60000)

local function stat(field, n)
  redis.call('HINCRBY', stats, field, n)
  redis.call('PEXPIRE', stats, keep)
end

if mode ~= 2 then
  for r = 0, 2 do
    local gone = redis.call('ZRANGEBYSCORE', KEYS[3 + r], '-inf', now)
    if #gone > 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[3 + r], '-inf', now)
      redis.call('HDEL', KEYS[7], unpack(gone))
    end
  end
  local live = 0
  for r = 0, 2 do live = live + redis.call('ZCARD', KEYS[3 + r]) end
  if live == 0 then redis.call('HDEL', KEYS[8], 'moved') end
end

-- Calls ahead: every live waiter of a higher rank, and each other fair key of this rank that
-- was served before this one (never served counts as 0; ties go by key): each is owed a token.
local higher = 0
for r = 0, rank - 1 do
  higher = higher + redis.call('ZCOUNT', KEYS[3 + r], now + 1, '+inf')
end
local mine = tonumber(redis.call('HGET', KEYS[6], fkey) or '0')
local ahead = higher
local seen = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3 + rank], now + 1, '+inf')) do
  local k = string.match(m, '^([^|]*)|')
  if k and k ~= fkey and not seen[k] then
    seen[k] = true
    local s = tonumber(redis.call('HGET', KEYS[6], k) or '0')
    if s < mine or (s == mine and k < fkey) then ahead = ahead + 1 end
  end
end

local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(bucket[1])
local ts = tonumber(bucket[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate)
  ts = now
end
if mode ~= 2 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
  redis.call('PEXPIRE', KEYS[1], window * 4)
end

local floor = 0
if rank > 0 then floor = reserve end
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
local blocked = math.max(0, pause - now, ts - now)
local need = ahead + wanted + floor - tokens
local estimate = blocked
if need > 0 then estimate = blocked + math.ceil(need / rate) end

-- A higher rank waiting always goes first; a key of this rank served longer ago goes first
-- unless the bucket holds a token for each such key and for this call too.
if blocked == 0 and higher == 0 and need <= 0 then
  if mode == 2 then return {1, 0, 0} end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - wanted))
  redis.call('ZREM', KEYS[3 + rank], member)
  redis.call('HDEL', KEYS[7], member)
  redis.call('HSET', KEYS[6], fkey, tostring(now))
  redis.call('PEXPIRE', KEYS[6], keep)
  redis.call('HSET', KEYS[8], 'last_grant', tostring(now), 'moved', tostring(now))
  redis.call('PEXPIRE', KEYS[8], 86400000)
  stat('granted:' .. rank, wanted)
  stat('calls:' .. rank, 1)
  if waited > 0 then
    stat('waited_ms:' .. rank, waited)
    stat('waits:' .. rank, 1)
  end
  return {1, 0, 0}
end

if mode == 0 or (mode == 1 and ttl > 0) then
  local set = KEYS[3 + rank]
  redis.call('ZADD', set, now + ttl, member)
  redis.call('PEXPIRE', set, ttl + window)
  redis.call('HSETNX', KEYS[7], member, tostring(now))
  redis.call('PEXPIRE', KEYS[7], keep)
  redis.call('HSETNX', KEYS[8], 'moved', tostring(now))
  redis.call('PEXPIRE', KEYS[8], 86400000)
end
if ahead > 0 and blocked == 0 then
  -- Another key's turn: look again soon, it may not come for the token it is owed.
  estimate = math.max(estimate, math.min(slot, 250))
end
return {0, math.max(1, estimate), ahead}
"""

# KEYS: 1 pause key, 2 bucket hash, 3 stats prefix. ARGV: pause ms, window ms.
PAUSE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pause_ms = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local until_ms = now + pause_ms
local stats = KEYS[3] .. ':' .. math.floor(now / 60000)
redis.call('HINCRBY', stats, 'throttled', 1)
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then
  redis.call('HINCRBY', stats, 'pauses', 1)
  redis.call('HINCRBY', stats, 'paused_ms', until_ms - math.max(now, current))
  redis.call('SET', KEYS[1], tostring(until_ms), 'PX', pause_ms + 1000)
  -- Graph's own bucket is empty after a 429: start ours empty when the pause ends, too.
  redis.call('HSET', KEYS[2], 'tokens', '0', 'ts', tostring(until_ms))
  redis.call('PEXPIRE', KEYS[2], pause_ms + window * 4)
end
redis.call('PEXPIRE', stats, 3720000)
return until_ms
"""

# KEYS: pause key. Returns milliseconds of pause left (0 when none).
PAUSE_LEFT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pause = tonumber(redis.call('GET', KEYS[1]) or '0')
if pause > now then return pause - now end
return 0
"""
