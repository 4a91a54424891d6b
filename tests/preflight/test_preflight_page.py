"""/preflight/: Admin only; a GET shows the last run and never calls Graph, the button (POST,
CSRF) runs the checks and shows them."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from accounts.navigation import nav_items_for
from preflight import checks, permissions
from preflight.results import last_report
from tests.personas import PERSONAS, Persona, portal_user, signed_in
from tests.preflight.preflight_helpers import REAL_BUDGET, control

pytestmark = pytest.mark.django_db

URL = reverse("preflight:tenant_check")


@pytest.mark.parametrize(
    "persona",
    [PERSONAS.agent, PERSONAS.privileged_agent, PERSONAS.lead, PERSONAS.outsider],
    ids=lambda p: p.key,
)
def test_the_page_refuses_everyone_but_admins(persona: Persona, monkeypatch: Any) -> None:
    monkeypatch.setattr("preflight.views.run_checks", _never)
    client = signed_in(persona)
    assert client.get(URL).status_code == 403
    assert client.post(URL).status_code == 403
    assert last_report() is None


def test_the_page_sends_anonymous_people_to_sign_in() -> None:
    response = Client().get(URL)
    assert response.status_code == 302 and "/oauth2/login" in response["Location"]


def test_only_admins_see_the_link() -> None:
    for role, shown in (("Agent", False), ("Lead", False), ("Admin", True)):
        urls = [link.url for link in nav_items_for({role})]
        assert (URL in urls) is shown, role


def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a GET must not run the checks")


def test_a_get_calls_no_graph(monkeypatch: Any) -> None:
    monkeypatch.setattr("preflight.views.run_checks", _never)
    monkeypatch.setattr(checks, "preflight_client", _never)
    body = signed_in(PERSONAS.admin).get(URL).content.decode()
    assert 'data-report-status="none"' in body and "Run the checks now" in body


def test_the_button_needs_csrf() -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(portal_user(PERSONAS.admin))
    assert client.post(URL).status_code == 403
    assert last_report() is None


def test_admin_runs_the_checks_and_sees_the_results(emulator_app: Any) -> None:
    granted = [p for p in permissions.needed_permissions() if p != "AuditLog.Read.All"]
    control(emulator_app, "app", {"application_permissions": granted})
    client = signed_in(PERSONAS.admin)
    with override_settings(**REAL_BUDGET):
        response = client.post(URL, HTTP_HOST="127.0.0.1:8000")
    assert response.status_code == 302 and response["Location"] == URL
    body = re.sub(r"\s+", " ", client.get(URL).content.decode())
    assert 'data-report-status="fail"' in body
    assert 'data-check="permissions" data-check-status="fail"' in body
    assert "MISSING AuditLog.Read.All" in body
    assert "Grant admin consent for the tenant" in body
    # The callback URL came from the request (the loopback port is ignored, as Entra does).
    assert 'data-check="redirect_uri" data-check-status="pass"' in body
    assert "http://127.0.0.1:8000/oauth2/callback: registered" in body
    report = last_report()
    assert report is not None and report.by == PERSONAS.admin.upn
    # The page shows the kept run again without calling Graph.
    control(emulator_app, "faults", {"token_endpoint_down": True})
    assert "MISSING AuditLog.Read.All" in client.get(URL).content.decode()
