"""A tenant without Entra ID P2 (the emulator in P1 or free): person pages work, the tier comes
from active and group-held roles, and the portal learns "no PIM" once, from Graph's answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from accounts import capabilities
from entra_emulator.seed import GROUP_IDS, ROLE_ASSIGNABLE_GROUP
from graph import roles as graph_roles
from mfa import policy
from mfa.models import Tier
from portal.graph_client import get_graph_client
from tests.personas import PERSONAS, signed_in

pytestmark = pytest.mark.django_db

SAM = PERSONAS.standard_target
PRIYA = PERSONAS.privileged_target


@pytest.fixture(params=["p1", "free"])
def no_p2(request: pytest.FixtureRequest, fresh_tenant: Any) -> Iterator[Any]:
    """The shared emulator as a tenant without P2; P2 again afterwards (and no cached
    capabilities either way)."""
    fresh_tenant.throttle.configure(enabled=False)
    fresh_tenant.set_licence(request.param)
    capabilities.forget_capabilities()
    try:
        yield fresh_tenant
    finally:
        fresh_tenant.set_licence("p2")
        capabilities.forget_capabilities()


@pytest.fixture
def pim_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every eligibility-schedule read the portal makes (probe included), by principal."""
    calls: list[str] = []
    real = graph_roles.list_role_eligibility_schedules

    def counted(client: Any, **kwargs: Any) -> Any:
        calls.append(str(kwargs.get("principal_id") or kwargs.get("role_definition_id")))
        return real(client, **kwargs)

    monkeypatch.setattr(graph_roles, "list_role_eligibility_schedules", counted)
    return calls


def test_capabilities_say_no_pim_with_graphs_answer(no_p2: Any) -> None:
    found = capabilities.tenant_capabilities(get_graph_client())
    assert found.pim is False
    assert "P2" in found.pim_unavailable_reason
    assert "HTTP 400 AadPremiumLicenseRequired" in found.pim_unavailable_reason
    assert "AadPremiumLicenseRequired" in found.source
    assert found.licence == "unknown" and found.audit_retention_days == 7


def test_capabilities_in_p2(fresh_tenant: Any) -> None:
    capabilities.forget_capabilities()
    found = capabilities.tenant_capabilities(get_graph_client())
    assert found.pim is True and found.licence == "p2" and found.audit_retention_days == 30
    assert found.pim_unavailable_reason == ""


def test_tier_comes_from_active_and_group_roles(no_p2: Any, pim_calls: list[str]) -> None:
    client = get_graph_client()
    priya = policy.target_profile(client, PRIYA.oid, use_cache=False)
    assert priya.tier == Tier.PRIVILEGED
    assert {r.how for r in priya.roles} == {"active"}
    assert "Authentication Administrator" in {r.role_name for r in priya.roles}
    sam = policy.target_profile(client, SAM.oid, use_cache=False)
    assert sam.tier == Tier.STANDARD and sam.roles == ()
    member = sorted(no_p2.tenant.group_members[GROUP_IDS[ROLE_ASSIGNABLE_GROUP]])[0]
    through_group = policy.target_profile(client, member, use_cache=False)
    assert through_group.tier == Tier.PRIVILEGED
    assert any(r.how == "group" for r in through_group.roles)
    # One probe learnt "no PIM"; no person's eligibilities were asked for after it.
    assert len(pim_calls) == 1


def test_person_pages_work_without_p2(no_p2: Any) -> None:
    agent = signed_in(PERSONAS.agent)
    for persona, badge in ((PRIYA, "Privileged"), (SAM, "Standard")):
        response = agent.get(f"/users/{persona.oid}/")
        assert response.status_code == 200, response.content.decode()[:3000]
        body = response.content.decode()
        assert persona.display_name in body
        assert f'<span class="badge{" badge--priv" if badge == "Privileged" else ""}">{badge}' in (
            body
        )


def test_detection_is_cached_one_probe_for_many_pages(no_p2: Any, pim_calls: list[str]) -> None:
    agent = signed_in(PERSONAS.agent)
    for persona in (PRIYA, SAM, PRIYA):
        assert agent.get(f"/users/{persona.oid}/").status_code == 200
    assert capabilities.tenant_capabilities().pim is False
    assert len(pim_calls) == 1


def test_a_refusal_met_later_is_noted(no_p2: Any, pim_calls: list[str]) -> None:
    # The cache says PIM (learnt before the licence changed): the first refused read flips it.
    client = get_graph_client()
    no_p2.set_licence("p2")
    assert capabilities.tenant_capabilities(client, refresh=True).pim is True
    no_p2.set_licence("p1")
    profile = policy.target_profile(client, PRIYA.oid, use_cache=False)
    assert profile.tier == Tier.PRIVILEGED
    after = capabilities.tenant_capabilities(client)
    assert after.pim is False and "AadPremiumLicenseRequired" in after.pim_unavailable_reason
    calls = len(pim_calls)
    policy.target_profile(client, SAM.oid, use_cache=False)
    assert len(pim_calls) == calls


def test_search_marks_privileged_people_without_p2(no_p2: Any) -> None:
    """Search's privileged badges come from active and group-held roles when PIM is refused."""
    from django.core.cache import cache

    from mfa import search

    cache.delete(search._PRIVILEGED_KEY)
    ids = search.privileged_ids(get_graph_client())
    assert ids is not None, "Graph refused PIM and the search lost every badge"
    assert PRIYA.oid.lower() in ids and SAM.oid.lower() not in ids
    cache.delete(search._PRIVILEGED_KEY)
