"""A short per-target lock in Redis, shared by every web and worker process.

It serialises "is another request open for this person? if not, record mine" so that two agents
pressing the button at the same moment get one request and one "already in progress" answer. The
database's unique ``ActionRequest.open_slot`` is the second line: the lock makes the common case
clean, the index makes the rare case (a lock lost to a Redis failover) safe.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings

# Long enough for one insert and its audit event; short enough that a crashed holder does not
# block the target for long.
LOCK_TIMEOUT_SECONDS = 15
LOCK_WAIT_SECONDS = 10


class LockUnavailable(Exception):
    """The lock could not be taken in time: someone else holds it, or (``redis_down``) Redis
    could not be reached."""

    def __init__(self, message: str, *, redis_down: bool = False) -> None:
        super().__init__(message)
        self.redis_down = redis_down


@functools.lru_cache(maxsize=4)
def _redis_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


@contextmanager
def target_lock(target_id: str, family: str) -> Iterator[None]:
    """Hold the lock for (``target_id``, ``family``) for the duration of the block.

    Raises LockUnavailable when it cannot be had within LOCK_WAIT_SECONDS.
    """
    client = _redis_for(settings.REDIS_URL)
    lock = client.lock(
        f"portal:lock:target:{target_id.lower()}:{family}",
        timeout=LOCK_TIMEOUT_SECONDS,
        blocking_timeout=LOCK_WAIT_SECONDS,
    )
    try:
        acquired = lock.acquire()
    except redis.RedisError as exc:
        raise LockUnavailable(
            f"the request lock is unavailable ({type(exc).__name__})", redis_down=True
        ) from None
    if not acquired:
        raise LockUnavailable("another request for this person is being recorded")
    try:
        yield
    finally:
        try:
            lock.release()
        except redis.RedisError:
            # Expired or lost: the holder's work is already committed; the index still holds.
            pass
