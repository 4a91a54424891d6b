"""Fair shares of the shared budget: agents (fair keys) are served round-robin, across
processes, counted in grants (not times)."""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor

from graph import BudgetRate, RequestBudget
from tests.graph.fairness_processes import RATE, loop_as_agent

REDIS_URL = os.environ.get("REDIS_URL", "")


def test_agents_in_separate_processes_get_equal_shares(budget_prefix: str) -> None:
    """Agent A and agent B each loop in a process of their own; greedy agent G loops four times
    in parallel in a third. Each gets about a third of the grants; without fair shares G, with
    four of the six loops, would get about two thirds."""
    total = 60
    context = multiprocessing.get_context("spawn")
    plan = [("agent-a", 1), ("agent-b", 1), ("agent-greedy", 4)]
    starters = sum(loops for _, loops in plan)
    with ProcessPoolExecutor(max_workers=len(plan), mp_context=context) as pool:
        futures = {
            agent: pool.submit(
                loop_as_agent, REDIS_URL, budget_prefix, agent, loops, total, starters
            )
            for agent, loops in plan
        }
        grants = {agent: future.result(timeout=180) for agent, future in futures.items()}
    assert sum(grants.values()) == total
    share = total / len(plan)
    # Round-robin allows each agent one grant of slack per round, plus the starting bucket.
    bound = RATE[0] + 2
    for agent, count in grants.items():
        assert abs(count - share) <= bound, grants
    # Four loops of six without fairness: about 40 of 60, far outside the bound.
    assert grants["agent-greedy"] < total * 4 / 6 - bound


def test_a_greedy_agents_waiting_does_not_starve_another(budget_prefix: str) -> None:
    """While agent G keeps four loops waiting, agent B's calls are each granted within a round:
    at most a bucketful of G's grants between B asking and B being served."""
    rate = BudgetRate(3, 0.3)
    budget = RequestBudget(
        REDIS_URL,
        {"reports": rate, "identity": BudgetRate(100, 1)},
        interactive_reserve=1,
        prefix=budget_prefix,
    )
    log: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def greedy() -> None:
        while not stop.is_set():
            budget.acquire("reports", "interactive", timeout=30, fair_key="agent-greedy")
            with lock:
                log.append("G")

    threads = [threading.Thread(target=greedy) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        between: list[int] = []
        while len(log) < 6:  # G is draining the bucket and waiting in all four loops
            stop.wait(0.01)
        for _ in range(5):
            with lock:
                asked = len(log)
            budget.acquire("reports", "interactive", timeout=30, fair_key="agent-b")
            with lock:
                between.append(log[asked:].count("G"))
                log.append("B")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert max(between) <= rate.requests, (between, "".join(log))
    # B never waits longer than G: in the log, G never runs far ahead of B while B waits.
    assert log.count("B") == 5


def test_a_429_still_pauses_every_agent(budget_prefix: str) -> None:
    budget = RequestBudget(
        REDIS_URL,
        {"reports": BudgetRate(100, 1), "identity": BudgetRate(100, 1)},
        interactive_reserve=1,
        prefix=budget_prefix,
    )
    budget.acquire("reports", fair_key="agent-a")
    budget.record_pause("reports", 2)
    for agent in ("agent-a", "agent-b", None):
        assert not budget.try_acquire("reports", fair_key=agent)
        assert budget.estimate("reports", fair_key=agent).seconds > 1.5
    assert not budget.try_acquire("reports", "bulk", fair_key="agent-b")
    assert budget.try_acquire("identity", fair_key="agent-b")  # the pause is the class's only


def _one_a_second(prefix: str) -> RequestBudget:
    return RequestBudget(
        REDIS_URL,
        {"reports": BudgetRate(1, 1), "identity": BudgetRate(100, 1)},
        interactive_reserve=0,
        prefix=prefix,
    )


def test_the_agent_who_has_waited_longest_goes_first(budget_prefix: str) -> None:
    """Agent A was served a while ago and has been waiting since; agent N, never served, arrives
    later. A's turn comes first: a newcomer does not cut in because it was served long ago
    (issue 12's fairness: serve the longest-waiting agent first)."""
    budget = _one_a_second(budget_prefix)
    assert budget.try_acquire("reports", fair_key="agent-a")
    assert not budget.try_acquire("reports", fair_key="agent-a", hold_seconds=30)
    assert not budget.try_acquire("reports", fair_key="agent-n", hold_seconds=30)
    assert budget.estimate("reports", fair_key="agent-a").position == 1
    assert budget.estimate("reports", fair_key="agent-n").position == 2
    # And when the token comes, it is A's: N is refused while A waits for it.
    budget.acquire("reports", fair_key="agent-a", timeout=5)
    assert budget.estimate("reports", fair_key="agent-n").position == 1


def test_a_submitted_change_goes_before_page_reads(budget_prefix: str) -> None:
    """The runner of a submitted change (priority "action") is served before agents' page reads
    waiting at "interactive", whatever their turn: a reset with the caller on the line does not
    queue behind panels, which can show a wait (issue 12: 15 re-registrations stayed queued)."""
    budget = _one_a_second(budget_prefix)
    assert budget.try_acquire("reports", fair_key="agent-a")
    for agent in ("agent-b", "agent-c", "agent-d"):
        assert not budget.try_acquire("reports", fair_key=agent, hold_seconds=30)
    assert budget.estimate("reports", "action", fair_key="run:1").position == 1
    budget.acquire("reports", "action", fair_key="run:1", timeout=5)
    # The page readers are still waiting; the runner is ahead of all of them again.
    assert budget.estimate("reports", "interactive", fair_key="agent-b").position >= 1
    assert budget.estimate("reports", "action", fair_key="run:1").position == 1
    assert budget.max_burst("reports", "action") == 1  # no reserve kept from it
