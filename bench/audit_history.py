"""Benchmark: filtered history-page latency at 1,000,000 Entra records and 200,000 portal events.

Loads the data into a fresh PostgreSQL database (bench/audit_bench_db.py: ``DATABASE_URL``'s
server, or the local one), then times ``audit.selectors.history_query`` as a Lead sees it (the
whole team's history) and as an Agent sees it (own requests), one filter at a time: the first
page and a deep page (reached with the first page's cursor, so the deep page costs what page 2
costs). Each case runs ``RUNS`` times with varied values (different agents, people, days); the
first run of each case is a warm-up and is not counted.

Prints p50 / p95 in milliseconds per filter and says whether p95 is under the 50 ms target.
Bounded: about 3-4 minutes on a 2-core machine (most of it loading).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import audit_bench_db as bench_db

RUNS = 40
# A case stops early once it has taken this long (at least MIN_RUNS runs), so a slow filter
# cannot stretch the benchmark past its bound; the runs counted are printed.
CASE_SECONDS = 8.0
MIN_RUNS = 3
TARGET_P95_MS = 50.0
PAGE_SIZE = 50


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    with bench_db.created_database() as url:
        bench_db.prepare_environment(url)
        print(
            f"loading {bench_db.ENTRA_RECORDS:,} Entra records and "
            f"{bench_db.PORTAL_EVENTS:,} portal events into PostgreSQL ...",
            flush=True,
        )
        data = bench_db.load()
        print(f"  loaded and analysed in {data.load_seconds:.0f} s", flush=True)
        return _measure(data)


def cases(
    data: bench_db.BenchData, rng: random.Random
) -> tuple[list[tuple[str, Callable[[], dict[str, str]], Any]], Any, list[Any]]:
    """The filters measured: (name, make the params, viewer: the lead or "agent"), the lead,
    and the agents an "agent" case picks from. Also used by bench/audit_db.py."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    lead = users.get(pk=data.lead_user_id)
    agents = [users.get(pk=pk) for pk, _oid, _name in data.agents[:10]]
    start = bench_db.START

    def day(offset_days: float) -> str:
        return (start + timedelta(days=offset_days)).date().isoformat()

    return _case_list(data, rng, day, lead), lead, agents


def _measure(data: bench_db.BenchData) -> int:
    from audit.selectors import HistoryFilters, history_query

    rng = random.Random(7)
    cases_, lead, agents = cases(data, rng)
    return _measure_cases(cases_, lead, agents, HistoryFilters, history_query, rng)


def _case_list(
    data: bench_db.BenchData, rng: random.Random, day: Callable[[float], str], lead: Any
) -> list[tuple[str, Callable[[], dict[str, str]], Any]]:
    return [
        ("no filter", lambda: {}, lead),
        ("oldest first", lambda: {"order": "asc"}, lead),
        ("date range (1 week)", lambda: _week(rng, day), lead),
        ("agent", lambda: {"agent": rng.choice(data.agents)[1]}, lead),
        ("target (person)", lambda: {"target": rng.choice(data.targets)[0]}, lead),
        ("kind: portal event", lambda: {"kind": "action_requested"}, lead),
        ("kind: Entra activity", lambda: {"kind": "Add member to role"}, lead),
        ("outcome: failure", lambda: {"outcome": "failure"}, lead),
        ("source: entra", lambda: {"source": "entra"}, lead),
        ("source: portal", lambda: {"source": "portal"}, lead),
        ("outside the portal", lambda: {"outside": "1"}, lead),
        ("request", lambda: {"request": rng.choice(data.request_public_ids)}, lead),
        (
            "text: ticket",
            lambda: {"q": f"INC{1000000 + rng.randrange(1, bench_db.REQUESTS)}"},
            lead,
        ),
        ("text: person name", lambda: {"q": rng.choice(data.targets)[1]}, lead),
        (
            "agent + week + outcome",
            lambda: {**_week(rng, day), "agent": rng.choice(data.agents)[1], "outcome": "success"},
            lead,
        ),
        ("as an agent: own history", lambda: {}, "agent"),
        ("as an agent: a person", lambda: {"target": rng.choice(data.targets)[0]}, "agent"),
    ]


def _measure_cases(
    cases: list[tuple[str, Callable[[], dict[str, str]], Any]],
    lead: Any,
    agents: list[Any],
    HistoryFilters: Any,
    history_query: Any,
    rng: random.Random,
) -> int:
    print(f"\nhistory page latency, {PAGE_SIZE} rows a page, {RUNS} runs each (ms):")
    print(f"  {'filter':34} {'p50':>7} {'p95':>7} {'deep p95':>9}  target p95 < {TARGET_P95_MS:g}")
    failures = 0
    for name, make_params, viewer in cases:
        first_times: list[float] = []
        deep_times: list[float] = []
        case_started = time.perf_counter()
        for run in range(RUNS + 1):
            if len(first_times) >= MIN_RUNS and time.perf_counter() - case_started > CASE_SECONDS:
                break
            person = rng.choice(agents) if viewer == "agent" else viewer
            filters = HistoryFilters.from_params(make_params())
            t0 = time.perf_counter()
            page = history_query(filters, person, page_size=PAGE_SIZE)
            t1 = time.perf_counter()
            if page.next_cursor is not None:
                history_query(filters, person, after=page.next_cursor, page_size=PAGE_SIZE)
            t2 = time.perf_counter()
            if run == 0:
                continue  # warm-up
            first_times.append((t1 - t0) * 1000)
            if page.next_cursor is not None:
                deep_times.append((t2 - t1) * 1000)
        p50 = statistics.median(first_times)
        p95 = _percentile(first_times, 0.95)
        deep = _percentile(deep_times, 0.95) if deep_times else float("nan")
        worst = max(p95, deep if deep_times else 0.0)
        verdict = "ok" if worst < TARGET_P95_MS else "SLOW"
        failures += verdict != "ok"
        runs = f"({len(first_times)} runs)" if len(first_times) < RUNS else ""
        print(f"  {name:34} {p50:7.1f} {p95:7.1f} {deep:9.1f}  {verdict} {runs}", flush=True)
    print(f"\n{len(cases) - failures} of {len(cases)} filters meet p95 < {TARGET_P95_MS:g} ms")
    return 0


def _week(rng: random.Random, day: Callable[[float], str]) -> dict[str, str]:
    offset = rng.uniform(0, 720)
    return {"since": day(offset), "until": day(offset + 6)}


if __name__ == "__main__":
    sys.exit(main())
