"""Fault injection: latency, a rate of 5xx answers, timeouts, a token endpoint that is down, and
``fail_next`` rules that make specific requests fail a given number of times.

Switchable at run time through the Python object (``server.faults.configure(...)``) or the control
API (``POST /_emulator/faults``). Random choices come from ``random.Random(seed)``, so a seeded run
injects the same faults in the same order. Sleeps wait on an event that ``stop()`` sets, so a
stopping server never hangs on an injected timeout.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

MAX_TIMEOUT_SECONDS = 120.0
MAX_LATENCY_MS = 60_000


@dataclass
class FailRule:
    """Fail the next ``count`` requests whose method and path (``/v1.0/...``) match."""

    method: str
    path_regex: str
    status: int
    code: str
    message: str
    count: int = 1
    compiled: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        self.compiled = re.compile(self.path_regex)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path_regex": self.path_regex,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "count": self.count,
        }


@dataclass(frozen=True)
class InjectedFault:
    """A failure to answer with, in Graph's error JSON."""

    status: int
    code: str
    message: str
    headers: dict[str, str]


_CODES = {500: "generalException", 503: "serviceNotAvailable", 504: "UnknownError"}


class Faults:
    """The fault configuration of one emulator (thread-safe)."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        # Reproducible test faults, not security: a seeded PRNG is the point.
        self._random = random.Random(seed)  # noqa: S311
        self._stopping = threading.Event()
        self.reset()

    def reset(self) -> None:
        """Back to no faults at all."""
        with self._lock:
            self.latency_ms = 0
            self.error_rate = 0.0
            self.error_status = 503
            self.timeout_rate = 0.0
            self.timeout_seconds = 30.0
            self.token_endpoint_down = False
            self.fail_next: list[FailRule] = []

    def configure(self, **settings: Any) -> None:
        """Set any of latency_ms, error_rate, error_status (500|503), timeout_rate,
        timeout_seconds, token_endpoint_down, fail_next (list of rule dicts, replaces the list).

        Raises ValueError (nothing changed) for an unknown name or an out-of-range value.
        """
        known = {
            "latency_ms",
            "error_rate",
            "error_status",
            "timeout_rate",
            "timeout_seconds",
            "token_endpoint_down",
            "fail_next",
        }
        unknown = set(settings) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        updates: dict[str, Any] = {}
        if "latency_ms" in settings:
            latency = int(settings["latency_ms"])
            if not 0 <= latency <= MAX_LATENCY_MS:
                raise ValueError(f"latency_ms must be within 0..{MAX_LATENCY_MS}")
            updates["latency_ms"] = latency
        for rate_name in ("error_rate", "timeout_rate"):
            if rate_name in settings:
                rate = float(settings[rate_name])
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"{rate_name} must be within 0..1")
                updates[rate_name] = rate
        if "error_status" in settings:
            status = int(settings["error_status"])
            if status not in (500, 503):
                raise ValueError("error_status must be 500 or 503")
            updates["error_status"] = status
        if "timeout_seconds" in settings:
            seconds = float(settings["timeout_seconds"])
            if not 0 < seconds <= MAX_TIMEOUT_SECONDS:
                raise ValueError(f"timeout_seconds must be within 0..{MAX_TIMEOUT_SECONDS}")
            updates["timeout_seconds"] = seconds
        if "token_endpoint_down" in settings:
            updates["token_endpoint_down"] = bool(settings["token_endpoint_down"])
        if "fail_next" in settings:
            rules = []
            for raw in settings["fail_next"] or []:
                try:
                    rule = FailRule(
                        method=str(raw.get("method", "GET")),
                        path_regex=str(raw["path_regex"]),
                        status=int(raw.get("status", 500)),
                        code=str(
                            raw.get("code")
                            or _CODES.get(int(raw.get("status", 500)), "generalException")
                        ),
                        message=str(raw.get("message") or "Injected failure."),
                        count=int(raw.get("count", 1)),
                    )
                except (KeyError, TypeError, AttributeError, re.error) as exc:
                    raise ValueError(f"bad fail_next rule {raw!r}: {exc}") from exc
                if not 400 <= rule.status <= 599 or rule.count < 1:
                    raise ValueError(f"bad fail_next rule {raw!r}: status 4xx/5xx, count >= 1")
                rules.append(rule)
            updates["fail_next"] = rules
        with self._lock:
            for name, value in updates.items():
                setattr(self, name, value)

    def add_fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        code: str,
        message: str = "Injected failure.",
        count: int = 1,
    ) -> None:
        """Append one ``fail_next`` rule (keeps the existing ones)."""
        rule = FailRule(method, path_regex, status, code, message, count)
        with self._lock:
            self.fail_next.append(rule)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "latency_ms": self.latency_ms,
                "error_rate": self.error_rate,
                "error_status": self.error_status,
                "timeout_rate": self.timeout_rate,
                "timeout_seconds": self.timeout_seconds,
                "token_endpoint_down": self.token_endpoint_down,
                "fail_next": [rule.as_dict() for rule in self.fail_next],
            }

    # --- used by the request pipeline ----------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        """Wait, but wake up at once when the server stops."""
        if seconds > 0:
            self._stopping.wait(seconds)

    def stop(self) -> None:
        self._stopping.set()

    def apply_latency(self) -> None:
        self.sleep(self.latency_ms / 1000.0)

    def pick(self, method: str, path: str) -> InjectedFault | None:
        """The fault to inject into this Graph request, if any.

        ``fail_next`` rules come first (in order; each use lowers its count). Then a timeout
        (the connection is held ``timeout_seconds``, then answered 504), then the 5xx rate.
        """
        with self._lock:
            for rule in self.fail_next:
                if rule.method == method.upper() and rule.compiled.search(path):
                    rule.count -= 1
                    if rule.count <= 0:
                        self.fail_next.remove(rule)
                    headers = {"Retry-After": "1"} if rule.status in (429, 503) else {}
                    return InjectedFault(rule.status, rule.code, rule.message, headers)
            timeout = self.timeout_rate > 0 and self._random.random() < self.timeout_rate
            error = not timeout and self.error_rate > 0 and self._random.random() < self.error_rate
            timeout_seconds, status = self.timeout_seconds, self.error_status
        if timeout:
            self.sleep(timeout_seconds)
            return InjectedFault(504, "UnknownError", "Gateway timeout (injected).", {})
        if error:
            if status == 503:
                return InjectedFault(
                    503,
                    "serviceNotAvailable",
                    "Service is unavailable. Please retry after the time in Retry-After.",
                    {"Retry-After": "1"},
                )
            return InjectedFault(500, "generalException", "General exception while processing.", {})
        return None
