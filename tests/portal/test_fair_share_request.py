"""The request path draws the Graph budget as the signed-in agent: every Graph call made while
serving an agent's request carries the agent's Entra object id as its fair key, so agents are
served round-robin (graph/budget.py); calls outside a request carry none."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from graph.budget import RequestBudget
from portal.graph_client import (
    AgentFairShareMiddleware,
    acting_for,
    get_graph_client,
    graph_client_for,
)
from tests.personas import PERSONAS, portal_user, signed_in


@pytest.fixture
def fair_keys(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The fair key of every budget acquire in this process, in order."""
    seen: list[str | None] = []
    real = RequestBudget.acquire

    def spy(self: RequestBudget, *args: Any, **kwargs: Any) -> None:
        seen.append(kwargs.get("fair_key"))
        real(self, *args, **kwargs)

    monkeypatch.setattr(RequestBudget, "acquire", spy)
    return seen


@pytest.mark.django_db
def test_the_middleware_makes_the_process_client_the_agents_view() -> None:
    agent = portal_user(PERSONAS.agent)
    request = RequestFactory().get("/")
    request.user = agent
    inside: list[str | None] = []

    def view(request: HttpRequest) -> HttpResponse:
        inside.append(get_graph_client().fair_key)
        inside.append(get_graph_client().with_priority("bulk").fair_key)
        return HttpResponse()

    AgentFairShareMiddleware(view)(request)
    assert inside == [agent.username, agent.username]
    assert get_graph_client().fair_key is None  # outside the request again
    assert graph_client_for(request).fair_key == agent.username
    with acting_for("someone"):
        assert get_graph_client().fair_key == "someone"
    assert get_graph_client().fair_key is None


def test_an_anonymous_request_has_no_fair_key() -> None:
    # No django_db mark: an anonymous request must not touch the database.
    request = RequestFactory().get("/healthz")
    request.user = AnonymousUser()
    assert graph_client_for(request).fair_key is None
    AgentFairShareMiddleware(lambda r: HttpResponse())(request)


@pytest.mark.django_db(transaction=True)
def test_an_agents_search_draws_the_budget_as_that_agent(
    emulator: Any, fair_keys: list[str | None]
) -> None:
    """Through the real middleware stack (settings.MIDDLEWARE) and a real Graph call."""
    response = signed_in(PERSONAS.agent).get("/users/", {"q": "Sam"})
    assert response.status_code == 200
    assert fair_keys, "the search made no Graph call"
    assert set(fair_keys) == {PERSONAS.agent.oid}
