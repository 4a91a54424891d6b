"""A waiting panel's place in the budget's queue (issue 12's fairness and budget use).

Each waiting panel holds its own place (one per person and panel, so each keeps its age); a
panel that is then filled from the per-person cache (another agent's read filled it) gives its
place up at once, instead of holding a token nobody will take until the hold lapses, which left
the budget idle while others waited; and a panel next in the queue asks again just after the
estimate, since the token it is owed waits unused for it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from graph.budget import REPORTS
from mfa import panels, person_cache
from portal.graph_client import get_graph_client
from tests.personas import PERSONAS, signed_in

pytestmark = pytest.mark.django_db

SAM = PERSONAS.standard_target


def _panel(client: Client, name: str) -> str:
    path, _, query = name.partition("?")
    url = f"/users/{SAM.oid}/panels/{path}/" + (f"?{query}" if query else "")
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return str(response.content.decode())


def _holds() -> list[dict[str, Any]]:
    waiters = get_graph_client().budget.snapshot()["classes"][REPORTS]["waiters"]
    return [w for w in waiters if w["priority"] == "interactive"]


def test_a_panel_filled_from_the_cache_gives_its_place_up(tenant: Any) -> None:
    agent = signed_in(PERSONAS.agent)
    budget = get_graph_client().budget
    budget.record_pause(REPORTS, 5)
    waiting = _panel(agent, "methods")
    assert 'data-panel-state="waiting"' in waiting
    mfa_waiting = _panel(agent, "mfa")
    assert 'data-panel-state="waiting"' in mfa_waiting
    # Both panels hold a place of their own under the agent's key.
    assert [(w["key"].lower(), w["calls"]) for w in _holds()] == [(PERSONAS.agent.oid.lower(), 2)]
    # Another read fills the cache (as another agent's would), once the pause is over.
    budget._redis.delete(budget._keys(REPORTS)[1])
    person_cache.load(get_graph_client(), SAM.oid, parts=person_cache.PARTS)
    assert 'data-panel-state="filled"' in _panel(agent, "methods")
    # The methods panel's place is given up; the MFA panel still holds its own.
    assert [w["calls"] for w in _holds()] == [1]
    assert 'data-panel-state="filled"' in _panel(agent, "mfa")
    assert _holds() == []


def test_the_head_of_the_queue_asks_again_just_after_the_estimate() -> None:
    head = panels._waiting(2.4, 1)
    assert head.seconds == 3 and head.retry_seconds == 2.5
    assert panels._waiting(0.05, 1).retry_seconds == panels.HEAD_RETRY_SECONDS
    # Further back: about half the estimate (the wait shortens as the queue moves), bounded.
    assert panels._waiting(40, 6).retry_seconds == 20
    assert panels._waiting(400, 60).retry_seconds == panels.MAX_RETRY_SECONDS
    assert panels.HOLD_SECONDS > panels.MAX_RETRY_SECONDS
    assert re.fullmatch(r"[\d.]+", f"{head.retry_seconds:g}")


def test_the_methods_show_while_only_the_default_method_waits(tenant: Any) -> None:
    """The methods were read and the default method's read waits for the budget: the panel
    shows the methods now ("partial"), says the default mark waits, and asks again."""
    agent = signed_in(PERSONAS.agent)
    person_cache.load(get_graph_client(), SAM.oid, parts=[person_cache.METHODS])
    get_graph_client().budget.record_pause(REPORTS, 5)
    html = _panel(agent, "methods?default=1")
    assert 'data-panel-state="partial"' in html
    # It asks again for the same: the methods with the default.
    assert f'data-panel-url="/users/{SAM.oid}/panels/methods/?default=1"' in html
    assert "Authenticator app" in html
    assert "The default method: waiting for Graph's budget" in " ".join(html.split())
    assert re.search(r'data-retry-after="[\d.]+"', html)
    assert "data-default-method" not in html
