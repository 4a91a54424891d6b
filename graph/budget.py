"""The shared Graph request budget: one token bucket per throttling class, held in Redis.

Graph throttles per app and tenant, not per process, so every web, worker and beat process draws
from the same buckets (an atomic Lua script on Redis, Redis's clock for every process):

* ``reports``: authentication methods, TAP, audit logs ("identity and access reports",
  5 requests per 10 s); ``identity``: users, groups, role management (3,500 per 10 s).
* Priorities ``interactive`` > ``bulk`` > ``sync``. Lower priorities may never take the last
  ``interactive_reserve`` tokens, and a lower priority yields while a higher one is waiting (each
  waiter registers itself in a sorted set with an expiry), so an interactive call waits at most
  about one refill slot while a sync is running.
* After a 429, :meth:`RequestBudget.record_pause` stores "paused until now + Retry-After" for the
  class and empties its bucket; every process waits the pause out before its next call.

``acquire`` sleeps (it never spins) until a token is granted, and raises ``GraphThrottled`` when
it cannot get one before its timeout.
"""

from __future__ import annotations

import enum
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis

from graph.errors import GraphThrottled, GraphTransient

REPORTS = "reports"
IDENTITY = "identity"
THROTTLE_CLASSES = (REPORTS, IDENTITY)


class Priority(enum.StrEnum):
    """Who is waiting for a call: an agent (``interactive``), a batch job, or background sync."""

    INTERACTIVE = "interactive"
    BULK = "bulk"
    SYNC = "sync"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Priority.INTERACTIVE: 0, Priority.BULK: 1, Priority.SYNC: 2}


@dataclass(frozen=True)
class BudgetRate:
    """``requests`` per ``per_seconds`` for one throttling class (also the bucket's capacity)."""

    requests: int
    per_seconds: float

    def __post_init__(self) -> None:
        if self.requests < 1 or self.per_seconds <= 0:
            raise ValueError(f"a budget needs requests >= 1 and a window > 0, not {self}")

    @classmethod
    def parse(cls, text: str) -> BudgetRate:
        """``"5/10"`` means 5 requests per 10 seconds. Raises ValueError on anything else."""
        count, sep, window = text.strip().partition("/")
        try:
            if not sep:
                raise ValueError
            return cls(int(count), float(window))
        except ValueError:
            raise ValueError(
                f"{text!r} is not a budget: write requests/seconds, e.g. 5/10"
            ) from None


# The bucket's window is stretched by this factor (see RequestBudget.acquire).
REFILL_SAFETY_FACTOR = 1.1

DEFAULT_BUDGETS: Mapping[str, BudgetRate] = {
    REPORTS: BudgetRate(5, 10),
    IDENTITY: BudgetRate(3500, 10),
}


def classify_path(path_or_url: str) -> str:
    """The throttling class of a Graph request path (``/v1.0/users/x/authentication/methods``)
    or full URL (an ``@odata.nextLink``): ``reports`` or ``identity``.

    Raises ValueError for a path outside the resources this client calls, so that a new kind of
    call must be classified here before it can be made.
    """
    path = urlsplit(path_or_url).path
    segments = [unquote(s) for s in path.split("/") if s]
    if segments and segments[0] in {"v1.0", "beta"}:
        segments = segments[1:]
    if not segments:
        raise ValueError(f"no Graph resource in {path_or_url!r}")
    # An alternate key (``servicePrincipals(appId='...')``) keys the entity set in one segment.
    root = segments[0].split("(", 1)[0]
    if root == "auditLogs":
        return REPORTS
    if root == "users" and len(segments) > 2 and segments[2] == "authentication":
        # Methods, TAP, and the beta per-user MFA requirements all live under authentication.
        return REPORTS
    if root == "policies" and len(segments) > 1 and segments[1] == "authenticationMethodsPolicy":
        return REPORTS
    if root in {
        "users",
        "groups",
        "roleManagement",
        "directoryObjects",
        "directoryRoles",
        "servicePrincipals",
        "applications",
    }:
        return IDENTITY
    raise ValueError(f"{path_or_url!r} has no throttling class; add it to graph.budget")


