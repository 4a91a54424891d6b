"""The Lua scripts of :mod:`graph.budget`, run atomically on Redis with Redis's own clock.

Keys of one throttling class (``<prefix>:<class>:...``, see ``RequestBudget._keys``):

* ``bucket`` hash ``tokens``, ``ts``: the token bucket;
* ``pause``: "paused until" (ms) after a 429;
* ``waiting:0`` .. ``:3``: sorted sets of the waiting calls per priority rank (action,
  interactive, bulk, sync), member ``<fair key>|<waiter id>``, score = the waiter's expiry;
* ``since`` hash member -> when that waiter first waited (ms), for "waiting for" and stalls;
* ``served`` hash fair key -> when that key was last granted (ms): the round-robin order;
* ``state`` hash ``last_grant`` (ms), ``moved``: when the budget last moved while calls wait
  (the last grant, or the first waiter after a time with none; gone while nobody waits);
* ``stats:<minute>`` hashes (epoch minute), kept 62 minutes: ``granted:<rank>`` tokens,
  ``calls:<rank>``, ``waits:<rank>`` (calls that had to wait), ``waited_ms:<rank>`` (their total
  wait), ``throttled`` (429s seen), ``pauses`` / ``paused_ms`` (Retry-After pauses started or
  extended, and by how much). The stats keys are named inside the script from the prefix it is
  given: fine on one Redis (the portal's), not on Redis Cluster.

Fair shares: within one rank, the waiting fair keys are served in the order of their turn:
a key's turn is the later of its last grant and the moment its oldest live waiter began to wait.
So the agent who has waited longest goes first (a newcomer does not cut in because it was served
long ago), and a grant sends its key to the back of the round (one agent with many parallel loops
is one key: it gets one grant per round). A call is granted only when no waiter of a higher rank
exists and the bucket holds a token for each other waiting key of its rank whose turn comes
first, and one for itself.
"""

from __future__ import annotations

# KEYS: 1 bucket, 2 pause, 3..6 waiting:0..3, 7 served, 8 since, 9 state, 10 stats prefix.
# ARGV: 1 capacity, 2 window ms, 3 tokens wanted, 4 priority rank, 5 reserve, 6 fair key,
#       7 waiter id, 8 waiter ttl ms (0 with mode 1: do not register), 9 mode (0 acquire,
#       1 try, 2 estimate: changes nothing), 10 ms this call has waited so far, 11 the send
#       margin in ms (graph.budget.SEND_MARGIN_SECONDS).
# The bucket's ``hold``: the refill stops until then (a grant from a full or nearly full bucket:
# Graph's own bucket, full, refills nothing while that request is on its way to it; see
# graph.budget.SEND_MARGIN_SECONDS). It never stops a grant of tokens the bucket holds.
# The reserve (ARGV 5) is what this call must leave in the bucket: 0 for the action and
# interactive ranks, the interactive reserve below them (the caller passes it so).
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
local margin = tonumber(ARGV[11])
local rate = capacity / window
local slot = math.max(1, math.ceil(1 / rate))
local keep = 3720000
local ranks = 4
local W = 3
local SERVED, SINCE, STATE = KEYS[7], KEYS[8], KEYS[9]
local stats = KEYS[10] .. ':' .. math.floor(now / 60000)

local function stat(field, n)
  redis.call('HINCRBY', stats, field, n)
  redis.call('PEXPIRE', stats, keep)
end

if mode ~= 2 then
  for r = 0, ranks - 1 do
    local gone = redis.call('ZRANGEBYSCORE', KEYS[W + r], '-inf', now)
    if #gone > 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[W + r], '-inf', now)
      redis.call('HDEL', SINCE, unpack(gone))
    end
  end
  local live = 0
  for r = 0, ranks - 1 do live = live + redis.call('ZCARD', KEYS[W + r]) end
  if live == 0 then redis.call('HDEL', STATE, 'moved') end
end

-- Calls ahead: every live waiter of a higher rank, and each other fair key of this rank whose
-- turn comes before this one's (ties go by key): each is owed a token. A key's turn is the later
-- of its last grant (never: 0) and when its oldest live waiter began to wait (this call, when
-- not yet registered, begins just after now: behind a waiter registered in this millisecond).
local higher = 0
for r = 0, rank - 1 do
  higher = higher + redis.call('ZCOUNT', KEYS[W + r], now + 1, '+inf')
end
local oldest = {}
oldest[fkey] = now + 0.5
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[W + rank], now + 1, '+inf')) do
  local k = string.match(m, '^([^|]*)|')
  if k then
    local began = tonumber(redis.call('HGET', SINCE, m) or tostring(now))
    if oldest[k] == nil or began < oldest[k] then oldest[k] = began end
  end
end
local function turn(k)
  return math.max(tonumber(redis.call('HGET', SERVED, k) or '0'), oldest[k])
end
local mine = turn(fkey)
local ahead = higher
for k, _ in pairs(oldest) do
  if k ~= fkey then
    local other = turn(k)
    if other < mine or (other == mine and k < fkey) then ahead = ahead + 1 end
  end
end

local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'hold')
local tokens = tonumber(bucket[1])
local ts = tonumber(bucket[2])
local hold = tonumber(bucket[3] or '0')
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = math.min(capacity, tokens + (now - math.max(ts, math.min(hold, now))) * rate)
  ts = now
end
if mode ~= 2 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
  redis.call('PEXPIRE', KEYS[1], window * 4)
end

local floor = reserve
local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
local blocked = math.max(0, pause - now, ts - now)
local need = ahead + wanted + floor - tokens
local estimate = blocked
if need > 0 then estimate = blocked + math.max(0, hold - now) + math.ceil(need / rate) end

-- A higher rank waiting always goes first; a key of this rank served longer ago goes first
-- unless the bucket holds a token for each such key and for this call too.
if blocked == 0 and higher == 0 and need <= 0 then
  if mode == 2 then return {1, 0, 0} end
  -- Graph's bucket, as full as this one, fills up within (capacity - tokens) / rate and then
  -- refills nothing until this request reaches it: hold this one's refill for the rest of the
  -- margin (nothing once the bucket is low: Graph's is then low too, and refills all along).
  local fills_in = (capacity - tokens) / rate
  if margin > fills_in then
    redis.call('HSET', KEYS[1], 'hold', tostring(math.max(hold, now + margin - fills_in)))
  end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - wanted))
  redis.call('ZREM', KEYS[W + rank], member)
  redis.call('HDEL', SINCE, member)
  redis.call('HSET', SERVED, fkey, tostring(now))
  redis.call('PEXPIRE', SERVED, keep)
  redis.call('HSET', STATE, 'last_grant', tostring(now), 'moved', tostring(now))
  redis.call('PEXPIRE', STATE, 86400000)
  stat('granted:' .. rank, wanted)
  stat('calls:' .. rank, 1)
  if waited > 0 then
    stat('waited_ms:' .. rank, waited)
    stat('waits:' .. rank, 1)
  end
  return {1, 0, 0}
end

if mode == 0 or (mode == 1 and ttl > 0) then
  local set = KEYS[W + rank]
  redis.call('ZADD', set, now + ttl, member)
  redis.call('PEXPIRE', set, ttl + window)
  redis.call('HSETNX', SINCE, member, tostring(now))
  redis.call('PEXPIRE', SINCE, keep)
  redis.call('HSETNX', STATE, 'moved', tostring(now))
  redis.call('PEXPIRE', STATE, 86400000)
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
