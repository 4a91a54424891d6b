"""The shared request budget against a real Redis (the run's embedded one, or REDIS_URL)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from graph import BudgetRate, GraphThrottled, RequestBudget, classify_path
from graph.budget import Priority
from tests.graph.budget_processes import draw_tokens, get_user_through_client, warm_up
from tests.graph.local_graph import (
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT,
    Answer,
    LocalGraph,
    graph_error,
)

REDIS_URL = os.environ.get("REDIS_URL", "")


def make_budget(prefix: str, reports: BudgetRate, reserve: int = 1) -> RequestBudget:
    return RequestBudget(
        REDIS_URL,
        {"reports": reports, "identity": BudgetRate(3500, 10)},
        interactive_reserve=reserve,
        prefix=prefix,
    )


def within_rate(times: list[float], rate: BudgetRate, slack: float = 0.05) -> bool:
    """No window holds more grants than a full bucket plus what refilled during it."""
    times = sorted(times)
    per_second = rate.requests / rate.per_seconds
    for i in range(len(times)):
        for j in range(i, len(times)):
            allowed = rate.requests + per_second * (times[j] - times[i] + slack)
            if j - i + 1 > allowed:
                return False
    return True


@pytest.mark.parametrize(
    ("path", "cls"),
    [
        ("/v1.0/users/u1/authentication/methods", "reports"),
        ("/v1.0/users/u1/authentication/phoneMethods/x", "reports"),
        ("/v1.0/users/u1/authentication/temporaryAccessPassMethods", "reports"),
        ("/beta/users/u1/authentication/requirements", "reports"),
        ("/v1.0/auditLogs/directoryAudits", "reports"),
        ("https://graph.microsoft.com/v1.0/auditLogs/directoryAudits?$skiptoken=x", "reports"),
        (
            "/v1.0/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/x",
            "reports",
        ),
        ("/v1.0/users", "identity"),
        ("/v1.0/users/authentication", "identity"),
        ("/v1.0/users/u1/transitiveMemberOf", "identity"),
        ("/v1.0/groups/g/transitiveMembers", "identity"),
        ("/v1.0/roleManagement/directory/roleAssignments", "identity"),
    ],
)
def test_classify_path(path: str, cls: str) -> None:
    assert classify_path(path) == cls


def test_unknown_paths_have_no_class() -> None:
    with pytest.raises(ValueError, match="no throttling class"):
        classify_path("/v1.0/sites/root")


def test_rate_parsing() -> None:
    assert BudgetRate.parse("5/10") == BudgetRate(5, 10.0)
    assert BudgetRate.parse(" 3500/10 ") == BudgetRate(3500, 10.0)
    for bad in ("5", "five/10", "0/10", "5/0", "5/-1"):
        with pytest.raises(ValueError):
            BudgetRate.parse(bad)


def test_reserve_keeps_the_last_tokens_for_interactive(budget_prefix: str) -> None:
    budget = make_budget(budget_prefix, BudgetRate(5, 100))
    for _ in range(4):
        budget.acquire("reports", "sync", timeout=0.1)
    with pytest.raises(GraphThrottled) as caught:
        budget.acquire("reports", "bulk", timeout=0.1)
    assert caught.value.retry_after is not None and caught.value.retry_after > 10
    budget.acquire("reports", "interactive", timeout=0.1)
    with pytest.raises(GraphThrottled):
        budget.acquire("reports", "interactive", timeout=0.1)


def test_a_bulk_operation_leaves_the_bulk_reserve_for_an_agents_reset(budget_prefix: str) -> None:
    """Bulk takes a token only above ``bulk_reserve`` (4 by default), so an agent's reset that
    starts while a bulk runs finds its first four calls' tokens at once."""
    budget = make_budget(budget_prefix, BudgetRate(5, 100))
    assert budget.max_burst("reports", "bulk") == 1
    budget.acquire("reports", "bulk", timeout=0.1)
    with pytest.raises(GraphThrottled):
        budget.acquire("reports", "bulk", timeout=0.1)
    for _ in range(4):
        budget.acquire("reports", "action", timeout=0.1)
    with pytest.raises(GraphThrottled):
        budget.acquire("reports", "action", timeout=0.1)
    # Never the whole bucket: a bucket of 3 keeps 2 from bulk, and sync keeps its own reserve.
    small = RequestBudget(
        REDIS_URL,
        {"reports": BudgetRate(3, 100), "identity": BudgetRate(3500, 10)},
        interactive_reserve=1,
        prefix=f"{budget_prefix}:small",
    )
    assert small.max_burst("reports", "bulk") == 1
    assert small.max_burst("reports", "sync") == 2
    assert small.max_burst("identity", "bulk") == 3496


def test_never_grantable_request_is_a_value_error(budget_prefix: str) -> None:
    budget = make_budget(budget_prefix, BudgetRate(5, 10))
    assert budget.max_burst("reports", "sync") == 4
    with pytest.raises(ValueError, match="can never be granted"):
        budget.acquire("reports", "sync", tokens=5)


def test_acquire_sleeps_instead_of_spinning(budget_prefix: str) -> None:
    budget = make_budget(budget_prefix, BudgetRate(2, 2), reserve=0)
    budget.acquire("reports", tokens=2)
    # Count this budget's own tries at the bucket (the server's commandstats would also count
    # other processes sharing it, such as a parallel test worker).
    script = budget._acquire
    tries: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        tries.append(1)
        return script(*args, **kwargs)

    budget._acquire = counted  # type: ignore[assignment]
    started = time.monotonic()
    budget.acquire("reports", timeout=5)
    elapsed = time.monotonic() - started
    assert 0.8 <= elapsed < 2.0
    # A spinning waiter would try hundreds of times in a second, a sleeping one a handful.
    assert 1 <= len(tries) <= 20


