"""Point 5 of issue 12: fast POSTs of the action forms, counted in Graph calls (not timed; the
times are bench/'s).

A submit that fails validation makes no Graph call: the form is validated against what the form's
GET already read (the cached profile, the cached TAP policy, the person cache's methods). A valid
submit reads only the person's profile afresh (the tier decides the approval), which is
identity-class: for Sam Standard (no groups, no roles) 7 calls: the user, the manager,
transitiveMemberOf, roleAssignments, roleEligibilitySchedules, and the portal app's roles and
appRoleAssignedTo. No reports-class call on any POST: the runner reads methods and MFA state
fresh itself, before it writes.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from graph.budget import IDENTITY, REPORTS
from mfa.models import ActionKind, ActionRequest
from tests.mfa.graph_calls import counting_graph_calls
from tests.personas import PERSONAS, signed_in

pytestmark = pytest.mark.django_db

SAM = PERSONAS.standard_target
VALID_POST_IDENTITY_CALLS = 7
EVIDENCE = "Video call: face matched the HR photo, passport shown to camera."
REASON = "Caller lost their phone and needs to register again."

# Per kind: the fields of a valid submit besides reason, ticket and key.
KINDS: dict[str, dict[str, str]] = {
    ActionKind.REREGISTER: {"revoke_sessions": "on"},
    ActionKind.REVOKE_SESSIONS: {},
    ActionKind.ISSUE_TAP: {"lifetime_minutes": "60", "usable_once": "on"},
    ActionKind.SET_MFA_STATE: {"state": "enforced"},
    ActionKind.DELETE_METHOD: {},
}


@pytest.fixture(autouse=True)
def _tenant(tenant: Any) -> Any:
    return tenant


def _verified_agent() -> Client:
    ada = signed_in(PERSONAS.agent)
    response = ada.post(
        f"/users/{SAM.oid}/verify/manual/",
        {"check": settings.PORTAL_MANUAL_CHECKS[0], "evidence": EVIDENCE},
    )
    assert response.status_code == 302
    return ada


def _open_form(client: Client, kind: str) -> tuple[str, dict[str, str]]:
    """GET the form (as an agent does before submitting): its url and valid fields."""
    url = f"/users/{SAM.oid}/actions/{kind}/"
    html = client.get(url).content.decode()
    key = re.search(r'name="idempotency_key" value="([^"]+)"', html)
    assert key, html[:2000]
    fields = dict(KINDS[kind])
    if kind == ActionKind.DELETE_METHOD:
        method = re.search(r'name="method_id" value="([^"]+)"', html)
        assert method, html[:3000]
        fields["method_id"] = method.group(1)
    return url, {
        "reason": REASON,
        "ticket": "INC0012345",
        "idempotency_key": key.group(1),
        **fields,
    }


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize(
    "spoil",
    [
        {"reason": "short"},
        {"ticket": "ticket 5"},
        {"idempotency_key": "!"},
        {"confirm_repeat": "on", "repeat_reason": ""},
    ],
)
def test_a_submit_that_fails_validation_makes_no_graph_call(
    kind: str, spoil: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = _verified_agent()
    url, data = _open_form(ada, kind)
    with counting_graph_calls(monkeypatch) as calls:
        response = ada.post(url, {**data, **spoil})
    assert response.status_code == 400, response.content.decode()[:2000]
    assert calls.seen == []
    assert not ActionRequest.objects.exists()


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_valid_submit_makes_only_the_identity_reads_of_the_fresh_profile(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ada = _verified_agent()
    url, data = _open_form(ada, kind)
    with counting_graph_calls(monkeypatch) as calls:
        response = ada.post(url, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert ActionRequest.objects.filter(kind=kind, target_id=SAM.oid).count() == 1
    assert calls.of(REPORTS) == []
    assert calls.by_class()[IDENTITY] == VALID_POST_IDENTITY_CALLS, calls.seen
    paths = [path for _, path in calls.of(IDENTITY)]
    assert f"/v1.0/users/{SAM.oid}" in paths  # the profile really was read afresh


def test_a_delete_method_submit_reads_the_methods_only_when_the_cache_lost_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The methods to choose from come from the person cache the form's GET filled; once it is
    forgotten (Refresh, an Entra event), the next submit reads them: one reports-class call."""
    from mfa import person_cache

    ada = _verified_agent()
    url, data = _open_form(ada, ActionKind.DELETE_METHOD)
    person_cache.forget(SAM.oid)
    with counting_graph_calls(monkeypatch) as calls:
        response = ada.post(url, {**data, "reason": "short"})
    assert response.status_code == 400
    assert [p for _, p in calls.of(REPORTS)] == [f"/v1.0/users/{SAM.oid}/authentication/methods"]
    assert calls.of(IDENTITY) == []


@pytest.mark.parametrize("valid", [False, True])
def test_a_submit_long_after_the_form_reads_the_profile_once(
    valid: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller's verification took longer than PORTAL_TARGET_CACHE_SECONDS: the profile is no
    longer cached. The submit reads it once (fresh when valid), never twice. An invalid one
    reads the profile with the portal roles' shared map (roles.holders.read_portal_roles_shared,
    read when the form was opened): two calls fewer than the fresh read."""
    from mfa.policy import target_profile_forget

    ada = _verified_agent()
    url, data = _open_form(ada, ActionKind.REREGISTER)
    target_profile_forget(SAM.oid)
    with counting_graph_calls(monkeypatch) as calls:
        response = ada.post(url, data if valid else {**data, "reason": "short"})
    assert response.status_code == (302 if valid else 400)
    assert calls.of(REPORTS) == []
    expected = VALID_POST_IDENTITY_CALLS if valid else VALID_POST_IDENTITY_CALLS - 2
    assert calls.by_class()[IDENTITY] == expected, calls.seen
