"""Short locks in Redis, shared by every web and worker process, around recording a request.

* ``target_lock`` (per person and kind family) serialises "is another request open for this
  person? if not, record mine" so that two agents pressing the button at the same moment get one
  request and one "busy" answer. It never waits: a second submission is told at once that another
  one is being recorded (it is not queued behind the first). The database's unique
  ``ActionRequest.open_slot`` is the second line: the lock makes the common case clean, the index
  makes the rare case (a lock lost to a Redis failover) safe.
* ``agent_lock`` (per agent) serialises "count my requests in the window, then record mine", so
  that parallel submissions by one agent cannot all pass the rate limit on the same count. It
  waits a little (the work under it is a few queries). The database's second line is a row lock
  on the agent's user row (``mfa.services``; SQLite serialises every write transaction anyway).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings

# Long enough for one insert and its audit event; short enough that a crashed holder does not
# block the target (or the agent) for long.
LOCK_TIMEOUT_SECONDS = 15
# How long a submission waits for the same agent's other submissions to be recorded.
AGENT_LOCK_WAIT_SECONDS = 10


class LockUnavailable(Exception):
    """The lock could not be taken in time: someone else holds it, or (``redis_down``) Redis
    could not be reached."""

    def __init__(self, message: str, *, redis_down: bool = False, scope: str = "target") -> None:
        super().__init__(message)
        self.redis_down = redis_down
        # Whose lock: "target" (a person and kind family) or "agent".
        self.scope = scope


@functools.lru_cache(maxsize=4)
def _redis_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


@contextmanager
def target_lock(target_id: str, family: str) -> Iterator[None]:
    """Hold the lock for (``target_id``, ``family``) for the duration of the block.

    Raises LockUnavailable at once when someone else holds it (no waiting), or when Redis is
    unreachable (``redis_down``).
    """
    with _held(
        f"portal:lock:target:{target_id.lower()}:{family}",
        wait_seconds=None,
        scope="target",
        busy="another request for this person is being recorded",
    ):
        yield


@contextmanager
def agent_lock(agent_pk: int) -> Iterator[None]:
    """Hold the lock of agent ``agent_pk`` for the duration of the block.

    Raises LockUnavailable when it cannot be had within AGENT_LOCK_WAIT_SECONDS, or when Redis is
    unreachable (``redis_down``).
    """
    with _held(
        f"portal:lock:agent:{int(agent_pk)}",
        wait_seconds=AGENT_LOCK_WAIT_SECONDS,
        scope="agent",
        busy="your other submissions are still being recorded",
    ):
        yield


@contextmanager
def _held(name: str, *, wait_seconds: float | None, scope: str, busy: str) -> Iterator[None]:
    """Hold the Redis lock ``name``; ``wait_seconds`` None: do not wait for it at all."""
    client = _redis_for(settings.REDIS_URL)
    lock = client.lock(name, timeout=LOCK_TIMEOUT_SECONDS, blocking_timeout=wait_seconds)
    try:
        acquired = lock.acquire(blocking=wait_seconds is not None)
    except redis.RedisError as exc:
        raise LockUnavailable(
            f"the request lock is unavailable ({type(exc).__name__})",
            redis_down=True,
            scope=scope,
        ) from None
    if not acquired:
        raise LockUnavailable(busy, scope=scope)
    try:
        yield
    finally:
        try:
            lock.release()
        except redis.RedisError:
            # Expired or lost: the holder's work is already committed; the index still holds.
            pass