# KEYS: bucket hash, pause key, interactive waiters, bulk waiters.
# ARGV: capacity, window_ms, tokens wanted, priority rank, reserve, waiter id, waiter ttl ms.
# Returns {granted (0/1), milliseconds to wait before asking again}.
_ACQUIRE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local rank = tonumber(ARGV[4])
local reserve = tonumber(ARGV[5])
local waiter = ARGV[6]
local ttl = tonumber(ARGV[7])
local rate = capacity / window
local slot = math.max(1, math.ceil(1 / rate))

local function wait_as_waiter(ms)
  if rank < 2 then
    redis.call('ZADD', KEYS[3 + rank], now + ttl, waiter)
    redis.call('PEXPIRE', KEYS[3 + rank], ttl + window)
  end
  return {0, math.max(1, ms)}
end

local pause = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > now then
  return wait_as_waiter(pause - now)
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
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], window * 4)

redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
local yield_to_higher = false
for r = 0, rank - 1 do
  if redis.call('ZCARD', KEYS[3 + r]) > 0 then yield_to_higher = true end
end

local floor = 0
if rank > 0 then floor = reserve end
if ts > now then
  -- The bucket was emptied by a 429 pause and refills only from the pause's end.
  return wait_as_waiter(ts - now + math.ceil((wanted + floor - tokens) / rate))
end
if yield_to_higher then
  return wait_as_waiter(slot)
end
if tokens - wanted >= floor then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - wanted))
  if rank < 2 then redis.call('ZREM', KEYS[3 + rank], waiter) end
  return {1, 0}
end
return wait_as_waiter(math.ceil((wanted + floor - tokens) / rate))
"""

# KEYS: pause key, bucket hash. ARGV: pause ms, window ms.
_PAUSE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pause_ms = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local until_ms = now + pause_ms
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then
  redis.call('SET', KEYS[1], tostring(until_ms), 'PX', pause_ms + 1000)
  -- Graph's own bucket is empty after a 429: start ours empty when the pause ends, too.
  redis.call('HSET', KEYS[2], 'tokens', '0', 'ts', tostring(until_ms))
  redis.call('PEXPIRE', KEYS[2], pause_ms + window * 4)
end
return until_ms
"""

