"""The shared Graph request budget: one token bucket per throttling class, held in Redis.

Graph throttles per app and tenant, not per process, so every web, worker and beat process draws
from the same buckets (an atomic Lua script on Redis, Redis's clock for every process):

* ``reports``: authentication methods, TAP, audit logs ("identity and access reports",
  5 requests per 10 s); ``identity``: users, groups, role management (3,500 per 10 s).
* Priorities ``action`` > ``interactive`` > ``bulk`` > ``sync``. ``action`` is the runner of a
  change an agent has submitted (a reset with the caller on the line: it reads, writes and
  re-reads a few times and must not queue behind page reads, which can show a wait or a cached
  answer); ``interactive`` is an agent's page. Sync may never take the last
  ``interactive_reserve`` tokens, bulk never the last ``bulk_reserve`` (BULK_RESERVE), and a
  lower priority yields while a higher one is waiting (each waiter registers itself in a sorted
  set with an expiry), so an agent's call waits at most about one refill slot while a sync or a
  bulk operation is running.
* Fair shares: a call may carry a ``fair_key`` (the agent's Entra object id; calls without one
  share one key). Within a priority the waiting keys are served round-robin, the agent who has
  waited longest first, so one agent with many parallel calls gets one grant per round while
  others wait (``graph/budget_scripts.py`` has the rule and the keys).
* After a 429, :meth:`RequestBudget.record_pause` stores "paused until now + Retry-After" for the
  class and empties its bucket; every process, every key and every priority waits the pause out
  before its next call.

``acquire`` sleeps (it never spins) until a token is granted, and raises ``GraphThrottled`` when
it cannot get one before its timeout. ``try_acquire`` never sleeps; ``estimate`` tells how long a
call would wait and its place. The same scripts count, per minute for the last hour, the tokens
used, the calls that waited and for how long, the 429s and the pauses: :meth:`snapshot` reads
them with the waiters of now (the operations view, /readyz's stall check).
"""

from __future__ import annotations

import enum
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis

from graph import budget_scripts
from graph.errors import GraphThrottled, GraphTransient

REPORTS = "reports"
IDENTITY = "identity"
THROTTLE_CLASSES = (REPORTS, IDENTITY)


class Priority(enum.StrEnum):
    """Who is waiting for a call: the runner of an agent's submitted change (``action``), an
    agent's page (``interactive``), a batch job, or background sync."""

    ACTION = "action"
    INTERACTIVE = "interactive"
    BULK = "bulk"
    SYNC = "sync"

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Priority.ACTION: 0, Priority.INTERACTIVE: 1, Priority.BULK: 2, Priority.SYNC: 3}
# The priorities an agent waits on: they may take the bucket's last tokens (no reserve).
AGENT_PRIORITIES = frozenset({Priority.ACTION, Priority.INTERACTIVE})
# _keys' layout: bucket, pause, one waiting set per rank, then served, since, state, stats.
_WAITING = 2
_SERVED = _WAITING + len(_RANKS)
_SINCE = _SERVED + 1
_STATE = _SERVED + 2
_STATS = _SERVED + 3


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


# The tokens a bulk operation leaves in each bucket (at most all but one): enough for an agent's
# reset that starts while a bulk runs to make its first calls at once (at 5 per 10 s: the list,
# the sign-in preferences and two deletes), so that it waits at most about one refill slot more
# than it would alone. The bulk's throughput is not lowered: it still takes every token the
# bucket refills, only never the last ones.
BULK_RESERVE = 4

# How long after the portal takes a token its request may take to reach Graph, at most (the
# process's time between the grant and the send, a new TLS connection, the network). Graph
# counts a request when it arrives. A full bucket refills nothing: when the portal takes tokens
# from a full (or nearly full) bucket, Graph's, as full, stops refilling until the request gets
# there, while the portal's would refill from the moment it took them, and so run ahead of
# Graph's. So such a grant holds the bucket's refill for the rest of this margin (the acquire
# script's ``hold``). Grants from a bucket that is low, as under load, hold nothing: Graph's is
# then low too and refills all along. The refill rate is Graph's own, and a burst of what the
# bucket holds still goes at once. (Until 2026-12 the window was stretched by 10 % instead,
# which gave up a tenth of the budget for good, a bulk operation's ceiling 0.91, yet covered a
# delay of only 0.2 s at the first refill after a burst.)
SEND_MARGIN_SECONDS = 0.5

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
    if root == "reports":
        # /reports/authenticationMethods/userRegistrationDetails: a Microsoft Entra reporting
        # API, the identity and access reports class (5 per 10 s). The throttling page's
        # resource list does not name userRegistrationDetails itself (docs silent):
        # https://learn.microsoft.com/graph/throttling-limits
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


