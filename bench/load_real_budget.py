"""Load with Graph's real budget: 50 agents, a helpdesk's mix: ``python bench/load_real_budget.py``.

The portal is served as bench/load_agents.py serves it (gunicorn, two sync workers, PostgreSQL
when ``DATABASE_URL`` names one, an embedded Redis) plus one Celery worker for the actions, with
the emulator's and the portal's reports class at Graph's real 5 requests per 10 s and the identity
class at 3,500 per 10 s (bench/bench_stack.py). Graph calls are counted on the emulator's side.

Every agent, in its own thread and in real time, opens a person every 20-40 s (uniform): a search
(the htmx fragment), then the person page as a browser draws it (bench/agent_client.py): the
shell, then every panel the shell loads (``data-panel-url``, as static/js/panels.js does, or an
htmx ``load`` trigger), re-fetching a waiting panel after its ``data-retry-after``, until it is
filled. One view in four leads to an action (half "re-register", after a manual caller check,
half "revoke sessions"): the form, one submit in three first fails validation (the reason too
short), then the valid submit; the agent's next view is the same person (checking the outcome).
Open loop: each page (and its action) goes on in its own thread, so an agent opens the next
person on time even while an earlier page still waits. The agents are real users of the
emulator's tenant holding Helpdesk.Agent (the runners re-read the requester's role from Entra).
``WARMUP_SECONDS`` (45) are not counted, then
``DURATION_SECONDS`` (105) are; a panel still waiting ``DRAIN_SECONDS`` (60) after the last view
could start, or ``PANEL_GIVE_UP_SECONDS`` (120) after its own view, is given up and counted at
that time (censored: a lower bound), and so is its floor.

Scaled, keeping one ratio (the budget and the agents' pace are real time): the person cache lives
``CACHE_SECONDS`` (60 s instead of the default 300 s) and the agents see ``PEOPLE`` people (40 of
the demo tenant's 200), so that views per person per cache lifetime (1.67 views/s x 60 s / 40 =
2.5) and the rate of views that find no fresh cache (people / (lifetime + people / view rate) =
0.48/s) are those of 50 agents over the demo tenant with the default lifetime, and the run
reaches them within minutes. That demand is more than Graph's budget: 0.48 cold views/s x 1
reports call (the methods: the page reads the default method and the per-user MFA state only
when the agent asks, and these agents do not) plus the re-registrations (one view in eight,
n + 2 calls and the default's read each, about 1 call/s) against 0.5/s, so waits grow until the
budget is saturated, for the ideal client too (the floor); how long they then are depends on
the scale, so the absolute fill times here are this scale's, and the ratio to the floor is the
figure.

Figures (printed, and with ``--json PATH`` written for bench/run_all.py), each with its goal:
reports-class calls per person view (all the measured window's reports calls less the action
runners' stated minimum, n + 2 + the default-method read, per re-registration seen in the
emulator's log), the shell p95, the methods panel's fill time p95 next to the budget's own floor
for the same demand, fairness (per agent, the median fill time of its views that waited for the
budget; agents with two or more such views), the invalid and valid POST p95 under load (and,
after the load, with the Celery worker paused, Graph calls per invalid and valid POST, counted
alone), and 429s shown to an agent as an error.

The floor: an ideal Graph client that reads what the page shows by itself (the methods:
``real_budget_report.PANEL_PARTS`` reports-class calls) only when its last read is older than
the cache lifetime (a view of a person whose read is queued joins it), and serves every such
read and every re-registration's stated minimum in arrival order from a perfect 5-per-10-s
token bucket (full at the start of the warm-up): a view's floor is when its methods call would
be granted, plus the portal's own time for that view (its fill time when it did not wait, else
the median fill time of the views that did not wait), so that the floor differs from the
portal's fill times only by the waits for the budget.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import agent_client
import bench_stack
from agent_client import (
    PANEL_GIVE_UP_SECONDS,
    ActionTimes,
    View,
    act,
    form_tokens,
    open_person,
)
from bench_stack import Client, percentile
from real_budget_report import PANEL_PARTS, REPORTS_BUDGET, goals, print_figures

# bench/load_within_budget.py imports this module; it is a benchmark of its own all the same.
RUN_ALONE = True
AGENTS = 50
DURATION_SECONDS = 105.0
WARMUP_SECONDS = 45.0
# After the last view starts, waiting panels get this long to fill; later ones are censored.
DRAIN_SECONDS = 60.0
VIEW_EVERY_SECONDS = (20.0, 40.0)
ACTION_SHARE = 0.25
PEOPLE = 40
CACHE_SECONDS = 60
QUERIES = (
    "ol", "li", "em", "no", "am", "so", "is", "ja", "mi", "wi",
    "sam", "priya", "leo", "ana", "smi", "joh", "gar", "mar", "br", "da",
)  # fmt: skip


# --- the agents ---


@dataclass
class Run:
    views: list[View] = field(default_factory=list)
    searches: list[float] = field(default_factory=list)
    actions: list[tuple[float, str, str]] = field(default_factory=list)  # (monotonic, kind, oid)
    threads: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def agent_loop(
    *,
    stack: bench_stack.Stack,
    n: int,
    people: list[tuple[str, str]],
    start: float,
    deadline: float,
    run: Run,
    times: ActionTimes,
    rng: random.Random,
) -> None:
    cookie = stack.cookie(n)
    search_client = Client(stack.portal_port, cookie)
    next_at = start + rng.uniform(0, VIEW_EVERY_SECONDS[1])
    follow_up: str | None = None
    while True:
        time.sleep(max(0.0, next_at - time.monotonic()))
        if time.monotonic() >= deadline:
            break
        opened = time.monotonic()
        next_at = opened + rng.uniform(*VIEW_EVERY_SECONDS)
        if follow_up is not None:
            oid, follow_up = follow_up, None
        else:
            oid, query = rng.choice(people)
            t = time.perf_counter()
            try:
                search_client.request("GET", f"/users/?q={quote(query)}", htmx=True)
            except Exception:
                search_client.close()
            with run.lock:
                run.searches.append(time.perf_counter() - t)
        kind = None
        if rng.random() < ACTION_SHARE:
            kind = rng.choice(("reregister", "revoke_sessions"))
            follow_up = oid
        # Open loop, as the mix asks (a person every 20-40 s): the page (and the action after
        # it) go on in their own thread while the agent opens the next person on time.
        thread = threading.Thread(
            target=view_then_act,
            args=(stack, n, oid, kind, random.Random(rng.random()), run, times),
            daemon=True,
        )
        thread.start()
        with run.lock:
            run.threads.append(thread)
    search_client.close()


def view_then_act(
    stack: bench_stack.Stack,
    n: int,
    oid: str,
    kind: str | None,
    rng: random.Random,
    run: Run,
    times: ActionTimes,
) -> None:
    cookie = stack.cookie(n)
    view = open_person(stack.portal_port, cookie, n, oid)
    with run.lock:
        run.views.append(view)
    if kind is not None and time.monotonic() < agent_client.HARD_END[0]:
        with run.lock:
            run.actions.append((time.monotonic(), kind, oid))
        act(stack.portal_port, cookie, oid, kind, rng, times)


def find_people(stack: bench_stack.Stack, count: int) -> list[tuple[str, str]]:
    """``count`` people of the tenant, each with a search query that finds them."""
    client = Client(stack.portal_port, stack.cookie(0))
    found: dict[str, str] = {}
    for query in QUERIES:
        _status, body, _h = client.request("GET", f"/users/?q={quote(query)}", htmx=True)
        for oid in bench_stack.PERSON_LINK.findall(body):
            found.setdefault(oid, query)
    client.close()
    ordered = sorted(found.items())
    random.Random(12).shuffle(ordered)
    return ordered[:count]


# --- the floor ---


def budget_floor(
    views: list[View],
    runner_calls: list[tuple[float, int]],
    *,
    start: float,
    cache_seconds: float,
) -> tuple[dict[int, float], set[int]]:
    """Per view (by id), the wait an ideal client would see for the methods call (module
    docstring): a perfect token bucket, FIFO over every cold view's PANEL_PARTS calls and every
    runner's minimum; a view of a person whose read is queued waits for that read, one read
    less than ``cache_seconds`` before costs nothing. Also the ids of the views that read."""
    count, window = REPORTS_BUDGET
    rate = count / window
    demand = sorted(
        [(v.started, PANEL_PARTS, v) for v in views] + [(t, c, None) for t, c in runner_calls],
        key=lambda d: d[0],
    )
    tokens, clock = float(count), start
    read_at: dict[str, float] = {}  # when the person's last methods read was (or will be) granted
    waits: dict[int, float] = {}
    reads: set[int] = set()
    for at, calls, view in demand:
        if view is not None:
            read = read_at.get(view.oid)
            if read is not None and at < read:
                waits[id(view)] = read - at  # joins the queued read
                continue
            if read is not None and at - read < cache_seconds:
                waits[id(view)] = 0.0
                continue
        now = max(at, clock)
        tokens = min(float(count), tokens + (now - clock) * rate)
        clock = now
        granted = clock if tokens >= 1 else clock + (1 - tokens) / rate
        if view is not None:
            waits[id(view)] = granted - at
            read_at[view.oid] = granted
            reads.add(id(view))
        if tokens >= calls:
            tokens -= calls
        else:
            clock += (calls - tokens) / rate
            tokens = 0.0
    return waits, reads


# --- the run ---


def _ms(values: list[float], share: float) -> float:
    return round(percentile(values, share) * 1000, 1)


def _count_alone(stack: bench_stack.Stack, make: Any, runs: int) -> tuple[dict[str, float], float]:
    """Graph calls per request (by class) and p95 ms for ``runs`` sequential requests."""
    before = stack.counts()
    seconds = [make(i) for i in range(runs)]
    time.sleep(0.5)
    after = stack.counts()
    return (
        {k: round((after[k] - before[k]) / runs, 2) for k in ("reports", "identity", "429")},
        _ms(seconds, 0.95),
    )


def measure_posts_alone(stack: bench_stack.Stack, people: list[tuple[str, str]]) -> dict[str, Any]:
    """After the load: invalid and valid POSTs one at a time, Graph calls counted for each."""
    client = Client(stack.portal_port, stack.cookie(len(stack.agents) - 1))
    oid = people[0][0]
    form_url = f"/users/{oid}/actions/reregister/"
    _s, body, _h = client.request("GET", form_url)
    csrf, key = form_tokens(body)

    def invalid(_i: int) -> float:
        t = time.perf_counter()
        client.request(
            "POST",
            form_url,
            form={"csrfmiddlewaretoken": csrf, "idempotency_key": key, "reason": "x", "ticket": ""},
        )
        return time.perf_counter() - t

    invalid_calls, invalid_p95 = _count_alone(stack, invalid, 10)
    # Valid: revoke sessions for distinct people (one request per person, no repeat refusal).
    targets = [p[0] for p in people[1:11]]

    def valid(i: int) -> float:
        # A different agent each (PORTAL_AGENT_RATE_LIMIT is per agent and hour).
        poster = Client(stack.portal_port, stack.cookie(i % len(stack.agents)))
        url = f"/users/{targets[i]}/actions/revoke_sessions/"
        _s, page, _h = poster.request("GET", url)
        token, idem = form_tokens(page)
        before = stack.counts()
        t = time.perf_counter()
        status, _body, _h = poster.request(
            "POST",
            url,
            form={
                "csrfmiddlewaretoken": token,
                "idempotency_key": idem,
                "reason": "Caller reports a stolen laptop, sign out everywhere",
                "ticket": f"INC{2000000 + i}",
            },
        )
        seconds = time.perf_counter() - t
        poster.close()
        valid_status[status] = valid_status.get(status, 0) + 1
        valid_only.append({k: stack.counts()[k] - before[k] for k in ("reports", "identity")})
        return seconds

    valid_only: list[dict[str, int]] = []
    valid_status: dict[int, int] = {}
    _valid_incl_form, valid_p95 = _count_alone(stack, valid, len(targets))
    client.close()
    # The runner (Celery) may spend calls after the POST answered: count the POST alone.
    return {
        "invalid_calls": invalid_calls,
        "invalid_p95_ms": invalid_p95,
        "valid_calls": {
            k: round(statistics.fmean(v[k] for v in valid_only), 2) for k in ("reports", "identity")
        },
        "valid_p95_ms": valid_p95,
        "valid_statuses": valid_status,
    }


def runner_minimum(stack: bench_stack.Stack, t_from: float, t_to: float) -> list[tuple[float, int]]:
    """The action runners' stated minimum of reports calls in the window, from the emulator's
    log: per re-registered person, n deletes + list + re-list + (n > 0) the default-method read,
    placed at the first delete (or the re-list of a person with none)."""
    deletes: dict[str, list[float]] = defaultdict(list)
    for call in stack.events:
        if t_from <= call.at <= t_to and call.cls == "reports" and call.method == "DELETE":
            parts = call.path.split("/")
            if "users" in parts:
                deletes[parts[parts.index("users") + 1].lower()].append(call.at)
    return [(min(ts), len(ts) + 3) for ts in deletes.values()]


def action_request_statuses() -> dict[str, int]:
    """The run's action requests by kind and status, from the stack's database."""
    from django.db import connections

    from mfa.models import ActionRequest

    out: dict[str, int] = defaultdict(int)
    for kind, status in ActionRequest.objects.values_list("kind", "status"):
        out[f"{kind} {status}"] += 1
    connections.close_all()
    return dict(out)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with bench_stack.portal_stack(
        agents=args.agents,
        reports_budget=f"{REPORTS_BUDGET[0]}/{REPORTS_BUDGET[1]:g}",
        celery_worker=True,
        extra_env={"PORTAL_PERSON_CACHE_SECONDS": str(args.cache_seconds)},
    ) as stack:
        people = find_people(stack, args.people)
        # Let the bucket fill again after the setup's searches (identity) and sign-in.
        time.sleep(1)
        print(
            f"real budget: {args.agents} agents, {len(people)} people, warm-up "
            f"{args.warmup:.0f} s + {args.duration:.0f} s measured, a person every "
            f"{VIEW_EVERY_SECONDS[0]:.0f}-{VIEW_EVERY_SECONDS[1]:.0f} s per agent, one view in "
            f"{1 / ACTION_SHARE:.0f} -> an action; reports {REPORTS_BUDGET[0]}/"
            f"{REPORTS_BUDGET[1]:g} s (emulator and portal); person cache "
            f"{args.cache_seconds} s; gunicorn 2 sync workers + 1 Celery worker; {stack.database}",
            flush=True,
        )
        run_state = Run()
        times = ActionTimes()
        wall_start = time.time()
        start = time.monotonic()
        measured_from = start + args.warmup
        deadline = measured_from + args.duration
        hard_end = deadline + args.drain
        agent_client.HARD_END[0] = hard_end
        threads = [
            threading.Thread(
                target=agent_loop,
                kwargs={
                    "stack": stack,
                    "n": n,
                    "people": people,
                    "start": start,
                    "deadline": deadline,
                    "run": run_state,
                    "times": times,
                    "rng": random.Random(1000 + n),
                },
                daemon=True,
            )
            for n in range(args.agents)
        ]
        for thread in threads:
            thread.start()
        # Pull the emulator's log as we go (keeps its answers small).
        while any(t.is_alive() for t in threads + run_state.threads):
            time.sleep(5)
            stack.pull_events()
            if time.monotonic() > hard_end + 30:
                break
        elapsed = time.monotonic() - start
        stack.pull_events()
        to_wall = wall_start - start  # monotonic -> time.time()
        load_end = time.time()
        requests_by_status = action_request_statuses()
        stack.pause_worker(True)
        time.sleep(1.0)
        posts_alone = measure_posts_alone(stack, people)
        stack.pause_worker(False)
        events = [e for e in stack.events if e.at <= load_end]
        runner_all = runner_minimum(stack, wall_start, load_end)
        runner = runner_minimum(stack, measured_from + (wall_start - start), load_end)

    measured = [v for v in run_state.views if measured_from <= v.started < deadline]
    # Reports calls made for the measured views: everything from the window's start to the end
    # of the load, less the runners' stated minimum in that time.
    reports_in = [e for e in events if e.at >= measured_from + to_wall]
    reports_allowed = sum(1 for e in reports_in if e.cls == "reports" and e.allowed)
    refused = sum(1 for e in events if not e.allowed)
    rereg_requested = sum(
        n for k, n in times.outcomes.items() if k.startswith("reregister requested")
    )
    runner_calls = sum(c for _t, c in runner)
    views_n = len(measured)
    per_view = (reports_allowed - runner_calls) / views_n if views_n else float("nan")
    shells = [v.shell_s for v in measured if v.shell_s == v.shell_s]

    # A view whose methods panel was not filled by its give-up time (PANEL_GIVE_UP_SECONDS
    # after it opened, or the run's end) counts at that time: censored, a lower bound. The floor
    # is censored the same way, so that the ratio compares like with like.
    def censor(v: View) -> float:
        return float(min(PANEL_GIVE_UP_SECONDS, hard_end - v.started))

    def fill(v: View) -> float:
        return v.methods_fill_s if v.methods_fill_s == v.methods_fill_s else censor(v)

    unfilled = sum(1 for v in measured if v.methods_fill_s != v.methods_fill_s)
    fills_all = [fill(v) for v in measured]
    no_wait = [v.methods_fill_s for v in measured if not v.waited and v.methods_fill_s > 0]
    base = statistics.median(no_wait) if no_wait else 0.0
    runner_at = [(t - to_wall, c) for t, c in runner_all]
    floors, reads = budget_floor(
        run_state.views, runner_at, start=start, cache_seconds=float(args.cache_seconds)
    )

    # The portal's own time for a view: its fill time when it did not wait for the budget,
    # else the median of those (a view that waited has no own time apart from the wait).
    def own(v: View) -> float:
        filled = v.methods_fill_s == v.methods_fill_s
        return v.methods_fill_s if filled and not v.waited else base

    floor_values = [min(floors.get(id(v), 0.0) + own(v), censor(v)) for v in measured]
    cold = sum(1 for v in measured if id(v) in reads)
    floor_p95 = percentile(floor_values, 0.95)
    fill_p95 = percentile(fills_all, 0.95)
    # When more than 5% of the views are censored the p95 is a give-up time, not a wait: the
    # p95 ratio then says nothing (it tends to 1); the p50s are reported beside it.
    floor_censored = sum(1 for v, fv in zip(measured, floor_values, strict=True) if fv >= censor(v))
    p95_censored = unfilled > 0.05 * len(measured) or floor_censored > 0.05 * len(measured)
    floor_p50 = percentile(floor_values, 0.5)
    fill_p50 = percentile(fills_all, 0.5)
    per_agent: dict[int, list[float]] = defaultdict(list)
    per_agent_waited: dict[int, list[float]] = defaultdict(list)
    for v in measured:
        value = fill(v)
        per_agent[v.agent].append(value)
        if v.waited:
            per_agent_waited[v.agent].append(value)
    medians = [statistics.median(vs) for vs in per_agent.values() if vs]
    waited_medians = [statistics.median(vs) for vs in per_agent_waited.values() if len(vs) >= 2]
    # The same figure for the ideal client (the floor): its views that waited, per agent. Under
    # a saturated budget even a perfect first-come-first-served queue leaves agents whose views
    # came at the busiest moments waiting longer: this is that spread, beside the portal's.
    floor_waited: dict[int, list[float]] = defaultdict(list)
    for v, fv in zip(measured, floor_values, strict=True):
        if floors.get(id(v), 0.0) > 0:
            floor_waited[v.agent].append(fv)
    floor_medians = [statistics.median(vs) for vs in floor_waited.values() if len(vs) >= 2]
    shown = sum(v.shown_errors for v in measured) + times.shown_errors
    errors = [e for v in run_state.views for e in v.errors] + times.errors
    figures: dict[str, Any] = {
        "agents": args.agents,
        "people": len(people),
        "seconds": round(elapsed, 1),
        "warmup_s": args.warmup,
        "measured_s": args.duration,
        "cache_seconds": args.cache_seconds,
        "database": stack.database,
        "views": views_n,
        "views_waited": sum(1 for v in measured if v.waited),
        "fragments": sum(v.fragments for v in measured),
        "refetches": sum(v.refetches for v in measured),
        "searches": len(run_state.searches),
        "search_p95_ms": _ms(run_state.searches, 0.95),
        "actions": dict(times.outcomes),
        "requests_at_end": requests_by_status,
        "deletes_seen": sum(1 for e in events if e.method == "DELETE" and e.cls == "reports"),
        "reports_calls": reports_allowed,
        "runner_minimum_calls": runner_calls,
        "reregisters_requested": rereg_requested,
        "reports_per_view": round(per_view, 2),
        "cold_views": cold,
        "ideal_per_view": round(cold * PANEL_PARTS / views_n, 2) if views_n else float("nan"),
        "emulator_429": refused,
        "shell_p50_ms": _ms(shells, 0.5),
        "shell_p95_ms": _ms(shells, 0.95),
        "fill_p50_ms": _ms(fills_all, 0.5),
        "fill_p95_ms": round(fill_p95 * 1000, 1),
        "fill_unfilled": unfilled,
        "portal_fill_ms": round(base * 1000, 1),
        "floor_p95_ms": round(floor_p95 * 1000, 1),
        "fill_ratio": round(fill_p95 / floor_p95, 2) if floor_p95 > 0 else float("nan"),
        "floor_p50_ms": round(floor_p50 * 1000, 1),
        "fill_ratio_p50": round(fill_p50 / floor_p50, 2) if floor_p50 > 0 else float("nan"),
        "floor_censored": floor_censored,
        "p95_censored": p95_censored,
        "fairness_all": round(max(medians) / min(medians), 2) if medians else float("nan"),
        "fairness_waited": (
            round(max(waited_medians) / min(waited_medians), 2)
            if len(waited_medians) >= 2
            else float("nan")
        ),
        "fairness_agents_waited": len(waited_medians),
        "floor_fairness_waited": (
            round(max(floor_medians) / min(floor_medians), 2)
            if len(floor_medians) >= 2 and min(floor_medians) > 0
            else float("nan")
        ),
        "floor_fairness_agents": len(floor_medians),
        "invalid_post_n": len(times.invalid_post),
        "invalid_post_p95_ms": _ms(times.invalid_post, 0.95),
        "valid_post_n": len(times.valid_post),
        "valid_post_p95_ms": _ms(times.valid_post, 0.95),
        "form_get_p95_ms": _ms(times.form_get, 0.95),
        "posts_alone": posts_alone,
        "shown_429": shown,
        "errors": len(errors),
        "error_samples": errors[:8],
    }
    figures["goals"] = goals(figures)
    return figures


def main(
    *,
    description: str = (__doc__ or "").splitlines()[0],
    agents: int = AGENTS,
    people: int = PEOPLE,
    cache_seconds: int = CACHE_SECONDS,
) -> int:
    """Parse the command line (these defaults: bench/load_within_budget.py gives its own), run
    the load and print its figures."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--agents", type=int, default=agents)
    parser.add_argument("--duration", type=float, default=DURATION_SECONDS)
    parser.add_argument("--warmup", type=float, default=WARMUP_SECONDS)
    parser.add_argument("--drain", type=float, default=DRAIN_SECONDS)
    parser.add_argument("--people", type=int, default=people)
    parser.add_argument("--cache-seconds", type=int, default=cache_seconds)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if not 1 <= args.agents <= 200 or not 0 < args.duration <= 900:
        parser.error("keep it bounded: 1-200 agents, at most 900 s")
    figures = run(args)
    print_figures(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
