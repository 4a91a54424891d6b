"""/roles/ in a tenant without Entra ID P2 (the emulator in P1): the page says that eligible
assignments are unavailable and why, reads no PIM, offers no eligible or time-bound option, and
refuses one posted anyway without changing anything."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts import capabilities
from outbox.errors import InvalidRequest
from roles import catalog, services
from roles.forms import new_idempotency_key
from roles.holders import read_role_holders
from roles.models import HoldKind, RoleChange, RoleChangeRequest, RoleHolderSnapshot
from tests.personas import PERSONAS, portal_user, signed_in
from tests.roles.role_changes import holders_page

pytestmark = pytest.mark.django_db(transaction=True)

SAM = PERSONAS.standard_target


@pytest.fixture
def p1(fresh_tenant: Any) -> Iterator[Any]:
    fresh_tenant.throttle.configure(enabled=False)
    fresh_tenant.set_licence("p1")
    capabilities.forget_capabilities()
    try:
        yield fresh_tenant
    finally:
        fresh_tenant.set_licence("p2")
        capabilities.forget_capabilities()


def _eligibilities_of(server: Any, principal_id: str) -> list[dict[str, Any]]:
    return [
        s
        for s in server.tenant.eligibility_schedules.values()
        if s["principalId"].lower() == principal_id.lower()
    ]


def test_holders_are_read_without_pim(p1: Any) -> None:
    from portal.graph_client import get_graph_client

    holders = read_role_holders(get_graph_client())
    assert "AadPremiumLicenseRequired" in holders.pim_unavailable
    every = [h for name in catalog.ROLES_SHOWN for h in holders.of(name)]
    assert every and {h.how for h in every} == {"active"}
    assert all(h.end is None for h in every)


def test_roles_page_explains_and_shows_only_active(p1: Any, celery_worker: Any) -> None:
    ana = signed_in(PERSONAS.admin)
    body = holders_page(ana)
    assert "data-pim-unavailable" in body
    assert "Eligible assignments are unavailable" in body
    assert "Microsoft Entra ID P2" in body and "AadPremiumLicenseRequired" in body
    assert 'data-how="eligible"' not in body
    snapshot = RoleHolderSnapshot.objects.filter(state=RoleHolderSnapshot.State.DONE).first()
    assert snapshot is not None and snapshot.holders["pim_unavailable"]


def test_add_form_offers_no_eligible_or_time_bound_option(p1: Any) -> None:
    ana = signed_in(PERSONAS.admin)
    page = ana.get(reverse("roles:role_add") + "?role=Authentication+Administrator")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'value="active_permanent"' in html
    assert 'value="eligible_until"' not in html and 'value="active_until"' not in html
    assert 'name="ends_on"' not in html
    assert "data-pim-unavailable" in html and "AadPremiumLicenseRequired" in html


@pytest.mark.parametrize("kind", [HoldKind.ELIGIBLE_UNTIL, HoldKind.ACTIVE_UNTIL])
def test_posting_an_eligible_change_anyway_is_refused(p1: Any, kind: str) -> None:
    ana = signed_in(PERSONAS.admin)
    add_url = reverse("roles:role_add")
    page = ana.get(add_url + "?role=Authentication+Administrator")
    before = _eligibilities_of(p1, SAM.oid)
    audits = len(p1.tenant.audit_events)
    response = ana.post(
        add_url,
        {
            "principal": f"user:{SAM.oid}",
            "role": catalog.AUTH_ADMIN,
            "kind": kind,
            "ends_on": (timezone.localdate() + timedelta(days=6)).isoformat(),
            "justification": "Covers the MFA desk during the migration.",
            "ticket": "INC0012345",
            "idempotency_key": page.context["form"].initial["idempotency_key"],
        },
    )
    assert response.status_code == 200
    assert "Eligible and time-bound assignments are unavailable" in response.content.decode()
    assert RoleChangeRequest.objects.count() == 0
    assert _eligibilities_of(p1, SAM.oid) == before
    assert len(p1.tenant.audit_events) == audits


@pytest.mark.parametrize("kind", [HoldKind.ELIGIBLE_UNTIL, HoldKind.ACTIVE_UNTIL])
def test_the_service_refuses_pim_kinds_without_pim(p1: Any, kind: str) -> None:
    before = _eligibilities_of(p1, SAM.oid)
    with pytest.raises(InvalidRequest) as refused:
        services.role_change_create(
            requester=portal_user(PERSONAS.admin),
            change=RoleChange.ADD,
            role_name=catalog.AUTH_ADMIN,
            principal_id=SAM.oid,
            principal_type="user",
            hold_kind=kind,
            ends_at=timezone.now() + timedelta(days=6),
            justification="Joins the identity operations rota.",
            ticket="INC0012345",
            idempotency_key=new_idempotency_key(),
        )
    assert "Microsoft Entra ID P2" in refused.value.message
    assert "active, permanent" in refused.value.message
    assert RoleChangeRequest.objects.count() == 0
    assert _eligibilities_of(p1, SAM.oid) == before


def test_an_active_permanent_holder_can_still_be_added(p1: Any) -> None:
    row = services.role_change_create(
        requester=portal_user(PERSONAS.admin),
        change=RoleChange.ADD,
        role_name=catalog.AUTH_ADMIN,
        principal_id=SAM.oid,
        principal_type="user",
        hold_kind=HoldKind.ACTIVE_PERMANENT,
        justification="Joins the identity operations rota.",
        ticket="INC0012345",
        idempotency_key=new_idempotency_key(),
    )
    assert row.hold_kind == HoldKind.ACTIVE_PERMANENT