# A fair key may hold anything but the separator of the waiter members (see budget_scripts).
ANONYMOUS = "-"
_HOUR_MINUTES = 60


@dataclass(frozen=True)
class BudgetWait:
    """What a call would wait now: about ``seconds``, behind ``position - 1`` others
    (``position`` 0: it would be granted at once; 1: it is next)."""

    seconds: float
    position: int


class BudgetBusy(GraphThrottled):
    """A call of a no-wait client view (:meth:`graph.client.GraphClient.without_waiting`) found no
    budget at once. ``wait`` is the estimate (seconds, place in the queue) for that call;
    ``retry_after`` is ``wait.seconds``. Nothing was sent to Graph."""

    def __init__(self, throttle_class: str, wait: BudgetWait) -> None:
        self.throttle_class = throttle_class
        self.wait = wait
        super().__init__(
            0,
            "BudgetExhausted",
            f"no {throttle_class} request budget now (about {wait.seconds:.0f} s, "
            f"place {wait.position})",
            retry_after=wait.seconds,
        )


def _hold(hold_id: str) -> str:
    """The waiter id of a hold (``hold`` or ``hold:<id>``); raises ValueError for ``|``."""
    if "|" in hold_id:
        raise ValueError(f"a hold id cannot contain '|': {hold_id!r}")
    return f"hold:{hold_id}" if hold_id else "hold"


def _fair_key(fair_key: str | None) -> str:
    if fair_key is None or fair_key == "":
        return ANONYMOUS
    if "|" in fair_key:
        raise ValueError(f"a fair key cannot contain '|': {fair_key!r}")
    return fair_key