def test_interactive_waiter_is_served_before_sync(budget_prefix: str) -> None:
    budget = make_budget(budget_prefix, BudgetRate(5, 2.5), reserve=0)  # one token per 0.5 s
    budget.acquire("reports", tokens=5)
    order: list[str] = []

    def take(priority: str) -> None:
        budget.acquire("reports", priority, timeout=10)
        order.append(priority)

    sync = threading.Thread(target=take, args=("sync",))
    sync.start()
    time.sleep(0.1)  # the sync waiter is first in line
    interactive = threading.Thread(target=take, args=("interactive",))
    interactive.start()
    sync.join()
    interactive.join()
    assert order == ["interactive", "sync"]


def test_interactive_waits_about_one_slot_while_sync_drains(budget_prefix: str) -> None:
    budget = make_budget(budget_prefix, BudgetRate(5, 2.5))  # a slot is 0.5 s
    stop = threading.Event()

    def sync_loop() -> None:
        while not stop.is_set():
            try:
                budget.acquire("reports", Priority.SYNC, timeout=1)
            except GraphThrottled:
                pass

    worker = threading.Thread(target=sync_loop)
    worker.start()
    try:
        time.sleep(1.5)  # sync has drained the bucket down to the reserve
        waits = []
        for _ in range(3):
            started = time.monotonic()
            budget.acquire("reports", Priority.INTERACTIVE, timeout=10)
            waits.append(time.monotonic() - started)
            time.sleep(0.2)
    finally:
        stop.set()
        worker.join()
    assert max(waits) < 0.5 * 1.5 + 0.1, waits


def test_pause_blocks_every_caller_of_the_class(budget_prefix: str) -> None:
    budget = make_budget(budget_prefix, BudgetRate(100, 1))
    budget.record_pause("reports", 1.0)
    assert 0.5 < budget.pause_remaining("reports") <= 1.0
    assert budget.pause_remaining("identity") == 0
    budget.acquire("identity", timeout=0.1)  # another class is not paused
    with pytest.raises(GraphThrottled):
        budget.acquire("reports", timeout=0.3)
    started = time.monotonic()
    budget.acquire("reports", timeout=3)
    assert time.monotonic() - started >= 0.6


def test_redis_down_is_transient(budget_prefix: str) -> None:
    from graph import GraphTransient

    budget = RequestBudget("redis://127.0.0.1:9/0", prefix=budget_prefix)
    with pytest.raises(GraphTransient, match="Redis"):
        budget.acquire("identity", timeout=1)


def test_two_processes_together_stay_within_the_budget(budget_prefix: str) -> None:
    rate = (4, 1.0)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        futures = [
            pool.submit(draw_tokens, REDIS_URL, budget_prefix, rate, 10, "interactive")
            for _ in range(2)
        ]
        results = [f.result(timeout=120) for f in futures]
    times = results[0] + results[1]
    assert len(times) == 20
    assert within_rate(times, BudgetRate(*rate)), sorted(t - min(times) for t in times)
    # Both processes really competed: their grants interleave in time.
    assert min(results[1]) < max(results[0]) and min(results[0]) < max(results[1])
    # And the check above can fail: one process alone without a shared budget would exceed it.
    assert not within_rate([min(times)] * 6, BudgetRate(*rate))


def test_a_429_in_one_process_pauses_the_other(local_graph: LocalGraph, budget_prefix: str) -> None:
    local_graph.script(
        "GET",
        r"^/v1.0/users/u1$",
        Answer(429, graph_error(429, "TooManyRequests"), {"Retry-After": "2"}),
        Answer(body={"id": "u1", "displayName": "U", "userPrincipalName": "u@x"}),
    )
    config: dict[str, Any] = {
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "login_host": local_graph.base_url.removeprefix("https://"),
        "graph_url": local_graph.base_url,
        "ca_bundle": str(local_graph.ca_path),
        "redis_url": REDIS_URL,
        "budgets": {"reports": (100, 1), "identity": (100, 1)},
        "budget_prefix": budget_prefix,
        "max_retry_wait": 10.0,
    }
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        assert len(set(pool.map(warm_up, [0.5, 0.5]))) == 2  # both processes are up
        first = pool.submit(get_user_through_client, config, "u1")
        # Wait until the first process has read its 429 and recorded the pause (a call that
        # was already in flight then cannot be stopped by anyone; later ones must wait).
        observer = make_budget(budget_prefix, BudgetRate(100, 1))
        deadline = time.monotonic() + 60
        while observer.pause_remaining("identity") == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        throttled_at = local_graph.graph_requests()[0].at
        second = pool.submit(get_user_through_client, config, "u1")
        first.result(timeout=60)
        second_started, _ = second.result(timeout=60)
    # The other process really tried during the pause (else this test would prove nothing).
    assert second_started < throttled_at + 1.5
    arrivals = [r.at for r in local_graph.graph_requests()]
    assert len(arrivals) == 3
    # Neither the retry nor the other process's call reached Graph before Retry-After passed.
    assert min(arrivals[1:]) >= throttled_at + 2 - 0.05
