"""What the budget tells a caller that will not wait: try_acquire, estimate, the no-wait client
view, the fair key of an agent's client view, and the snapshot the operations view draws."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from graph import BudgetRate, GraphThrottled, RequestBudget, users
from graph.budget import SEND_MARGIN_SECONDS, BudgetBusy, BudgetWait, Priority
from tests.graph.conftest import MakeClient
from tests.graph.local_graph import Answer, LocalGraph

REDIS_URL = os.environ.get("REDIS_URL", "")


def make_budget(prefix: str, reports: BudgetRate, reserve: int = 1) -> RequestBudget:
    return RequestBudget(
        REDIS_URL,
        {"reports": reports, "identity": BudgetRate(3500, 10)},
        interactive_reserve=reserve,
        prefix=prefix,
    )


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s")

    monkeypatch.setattr("graph.budget.time.sleep", refuse)


def test_try_acquire_takes_a_token_or_says_no_without_sleeping(
    budget_prefix: str, no_sleep: None
) -> None:
    budget = make_budget(budget_prefix, BudgetRate(2, 100))
    assert budget.estimate("reports") == BudgetWait(0.0, 0)
    assert budget.try_acquire("reports", fair_key="agent-a")
    assert budget.try_acquire("reports", fair_key="agent-a")
    assert not budget.try_acquire("reports", fair_key="agent-a")
    wait = budget.estimate("reports", fair_key="agent-a")
    assert wait.position == 1
    # One token refills in 100 s / 2, after the send margin the first grant (from the full
    # bucket) holds; the second grant's, from a bucket far from full, holds nothing.
    assert 50 + SEND_MARGIN_SECONDS - 0.01 <= wait.seconds <= 51


def test_estimate_counts_the_agents_ahead(budget_prefix: str) -> None:
    budget = make_budget(budget_prefix, BudgetRate(1, 1), reserve=0)  # a token a second
    # From the full bucket: its refill waits the send margin (Graph's, full, refilled nothing).
    assert budget.try_acquire("reports", fair_key="agent-a")
    # Two other agents keep their places in the queue (as waiting pages do).
    assert not budget.try_acquire("reports", fair_key="agent-b", hold_seconds=30)
    assert not budget.try_acquire("reports", fair_key="agent-c", hold_seconds=30)
    # agent-a was served last: it is behind both; b, never served, is ahead of c by key.
    behind = budget.estimate("reports", fair_key="agent-a")
    assert behind.position == 3
    assert 2 + SEND_MARGIN_SECONDS < behind.seconds <= 3 + SEND_MARGIN_SECONDS + 0.05
    assert budget.estimate("reports", fair_key="agent-b").position == 1
    # Bulk waits behind every interactive caller, and behind the reserve (here 0).
    assert budget.estimate("reports", "bulk").position == 3
    time.sleep(1.2 + SEND_MARGIN_SECONDS)  # a token refilled: it is b's
    assert not budget.try_acquire("reports", fair_key="agent-a")
    assert not budget.try_acquire("reports", fair_key="agent-c")
    assert budget.try_acquire("reports", fair_key="agent-b")
    # b's hold ended with its grant: c is next.
    assert budget.estimate("reports", fair_key="agent-c").position == 1


def test_estimate_includes_a_429_pause(budget_prefix: str) -> None:
    budget = make_budget(budget_prefix, BudgetRate(100, 1))
    budget.record_pause("reports", 5)
    wait = budget.estimate("reports", fair_key="agent-a")
    assert wait.position == 1
    assert 4.5 < wait.seconds <= 5.1
    assert not budget.try_acquire("reports", fair_key="agent-a")


def test_without_waiting_raises_budget_busy_and_sends_nothing(
    make_client: MakeClient, local_graph: LocalGraph, no_sleep: None
) -> None:
    local_graph.script("GET", r"^/v1.0/users/u1$", Answer(body={"id": "u1", "displayName": "U"}))
    client = make_client(
        budgets={"reports": BudgetRate(5, 10), "identity": BudgetRate(1, 100)},
        interactive_reserve=0,
    )
    quick = client.for_agent("agent-a").without_waiting()
    assert quick.fair_key == "agent-a" and quick.priority == client.priority
    users.get_user(quick, "u1")  # the one token
    with pytest.raises(BudgetBusy) as caught:
        users.get_user(quick, "u1")
    error = caught.value
    assert isinstance(error, GraphThrottled) and error.code == "BudgetExhausted"
    assert error.wait.position == 1 and error.retry_after == error.wait.seconds > 50
    assert len(local_graph.graph_requests()) == 1


def test_an_agents_view_draws_under_its_fair_key(
    make_client: MakeClient, local_graph: LocalGraph
) -> None:
    local_graph.script("GET", r"^/v1.0/users/u1$", Answer(body={"id": "u1", "displayName": "U"}))
    client = make_client()
    users.get_user(client.for_agent("oid-of-agent-a").with_priority("bulk"), "u1")
    served = client.budget.snapshot()["classes"]["identity"]["served"]
    assert set(served) == {"oid-of-agent-a"}
    with pytest.raises(ValueError):
        client.for_agent("a|b")


def test_snapshot_shows_use_waiters_and_pauses(budget_prefix: str) -> None:
    budget = make_budget(budget_prefix, BudgetRate(2, 2), reserve=0)  # a token a second
    budget.acquire("reports", fair_key="agent-a", tokens=2)
    waiting = threading.Thread(
        target=budget.acquire, args=("reports",), kwargs={"fair_key": "agent-b", "timeout": 10}
    )
    waiting.start()
    deadline = time.monotonic() + 5
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = budget.snapshot()["classes"]["reports"]
        if state["waiters"]:
            break
        time.sleep(0.02)
    assert state["waiting"] == {"action": 0, "interactive": 1, "bulk": 0, "sync": 0}
    assert [(w["key"], w["priority"], w["calls"]) for w in state["waiters"]] == [
        ("agent-b", "interactive", 1)
    ]
    assert state["stalled_for"] < 1.5
    waiting.join()
    budget.record_pause("reports", 0.2)
    budget.record_pause("reports", 0.1)  # inside the first: a 429 seen, no new pause
    state = budget.snapshot()["classes"]["reports"]
    hour = state["hour"]
    assert len(state["minutes"]) == 60
    assert hour["used"] == 3 and hour["calls"] == 2
    assert hour["waits"] == 1 and hour["waited_s"] > 0.5
    assert hour["by_priority"]["interactive"]["used"] == 3
    assert hour["throttled"] == 2 and hour["pauses"] == 1
    assert 0.15 < hour["paused_s"] <= 0.2
    assert set(state["served"]) == {"agent-a", "agent-b"}
    assert state["waiters"] == [] and state["stalled_for"] == 0


def test_stalls_are_waiters_without_grants_or_long_pauses(budget_prefix: str) -> None:
    budget = make_budget(budget_prefix, BudgetRate(1, 1000), reserve=0)
    assert budget.stalls(0.5) == {}
    budget.acquire("reports", fair_key="agent-a")
    assert not budget.try_acquire("reports", fair_key="agent-b", hold_seconds=30)
    assert budget.stalls(5) == {}
    time.sleep(0.7)
    assert "no grant" in budget.stalls(0.5)["reports"]
    # A new waiter replacing one that gave up does not make the stall look new.
    assert not budget.try_acquire("reports", fair_key="agent-c", hold_seconds=30)
    budget._forget_waiter("reports", Priority.INTERACTIVE, "agent-b|hold")
    assert budget.snapshot()["classes"]["reports"]["stalled_for"] > 0.7
    budget.record_pause("identity", 60)
    assert "429" in budget.stalls(30)["identity"]


def test_a_burst_goes_at_once_and_the_refill_is_graphs_own_rate(budget_prefix: str) -> None:
    """The bucket refills at Graph's rate (5 per 10 s is a token every 2 s, not every 2.2 s as
    the old safety factor made it), after the send margin a grant from a full bucket holds:
    Graph's bucket, as full, refills nothing until that request reaches it."""
    budget = make_budget(budget_prefix, BudgetRate(5, 100), reserve=0)  # a token per 20 s
    for _ in range(5):
        assert budget.try_acquire("reports", fair_key="agent-a")
    wait = budget.estimate("reports", fair_key="agent-a")
    assert wait.position == 1
    assert abs(wait.seconds - (20 + SEND_MARGIN_SECONDS)) < 0.05