def _int(value: object) -> int:
    if isinstance(value, bytes):
        value = value.decode()
    try:
        return int(float(str(value)))
    except ValueError:
        return 0


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
        bulk_reserve: int = BULK_RESERVE,
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
        if bulk_reserve < 0:
            raise ValueError(f"bulk_reserve {bulk_reserve} must be at least 0")
        self.rates = dict(rates)
        self.interactive_reserve = interactive_reserve
        self.bulk_reserve = bulk_reserve
        self.prefix = prefix
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._acquire = self._redis.register_script(budget_scripts.ACQUIRE)
        self._pause = self._redis.register_script(budget_scripts.PAUSE)
        self._pause_left = self._redis.register_script(budget_scripts.PAUSE_LEFT)

    def _keys(self, cls: str) -> list[str]:
        """bucket, pause, waiting:0..3, served, since, state, stats prefix (budget_scripts)."""
        if cls not in self.rates:
            raise ValueError(f"unknown throttling class {cls!r}")
        base = f"{self.prefix}:{cls}"
        return [
            f"{base}:bucket",
            f"{base}:pause",
            *(f"{base}:waiting:{rank}" for rank in range(len(_RANKS))),
            f"{base}:served",
            f"{base}:since",
            f"{base}:state",
            f"{base}:stats",
        ]

    def max_burst(self, cls: str, priority: Priority | str) -> int:
        """The most tokens one ``acquire`` at ``priority`` can ever get at once for ``cls``."""
        rate = self.rates[cls]
        return rate.requests - self._reserve(cls, Priority(priority))

    def _reserve(self, cls: str, priority: Priority) -> int:
        """The tokens a call at ``priority`` must leave in the ``cls`` bucket: none for an
        agent's; ``interactive_reserve`` for sync; for bulk the larger of that and
        ``bulk_reserve``, but never the whole bucket."""
        if priority in AGENT_PRIORITIES:
            return 0
        if priority == Priority.BULK:
            ceiling = self.rates[cls].requests - 1
            return min(ceiling, max(self.interactive_reserve, self.bulk_reserve))
        return self.interactive_reserve

    def _check_tokens(self, cls: str, priority: Priority, tokens: int) -> None:
        if not 1 <= tokens <= self.max_burst(cls, priority):
            raise ValueError(
                f"{tokens} tokens can never be granted at once for {cls} at {priority} priority "
                f"(at most {self.max_burst(cls, priority)})"
            )

    def _ask(
        self,
        cls: str,
        priority: Priority,
        tokens: int,
        fair_key: str,
        waiter: str,
        ttl_ms: int,
        mode: int,
        waited_ms: int = 0,
    ) -> tuple[bool, int, int]:
        """One run of the acquire script: (granted, ms to wait, calls ahead)."""
        rate = self.rates[cls]
        granted, wait_ms, ahead = self._acquire(
            keys=self._keys(cls),
            args=[
                rate.requests,
                int(rate.per_seconds * 1000),
                tokens,
                priority.rank,
                self._reserve(cls, priority),
                fair_key,
                waiter,
                ttl_ms,
                mode,
                waited_ms,
                int(SEND_MARGIN_SECONDS * 1000),
            ],
        )
        return bool(int(granted)), int(wait_ms), int(ahead)

    def acquire(
        self,
        cls: str,
        priority: Priority | str = Priority.INTERACTIVE,
        timeout: float = 30.0,
        tokens: int = 1,
        fair_key: str | None = None,
    ) -> None:
        """Take ``tokens`` from the ``cls`` bucket, sleeping until they are granted.

        ``fair_key`` (an agent's Entra object id) shares the class round-robin between keys:
        while another key of the same priority that was served longer ago is waiting, this call
        waits its turn; calls without a key share one key. A higher priority always goes first.

        Raises GraphThrottled (``retry_after`` = the expected wait) when the tokens cannot be had
        within ``timeout`` seconds, GraphTransient when Redis cannot be reached, and ValueError
        when ``tokens`` exceeds :meth:`max_burst` (such a request could never be granted).
        """
        priority = Priority(priority)
        self._check_tokens(cls, priority, tokens)
        key = _fair_key(fair_key)
        waiter = uuid.uuid4().hex
        started = time.monotonic()
        deadline = started + timeout
        ttl_ms = int(min(timeout, 3600) * 1000) + 1000
        granted = False
        try:
            while True:
                waited_ms = int((time.monotonic() - started) * 1000)
                granted, wait_ms, _ = self._ask(
                    cls, priority, tokens, key, waiter, ttl_ms, 0, waited_ms
                )
                if granted:
                    return
                wait = wait_ms / 1000
                if wait > deadline - time.monotonic():
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
        finally:
            if not granted:
                self._forget_waiter(cls, priority, f"{key}|{waiter}")

    def try_acquire(
        self,
        cls: str,
        priority: Priority | str = Priority.INTERACTIVE,
        fair_key: str | None = None,
        tokens: int = 1,
        *,
        hold_seconds: float = 0.0,
        hold_id: str = "",
    ) -> bool:
        """Take ``tokens`` if :meth:`acquire` would grant them at once; never sleeps.

        With ``hold_seconds`` > 0 a refused call keeps ``fair_key``'s place in the queue that
        long (others of its priority wait their turn behind it), as a waiting page that will ask
        again does; a grant ends the hold, and so does :meth:`release_hold`. ``hold_id`` names
        the hold among the key's (one per waiting panel: each keeps its own age). Raises
        GraphTransient when Redis cannot be reached.
        """
        priority = Priority(priority)
        self._check_tokens(cls, priority, tokens)
        key = _fair_key(fair_key)
        ttl_ms = int(hold_seconds * 1000) if hold_seconds > 0 else 0
        try:
            granted, _, _ = self._ask(cls, priority, tokens, key, _hold(hold_id), ttl_ms, 1)
        except redis.RedisError as exc:
            raise GraphTransient(
                0, "BudgetUnavailable", f"the shared request budget (Redis) failed: {exc}"
            ) from exc
        return granted

    def release_hold(
        self,
        cls: str,
        priority: Priority | str = Priority.INTERACTIVE,
        fair_key: str | None = None,
        hold_id: str = "",
    ) -> None:
        """End a :meth:`try_acquire` hold that is no longer needed (the page got its answer
        another way, e.g. from a cache another agent's read filled), so that it holds no token
        for others until it lapses. Redis failing: the hold lapses on its own."""
        self._forget_waiter(cls, Priority(priority), f"{_fair_key(fair_key)}|{_hold(hold_id)}")

    def estimate(
        self, cls: str, priority: Priority | str = Priority.INTERACTIVE, fair_key: str | None = None
    ) -> BudgetWait:
        """How long a one-token call of ``fair_key`` at ``priority`` would wait now, and its
        place; changes nothing. Raises GraphTransient when Redis cannot be reached."""
        priority = Priority(priority)
        key = _fair_key(fair_key)
        try:
            granted, wait_ms, ahead = self._ask(cls, priority, 1, key, "estimate", 0, 2)
        except redis.RedisError as exc:
            raise GraphTransient(
                0, "BudgetUnavailable", f"the shared request budget (Redis) failed: {exc}"
            ) from exc
        if granted:
            return BudgetWait(0.0, 0)
        return BudgetWait(wait_ms / 1000, ahead + 1)

    def _forget_waiter(self, cls: str, priority: Priority, member: str) -> None:
        keys = self._keys(cls)
        try:
            self._redis.zrem(keys[_WAITING + priority.rank], member)
            self._redis.hdel(keys[_SINCE], member)
        except redis.RedisError:
            pass  # the waiter expires on its own

    def record_pause(self, cls: str, retry_after: float) -> None:
        """Every process must wait ``retry_after`` seconds before its next ``cls`` call (a 429)."""
        keys = self._keys(cls)
        try:
            self._pause(
                keys=[keys[1], keys[0], keys[_STATS]],
                args=[max(1, int(retry_after * 1000)), int(self.rates[cls].per_seconds * 1000)],
            )
        except redis.RedisError as exc:
            raise GraphTransient(
                0, "BudgetUnavailable", f"the shared request budget (Redis) failed: {exc}"
            ) from exc

    def pause_remaining(self, cls: str) -> float:
        """Seconds left of the current ``cls`` pause (0.0 when there is none)."""
        return int(self._pause_left(keys=[self._keys(cls)[1]])) / 1000

    def snapshot(self) -> dict[str, Any]:
        """The budget as Redis holds it now, JSON-safe::

            {"at": epoch s, "classes": {cls: {
                "rate": "5/10", "capacity": 5, "tokens": 2.4, "paused_for": 0.0,
                "last_grant_ago": 1.2 | None, "stalled_for": 0.0,
                "waiting": {"action": 0, "interactive": 2, "bulk": 0, "sync": 1},
                "waiters": [{"key": oid, "priority": "interactive", "calls": 2,
                             "waiting_for": 3.1}, ...],   # longest waiting first
                "served": {fair key: seconds since its last grant},  # the last hour
                "minutes": [{"at": epoch s, "used": 3, "calls": 3, "waits": 1,
                             "waited_s": 2.0, "throttled": 0, "pauses": 0,
                             "paused_s": 0.0, "by_priority": {...}}, ...],  # 60, oldest first
                "hour": {the same sums over the 60 minutes}}}}

        ``stalled_for``: seconds since the budget last moved while calls wait (the last grant,
        or the first waiter's arrival after a time when none waited; 0 when nobody waits): calls
        that give up and are replaced by new ones do not reset it, only a grant does. Raises
        GraphTransient when Redis cannot be reached.
        """
        try:
            seconds, micros = self._redis.time()
            now_ms = int(seconds) * 1000 + int(micros) // 1000
            return {
                "at": now_ms / 1000,
                "classes": {cls: self._class_snapshot(cls, now_ms) for cls in self.rates},
            }
        except redis.RedisError as exc:
            raise GraphTransient(
                0, "BudgetUnavailable", f"the shared request budget (Redis) failed: {exc}"
            ) from exc

    def _class_snapshot(self, cls: str, now_ms: int) -> dict[str, Any]:
        keys = self._keys(cls)
        rate = self.rates[cls]
        minute = now_ms // 60000
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(keys[0], "tokens", "ts", "hold")
        pipe.get(keys[1])
        for rank in range(len(_RANKS)):
            pipe.zrangebyscore(keys[_WAITING + rank], now_ms + 1, "+inf")
        pipe.hgetall(keys[_SINCE])
        pipe.hmget(keys[_STATE], "last_grant", "moved")
        pipe.hgetall(keys[_SERVED])
        for m in range(minute - _HOUR_MINUTES + 1, minute + 1):
            pipe.hgetall(f"{keys[_STATS]}:{m}")
        answers = pipe.execute()
        (tokens_raw, ts_raw, hold_raw), pause_raw = answers[0], answers[1]
        n = len(_RANKS)
        waiting_sets = answers[2 : 2 + n]
        since_raw, last_raw, served_raw = answers[2 + n : 5 + n]
        minute_rows = answers[5 + n :]

        window_ms = rate.per_seconds * 1000
        if tokens_raw is None or ts_raw is None:
            tokens = float(rate.requests)
        else:
            tokens, ts = float(tokens_raw), float(ts_raw)
            if now_ms > ts:
                # As the acquire script refills: not while a grant's send margin holds it.
                since_ms = max(ts, min(float(hold_raw or 0), now_ms))
                refilled = (now_ms - since_ms) * rate.requests / window_ms
                tokens = min(rate.requests, tokens + refilled)
        pause_left = max(0, _int(pause_raw or 0) - now_ms) / 1000
        since = {_text(k): _int(v) for k, v in since_raw.items()}
        waiters: dict[tuple[str, str], dict[str, Any]] = {}
        waiting: dict[str, int] = {}
        oldest = now_ms
        for rank, members in enumerate(waiting_sets):
            priority = list(_RANKS)[rank]
            waiting[priority.value] = len(members)
            for raw in members:
                member = _text(raw)
                key = member.split("|", 1)[0]
                arrived = since.get(member, now_ms)
                oldest = min(oldest, arrived)
                row = waiters.setdefault(
                    (key, priority.value),
                    {"key": key, "priority": priority.value, "calls": 0, "waiting_for": 0.0},
                )
                row["calls"] += 1
                row["waiting_for"] = max(row["waiting_for"], (now_ms - arrived) / 1000)
        last_grant = _int(last_raw[0]) if last_raw[0] is not None else None
        stalled_for = 0.0
        if waiters:
            moved = _int(last_raw[1]) if last_raw[1] is not None else oldest
            stalled_for = max(0, now_ms - moved) / 1000
        minutes = [
            _minute_row((minute - _HOUR_MINUTES + 1 + i) * 60, row)
            for i, row in enumerate(minute_rows)
        ]
        return {
            "rate": f"{rate.requests}/{rate.per_seconds:g}",
            "capacity": rate.requests,
            "tokens": round(tokens, 2),
            "paused_for": pause_left,
            "last_grant_ago": None if last_grant is None else (now_ms - last_grant) / 1000,
            "stalled_for": stalled_for,
            "waiting": waiting,
            "waiters": sorted(waiters.values(), key=lambda w: -w["waiting_for"]),
            "served": {_text(k): max(0, now_ms - _int(v)) / 1000 for k, v in served_raw.items()},
            "minutes": minutes,
            "hour": _sum_minutes(minutes),
        }

    def stalls(self, threshold: float) -> dict[str, str]:
        """The classes stalled for longer than ``threshold`` seconds, each with why: calls wait
        and nothing was granted for that long, or a 429 pause has more than that left."""
        found: dict[str, str] = {}
        for cls, state in self.snapshot()["classes"].items():
            if state["paused_for"] > threshold:
                found[cls] = f"paused by a 429 for {state['paused_for']:.0f} s more"
            elif state["stalled_for"] > threshold:
                waiting = sum(state["waiting"].values())
                found[cls] = (
                    f"{waiting} call(s) waiting and no grant for {state['stalled_for']:.0f} s"
                )
        return found

    def ping(self) -> None:
        """Raises GraphTransient when Redis cannot be reached."""
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise GraphTransient(0, "BudgetUnavailable", f"Redis: {exc}") from exc

    def close(self) -> None:
        self._redis.close()


