"""Graph's throttling, per app and per throttling class, as token buckets.

Classes (GRAPH.md, "Throttling"): ``reports`` (authentication methods, audit logs; Graph allows 5
requests per 10 s per app and tenant) and ``identity`` (users, groups, role management; 3,500 per
10 s). A bucket holds ``limit`` tokens and refills at ``limit / window`` per second; an empty
bucket answers with the whole seconds (at least 1) until one token is back.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

DEFAULT_LIMITS: dict[str, tuple[int, float]] = {"reports": (5, 10.0), "identity": (3500, 10.0)}


class Throttle:
    """Per-(app, class) token buckets, configurable at start and at run time."""

    def __init__(
        self,
        limits: dict[str, tuple[int, float]] | None = None,
        *,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.limits: dict[str, tuple[int, float]] = dict(DEFAULT_LIMITS)
        self.enabled = enabled
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self.throttled_count = 0
        if limits:
            self.configure(limits=limits)

    def configure(
        self, *, limits: dict[str, tuple[int, float]] | None = None, enabled: bool | None = None
    ) -> None:
        """Change limits and/or switch throttling on or off; every bucket starts full again.

        Raises ValueError for an unknown class or a non-positive limit or window.
        """
        with self._lock:
            for name, (count, window) in (limits or {}).items():
                if name not in DEFAULT_LIMITS:
                    raise ValueError(f"unknown throttle class {name!r}")
                if int(count) < 1 or float(window) <= 0:
                    raise ValueError(f"{name}: limit and window must be positive")
                self.limits[name] = (int(count), float(window))
            if enabled is not None:
                self.enabled = bool(enabled)
            self._buckets.clear()

    def take(self, app_id: str, throttle_class: str) -> int | None:
        """Spend one request for ``app_id`` in ``throttle_class``.

        Returns None when allowed, else the ``Retry-After`` seconds (an integer, at least 1).
        """
        if not self.enabled:
            return None
        count, window = self.limits[throttle_class]
        rate = count / window
        key = (app_id, throttle_class)
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (float(count), now))
            tokens = min(float(count), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            self.throttled_count += 1
            return max(1, math.ceil((1.0 - tokens) / rate))

    def snapshot(self) -> dict[str, Any]:
        """The control API's view: ``{"reports": [5, 10], "identity": [3500, 10], "enabled"}``."""
        with self._lock:
            out: dict[str, Any] = {
                name: [count, window] for name, (count, window) in self.limits.items()
            }
            out["enabled"] = self.enabled
            out["throttled_count"] = self.throttled_count
            return out
