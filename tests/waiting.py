"""Waiting in tests for something another thread or process does (a Celery worker, a child
process, the emulator): one polling loop with a deadline, so that every wait fails the same way,
naming what it waited for.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 60.0,
    interval: float = 0.1,
    what: str = "",
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and
    return that value. Raises AssertionError (failing the test) naming ``what`` (or the
    predicate) when ``timeout`` seconds pass first; the predicate is always called at least once
    more after the deadline, so a slow last poll is not lost."""
    deadline = time.monotonic() + timeout
    while True:
        expired = time.monotonic() > deadline
        value = predicate()
        if value:
            return value
        if expired:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)