_MINUTE_FIELDS = ("used", "calls", "waits", "waited_s", "throttled", "pauses", "paused_s")


def _minute_row(at: int, raw: Mapping[Any, Any]) -> dict[str, Any]:
    values = {_text(k): _int(v) for k, v in raw.items()}
    by_priority = {
        p.value: {
            "used": values.get(f"granted:{p.rank}", 0),
            "calls": values.get(f"calls:{p.rank}", 0),
            "waits": values.get(f"waits:{p.rank}", 0),
            "waited_s": values.get(f"waited_ms:{p.rank}", 0) / 1000,
        }
        for p in Priority
    }
    return {
        "at": at,
        "used": sum(row["used"] for row in by_priority.values()),
        "calls": sum(row["calls"] for row in by_priority.values()),
        "waits": sum(row["waits"] for row in by_priority.values()),
        "waited_s": sum(row["waited_s"] for row in by_priority.values()),
        "throttled": values.get("throttled", 0),
        "pauses": values.get("pauses", 0),
        "paused_s": values.get("paused_ms", 0) / 1000,
        "by_priority": by_priority,
    }


def _sum_minutes(minutes: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {name: 0 for name in _MINUTE_FIELDS}
    total["by_priority"] = {
        p.value: {"used": 0, "calls": 0, "waits": 0, "waited_s": 0.0} for p in Priority
    }
    for row in minutes:
        for name in _MINUTE_FIELDS:
            total[name] += row[name]
        for priority, values in row["by_priority"].items():
            for name, value in values.items():
                total["by_priority"][priority][name] += value
    return total
