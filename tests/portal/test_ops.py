"""/ops/: the Graph budget's operations view, Admin only, drawn from the budget's own Redis
state (no Graph call): now, who waits (by name), the last hour, 429s and pauses, and a chart."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from accounts.navigation import nav_items_for
from graph.budget import RequestBudget
from portal.devrun import free_port
from portal.graph_client import get_graph_client, reset_graph_client
from portal.ops import budget_chart
from tests.personas import PERSONAS, Persona, portal_user, signed_in

pytestmark = pytest.mark.django_db

URL = reverse("ops_budget")


@pytest.fixture
def small_budget() -> Iterator[RequestBudget]:
    """The portal client's budget with a reports class of 2 per 100 s (the tests' is wide)."""
    with override_settings(GRAPH_BUDGET_REPORTS="2/100"):
        reset_graph_client()
        try:
            yield get_graph_client().budget
        finally:
            reset_graph_client()


@pytest.mark.parametrize(
    "persona",
    [PERSONAS.agent, PERSONAS.privileged_agent, PERSONAS.lead, PERSONAS.outsider],
    ids=lambda p: p.key,
)
def test_the_page_refuses_everyone_but_admins(persona: Persona) -> None:
    assert signed_in(persona).get(URL).status_code == 403


def test_the_page_sends_anonymous_people_to_sign_in() -> None:
    response = Client().get(URL)
    assert response.status_code == 302 and "/oauth2/login" in response["Location"]


def test_only_admins_see_the_link() -> None:
    for role, shown in (("Agent", False), ("Lead", False), ("Admin", True)):
        urls = [link.url for link in nav_items_for({role})]
        assert (URL in urls) is shown, role


def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the operations view must not call Graph")


def test_admin_sees_use_waiters_by_name_429s_and_pauses(
    small_budget: RequestBudget, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = portal_user(PERSONAS.agent)  # the portal knows the agent's name
    small_budget.acquire("reports", fair_key=agent.username, tokens=2)
    # Two pages wait their turn: the agent's, and one of an oid the portal has never seen.
    assert not small_budget.try_acquire("reports", fair_key=agent.username, hold_seconds=60)
    assert not small_budget.try_acquire("reports", fair_key="unknown-oid", hold_seconds=60)
    small_budget.record_pause("identity", 0.5)
    small_budget.record_pause("identity", 0.2)  # within the first pause: a 429, no new pause
    monkeypatch.setattr("graph.client.GraphClient._send", _never)

    response = signed_in(PERSONAS.admin).get(URL)
    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    body = response.content.decode()
    reports = _section(body, "reports")
    assert 'data-stalled="false"' in reports
    assert re.search(r'data-now="waiting">\s*0 action, 2 interactive, 0 bulk, 0 sync', reports)
    assert f'data-waiter="{agent.username}"' in reports
    assert PERSONAS.agent.display_name in reports
    assert 'data-waiter="unknown-oid"' in reports
    assert re.search(r'data-hour="used">2<', reports)
    assert len(re.findall(r"<rect [^>]*data-bar", reports)) == 1  # one minute, interactive
    identity = _section(body, "identity")
    assert re.search(r'data-hour="throttled">2<', identity)
    assert re.search(r'data-hour="pauses">1<', identity)
    assert len(re.findall(r"<rect [^>]*data-throttled", identity)) == 1


def test_a_stalled_class_is_marked(small_budget: RequestBudget, settings: Any) -> None:
    settings.GRAPH_BUDGET_STALL_SECONDS = 30
    small_budget.record_pause("reports", 60)
    body = signed_in(PERSONAS.admin).get(URL).content.decode()
    assert 'data-stalled="true"' in _section(body, "reports")
    assert 'data-badge="stalled"' in _section(body, "reports")
    assert 'data-stalled="false"' in _section(body, "identity")


def test_redis_down_is_said_plainly(settings: Any) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    reset_graph_client()
    try:
        response = signed_in(PERSONAS.admin).get(URL)
    finally:
        reset_graph_client()
    assert response.status_code == 503
    assert "data-ops-error" in response.content.decode()


def test_the_chart_stacks_priorities_to_scale_and_marks_429s() -> None:
    def minute(at: int, interactive: int, bulk: int, throttled: int = 0) -> dict[str, Any]:
        by = {
            "action": {"used": 0},
            "interactive": {"used": interactive},
            "bulk": {"used": bulk},
            "sync": {"used": 0},
        }
        return {"at": at, "used": interactive + bulk, "throttled": throttled, "by_priority": by}

    chart = budget_chart([minute(0, 10, 5), minute(60, 0, 0, throttled=3)], per_minute=30)
    assert chart.top == 30
    interactive, bulk = chart.bars
    assert interactive.height == pytest.approx(2 * bulk.height)
    assert bulk.y + bulk.height == pytest.approx(interactive.y)  # stacked on top
    # 15 of 30 a minute: half the plot's height; the budget's line at the top.
    plot = chart.height - 8
    assert interactive.height + bulk.height == pytest.approx(plot / 2)
    assert chart.limit_y == 0
    assert [m.x for m in chart.marks] == [chart.width / 2]
    # Use above the budget (a burst at start, a refilled bucket) raises the scale, never clips.
    assert budget_chart([minute(0, 45, 0)], per_minute=30).top == 45


def _section(body: str, cls: str) -> str:
    match = re.search(rf'<section[^>]*data-budget-class="{cls}".*?</section>', body, re.S)
    assert match, f"no section for {cls}"
    return match.group(0)
