"""Code run in separate OS processes (multiprocessing spawn) by test_budget.py.

Kept in its own importable module: a spawned child imports it by name, not the test module.
"""

from __future__ import annotations

import time
from typing import Any

from graph import BudgetRate, GraphClient, GraphConfig, RequestBudget, users


def draw_tokens(
    redis_url: str, prefix: str, rate: tuple[int, float], count: int, priority: str
) -> list[float]:
    """Take ``count`` reports tokens one by one; return the wall-clock time of each grant."""
    budget = RequestBudget(
        redis_url,
        {"reports": BudgetRate(*rate), "identity": BudgetRate(100, 1)},
        interactive_reserve=1,
        prefix=prefix,
    )
    granted = []
    for _ in range(count):
        budget.acquire("reports", priority, timeout=60)
        granted.append(time.time())
    budget.close()
    return granted


def get_user_through_client(config_values: dict[str, Any], user_id: str) -> tuple[float, float]:
    """Make one real client call; return when it started and when it finished."""
    started = time.time()
    values = dict(config_values)
    values["budgets"] = {k: BudgetRate(*v) for k, v in values["budgets"].items()}
    client = GraphClient(GraphConfig(**values))
    users.get_user(client, user_id)
    return started, time.time()


def warm_up(seconds: float) -> int:
    """Keep a pool worker busy briefly so that the pool starts all its processes."""
    time.sleep(seconds)
    import os

    return os.getpid()