# KEYS: pause key. Returns milliseconds of pause left (0 when none).
_PAUSE_LEFT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pause = tonumber(redis.call('GET', KEYS[1]) or '0')
if pause > now then return pause - now end
return 0
"""


class RequestBudget:
    """The token buckets of all throttling classes, shared through Redis at ``redis_url``.

    ``prefix`` namespaces the keys (tests give each run its own).
    """

    def __init__(
        self,
        redis_url: str,
        rates: Mapping[str, BudgetRate] = DEFAULT_BUDGETS,
        *,
        interactive_reserve: int = 1,
        prefix: str = "graph:budget",
    ) -> None:
        missing = set(THROTTLE_CLASSES) - set(rates)
        if missing:
            raise ValueError(f"no budget for throttling class(es) {sorted(missing)}")
        for name, rate in rates.items():
            if not 0 <= interactive_reserve < rate.requests:
                raise ValueError(
                    f"interactive_reserve {interactive_reserve} must be at least 0 and below "
                    f"the {name} budget of {rate.requests}"
                )
        self.rates = dict(rates)
        self.interactive_reserve = interactive_reserve
        self.prefix = prefix
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._pause = self._redis.register_script(_PAUSE)
        self._pause_left = self._redis.register_script(_PAUSE_LEFT)

    def _keys(self, cls: str) -> list[str]:
        if cls not in self.rates:
            raise ValueError(f"unknown throttling class {cls!r}")
        base = f"{self.prefix}:{cls}"
        return [f"{base}:bucket", f"{base}:pause", f"{base}:waiting:0", f"{base}:waiting:1"]

    def max_burst(self, cls: str, priority: Priority | str) -> int:
        """The most tokens one ``acquire`` at ``priority`` can ever get at once for ``cls``."""
        rate = self.rates[cls]
        reserve = 0 if Priority(priority) is Priority.INTERACTIVE else self.interactive_reserve
        return rate.requests - reserve

    def acquire(
        self,
        cls: str,
        priority: Priority | str = Priority.INTERACTIVE,
        timeout: float = 30.0,
        tokens: int = 1,
    ) -> None:
        """Take ``tokens`` from the ``cls`` bucket, sleeping until they are granted.

        Raises GraphThrottled (``retry_after`` = the expected wait) when the tokens cannot be had
        within ``timeout`` seconds, GraphTransient when Redis cannot be reached, and ValueError
        when ``tokens`` exceeds :meth:`max_burst` (such a request could never be granted).
        """
        priority = Priority(priority)
        if not 1 <= tokens <= self.max_burst(cls, priority):
            raise ValueError(
                f"{tokens} tokens can never be granted at once for {cls} at {priority} priority "
                f"(at most {self.max_burst(cls, priority)})"
            )
        rate = self.rates[cls]
        keys = self._keys(cls)
        waiter = uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        ttl_ms = int(min(timeout, 3600) * 1000) + 1000
        try:
            while True:
                granted, wait_ms = self._acquire(
                    keys=keys,
                    args=[
                        rate.requests,
                        # Refill a little slower than Graph does: our clock starts when a
                        # token is taken, Graph's when the request arrives, and network jitter
                        # between the two must never add up to a burst Graph sees as too fast.
                        int(rate.per_seconds * 1000 * REFILL_SAFETY_FACTOR),
                        tokens,
                        priority.rank,
                        self.interactive_reserve,
                        waiter,
                        ttl_ms,
                    ],
                )
                if int(granted):
                    return
                wait = int(wait_ms) / 1000
                left = deadline - time.monotonic()
                if wait > left:
                    self._forget_waiter(keys, priority, waiter)
                    raise GraphThrottled(
                        0,
                        "BudgetExhausted",
                        f"no {cls} request budget within {timeout:g} s at {priority} priority",
                        retry_after=wait,
                    )
                # A little jitter so that waiters in many processes do not wake in lockstep.
                time.sleep(wait + random.uniform(0, min(0.05, wait / 10)))  # noqa: S311
        except redis.RedisError as exc:
            raise GraphTransient(
                0, "BudgetUnavailable", f"the shared request budget (Redis) failed: {exc}"
            ) from exc

    def _forget_waiter(self, keys: list[str], priority: Priority, waiter: str) -> None:
        if priority.rank < 2:
            self._redis.zrem(keys[2 + priority.rank], waiter)

    def record_pause(self, cls: str, retry_after: float) -> None:
        """Every process must wait ``retry_after`` seconds before its next ``cls`` call (a 429)."""
        keys = self._keys(cls)
        try:
            self._pause(
                keys=[keys[1], keys[0]],
                args=[max(1, int(retry_after * 1000)), int(self.rates[cls].per_seconds * 1000)],
            )
        except redis.RedisError as exc:
            raise GraphTransient(
                0, "BudgetUnavailable", f"the shared request budget (Redis) failed: {exc}"
            ) from exc

    def pause_remaining(self, cls: str) -> float:
        """Seconds left of the current ``cls`` pause (0.0 when there is none)."""
        return int(self._pause_left(keys=[self._keys(cls)[1]])) / 1000

    def ping(self) -> None:
        """Raises GraphTransient when Redis cannot be reached."""
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise GraphTransient(0, "BudgetUnavailable", f"Redis: {exc}") from exc

    def close(self) -> None:
        self._redis.close()
