"""Liveness and readiness.

``/healthz``: the process answers; touches nothing else (no database, no Redis, no sign-in).
``/readyz``: the portal can serve: the database answers, Redis answers, a Graph token can be
had (``portal.graph_client.check_token()``, which raises on failure), and no throttling class of
the shared Graph budget is stalled: calls waiting with no grant for longer than
``GRAPH_BUDGET_STALL_SECONDS``, or a 429 pause with more than that left. The checks run in parallel,
each bounded by ``CHECK_TIMEOUT_SECONDS``; one that has not finished by then is reported as
failed by name. Answers 200 when every check passed, else 503, with a JSON body::

    {"status": "ok" | "failing",
     "checks": {"database": {"ok": true, "ms": 2},
                "redis": {"ok": false, "error": "ConnectionError: ...", "ms": 1},
                "graph_token": {"ok": true, "ms": 40},
                "graph_budget": {"ok": false, "error": "RuntimeError: reports: ...", "ms": 1}}}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import redis
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

CHECK_TIMEOUT_SECONDS = 5.0
ERROR_MAX_LENGTH = 300


def check_database() -> None:
    """Run ``SELECT 1`` on the default database on this thread's own connection."""
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # The check runs on a pool thread; its connection must not outlive the check.
        connections.close_all()


def check_redis() -> None:
    """PING the Redis at ``settings.REDIS_URL``, with socket timeouts inside the time box."""
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_timeout=CHECK_TIMEOUT_SECONDS,
        socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
    )
    try:
        if not client.ping():
            raise RuntimeError("PING did not answer PONG")
    finally:
        client.close()


def check_graph_token() -> None:
    """Obtain (or find cached) an app token for Graph; raises whatever the client raises."""
    from portal.graph_client import check_token  # imported here: it builds the Graph client

    check_token()


def check_graph_budget() -> None:
    """Raises RuntimeError naming each throttling class whose budget is stalled."""
    from portal.graph_client import budget_stalls  # imported here: it builds the Graph client

    stalls = budget_stalls()
    if stalls:
        raise RuntimeError("; ".join(f"{cls}: {why}" for cls, why in sorted(stalls.items())))


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "redis": check_redis,
    "graph_token": check_graph_token,
    "graph_budget": check_graph_budget,
}


def _timed(check: Callable[[], None]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        check()
    except Exception as exc:  # any failure of a dependency means "not ready"
        result: dict[str, Any] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        result["error"] = result["error"][:ERROR_MAX_LENGTH]
    else:
        result = {"ok": True}
    result["ms"] = round((time.monotonic() - started) * 1000)
    return result


def run_checks(checks: dict[str, Callable[[], None]] | None = None) -> dict[str, dict[str, Any]]:
    """Run ``checks`` (default ``CHECKS``) in parallel; a check past the time box is failed."""
    checks = CHECKS if checks is None else checks
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    futures: dict[str, Future[dict[str, Any]]] = {
        name: pool.submit(_timed, check) for name, check in checks.items()
    }
    wait(futures.values(), timeout=CHECK_TIMEOUT_SECONDS)
    # Do not wait for a hung check: its thread ends on its own socket timeout.
    pool.shutdown(wait=False, cancel_futures=True)
    results: dict[str, dict[str, Any]] = {}
    for name, future in futures.items():
        if future.done() and not future.cancelled():
            results[name] = future.result()
        else:
            results[name] = {
                "ok": False,
                "error": f"timed out after {CHECK_TIMEOUT_SECONDS:g} s",
                "ms": round(CHECK_TIMEOUT_SECONDS * 1000),
            }
    return results


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: 200 ``{"status": "ok"}`` while the process can answer."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 when the database, Redis, a Graph token and the Graph budget are all fine,
    else 503."""
    results = run_checks()
    ready = all(result["ok"] for result in results.values())
    return JsonResponse(
        {"status": "ok" if ready else "failing", "checks": results}, status=200 if ready else 503
    )
