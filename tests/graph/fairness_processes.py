"""Agents looping on one shared budget, run in separate OS processes by test_budget_fairness.py.

Kept importable on its own: a spawned child imports it by name, not the test module.
"""

from __future__ import annotations

import threading
import time

import redis

from graph import BudgetRate, RequestBudget

RATE = (4, 0.4)


def _budget(redis_url: str, prefix: str) -> RequestBudget:
    return RequestBudget(
        redis_url,
        {"reports": BudgetRate(*RATE), "identity": BudgetRate(100, 1)},
        interactive_reserve=1,
        prefix=prefix,
    )


def loop_as_agent(
    redis_url: str, prefix: str, agent: str, loops: int, total: int, starters: int
) -> int:
    """Run ``loops`` parallel loops acquiring reports tokens as ``agent`` (one process), from when
    all ``starters`` loops of the test are up until ``total`` grants were made by all of them.
    Returns how many of the first ``total`` grants went to this agent."""
    budget = _budget(redis_url, prefix)
    counter = redis.Redis.from_url(redis_url)
    counter.incr(f"{prefix}:test:started", loops)
    deadline = time.monotonic() + 60
    while int(counter.get(f"{prefix}:test:started") or 0) < starters:
        if time.monotonic() > deadline:
            raise RuntimeError("the other agents never started")
        time.sleep(0.005)
    mine = [0] * loops

    def one_loop(index: int) -> None:
        while True:
            budget.acquire("reports", "interactive", timeout=60, fair_key=agent)
            if counter.incr(f"{prefix}:test:granted") > total:
                return
            mine[index] += 1

    threads = [threading.Thread(target=one_loop, args=(i,)) for i in range(loops)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    budget.close()
    return sum(mine)
