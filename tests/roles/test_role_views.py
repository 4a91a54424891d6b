"""The /roles/ pages: Admin-only (the persona matrix), what the list shows, and the forms'
refusals and decisions as a person meets them. Real emulator, real worker."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from outbox.states import Status
from portal.graph_client import get_graph_client
from roles import catalog, holders, services
from roles.models import RoleChangeRequest, RoleHolderSnapshot
from tests.personas import PERSONAS, Persona, portal_user, signed_in
from tests.roles.role_changes import holders_page, wait_final
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

SOME_ID = str(uuid.uuid4())
GET_URLS = [
    reverse("roles:directory_roles"),
    reverse("roles:role_add"),
    reverse("roles:role_principals") + "?q=sam",
    reverse("roles:role_remove") + f"?role=Authentication+Administrator&principal={SOME_ID}"
    "&how=active",
    reverse("roles:role_change_detail", args=[SOME_ID]),
]
POST_URLS = [
    reverse("roles:roles_refresh"),
    reverse("roles:role_add"),
    reverse("roles:role_change_decide", args=[SOME_ID]),
    reverse("roles:role_change_cancel", args=[SOME_ID]),
]


@pytest.mark.parametrize(
    "persona",
    [PERSONAS.agent, PERSONAS.privileged_agent, PERSONAS.lead, PERSONAS.outsider],
    ids=lambda p: p.key,
)
def test_role_pages_refuse_everyone_but_admins(persona: Persona) -> None:
    client = signed_in(persona)
    for url in GET_URLS:
        assert client.get(url).status_code == 403, url
    for url in POST_URLS:
        assert client.post(url).status_code == 403, url
    assert RoleHolderSnapshot.objects.count() == 0 and RoleChangeRequest.objects.count() == 0


def test_role_pages_send_anonymous_people_to_sign_in() -> None:
    client = Client()
    for url in GET_URLS:
        response = client.get(url)
        assert response.status_code == 302 and "/oauth2/login" in response["Location"], url
    for url in POST_URLS:
        assert client.post(url).status_code == 302, url


def test_admin_sees_every_holder_and_how_they_hold_it(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    portal_user(PERSONAS.privileged_agent)  # Aaron has signed in: he is a portal agent
    client = signed_in(PERSONAS.admin)
    body = client.get(reverse("roles:directory_roles")).content.decode()
    assert "Reading the holders from Entra" in body  # first visit: a read is queued at once
    body = holders_page(client)
    for role in catalog.ROLES_SHOWN:
        assert f'data-role="{role}"' in body
    assert "Aaron Agent" in body and "Agent</span>" in body  # PAA holder, portal agent too
    assert "Ana Admin" in body and "Abel Admin" in body  # Privileged Role Administrators
    assert "Read-only" in body
    # Global Administrator is read-only: no remove button and no add link for it.
    assert "Add a holder of Global Administrator" not in body
    assert "role=Global+Administrator" not in body and "role=Global%20Administrator" not in body
    assert "Add a holder of Privileged Authentication Administrator" in body


def test_remove_form_explains_the_last_paa_guard(fresh_tenant: Any, celery_worker: Any) -> None:
    ana = signed_in(PERSONAS.admin)
    client = get_graph_client()
    active = [h for h in holders.read_role(client, catalog.PAA) if h.how == "active"]
    first, second = active
    ana.get(reverse("roles:directory_roles"))
    holders_page(ana)
    url = (
        reverse("roles:role_remove")
        + f"?role=Privileged+Authentication+Administrator&principal={first.principal_id}&how=active"
    )
    page = ana.get(url)
    assert page.status_code == 200
    key = page.context["form"].initial["idempotency_key"]
    response = ana.post(url, {"justification": "Moved to another team.", "idempotency_key": key})
    assert response.status_code == 302
    row = RoleChangeRequest.objects.get()
    row = wait_final(row)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)

    holders_page(ana)
    url = (
        reverse("roles:role_remove")
        + f"?role=Privileged+Authentication+Administrator&principal={second.principal_id}"
        "&how=active"
    )
    page = ana.get(url)
    key = page.context["form"].initial["idempotency_key"]
    response = ana.post(url, {"justification": "Moved to another team.", "idempotency_key": key})
    assert response.status_code == 200
    text = response.content.decode()
    assert "data-refused" in text and "reset an administrator&#x27;s MFA" in text
    assert RoleChangeRequest.objects.count() == 1


def test_the_requester_cannot_approve_in_the_page(fresh_tenant: Any, celery_worker: Any) -> None:
    ana_user = portal_user(PERSONAS.admin)
    row = services.role_change_create(
        requester=ana_user,
        change="add",
        role_name=catalog.PRA,
        principal_id=PERSONAS.lead.oid,
        principal_type="user",
        hold_kind="active_permanent",
        justification="Covers role administration during the audit.",
        ticket="REQ-4567",
        idempotency_key=uuid.uuid4().hex,
    )
    assert row.status == Status.AWAITING_APPROVAL
    ana = signed_in(PERSONAS.admin)
    detail = ana.get(reverse("roles:role_change_detail", args=[row.public_id]))
    assert b"data-own-change" in detail.content and b'value="approve"' not in detail.content
    decide = reverse("roles:role_change_decide", args=[row.public_id])
    page = ana.post(decide, {"decision": "approve", "comment": ""}, follow=True)
    assert "your own change" in page.content.decode()
    row.refresh_from_db()
    assert row.status == Status.AWAITING_APPROVAL

    abel = signed_in(PERSONAS.other_admin)
    detail = abel.get(reverse("roles:role_change_detail", args=[row.public_id]))
    assert b'value="approve"' in detail.content
    abel.post(decide, {"decision": "approve", "comment": "Agreed with the CISO."})
    row = wait_final(row)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)
    fragment = abel.get(
        reverse("roles:role_change_detail", args=[row.public_id]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'id="change-status"' in fragment and "hx-trigger" not in fragment  # polling stops


def _section(body: str, role: str) -> str:
    start = body.index(f'data-role="{role}"')
    return body[start : body.index("</section>", start)]


def _holder_row(body: str, role: str, principal_id: str, how: str) -> str:
    section = _section(body, role)
    start = section.index(f'data-holder="{principal_id}" data-how="{how}"')
    return section[start : section.index("</tr>", start)]


def test_admin_adds_an_active_holder_until_a_date_and_sees_the_end(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    ana = signed_in(PERSONAS.admin)
    sam = PERSONAS.standard_target
    add_url = reverse("roles:role_add")
    page = ana.get(add_url + "?role=Authentication+Administrator")
    assert page.status_code == 200
    assert b"data-active-until-unsupported" not in page.content
    assert b'value="active_until"' in page.content
    ends_on = (timezone.localdate() + timedelta(days=6)).isoformat()
    response = ana.post(
        add_url,
        {
            "principal": f"user:{sam.oid}",
            "role": catalog.AUTH_ADMIN,
            "kind": "active_until",
            "ends_on": ends_on,
            "justification": "Covers the MFA desk during the migration.",
            "ticket": "INC0012345",
            "idempotency_key": page.context["form"].initial["idempotency_key"],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    row = RoleChangeRequest.objects.get()
    assert row.hold_kind == "active_until" and row.ends_at is not None
    row = wait_final(row)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)

    body = holders_page(ana, needle=f'data-holder="{sam.oid}"')
    cells = _holder_row(body, catalog.AUTH_ADMIN, sam.oid, "active")
    assert "until a date (PIM)" in cells and "data-expiring" in cells
    shown = timezone.localtime(row.ends_at)
    assert f"{shown:%-d %b %Y %H:%M}" in cells
    assert 'data-warning="expiring"' in body
    assert "Sam Standard&#x27;s active assignment of Authentication Administrator" in body
    # Its removal page names the end, and removing it goes through PIM.
    remove_url = (
        reverse("roles:role_remove")
        + f"?role=Authentication+Administrator&principal={sam.oid}&how=active"
    )
    assert f"until {shown:%-d %b %Y %H:%M} (PIM)" in ana.get(remove_url).content.decode()


def test_an_admin_sees_why_instead_of_remove_on_their_own_row(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    ana = signed_in(PERSONAS.admin)
    body = holders_page(ana, needle="Abel Admin")
    own = _holder_row(body, catalog.PRA, PERSONAS.admin.oid, "active")
    assert "data-remove-refused" in own and "Your own role" in own
    assert "roles/remove" not in own and reverse("roles:role_remove") not in own
    other = _holder_row(body, catalog.PRA, PERSONAS.other_admin.oid, "active")
    assert reverse("roles:role_remove") in other and "data-remove-refused" not in other
    # And the other way round for Abel.
    abel = signed_in(PERSONAS.other_admin)
    body = holders_page(abel, needle="Ana Admin")
    assert "Your own role" in _holder_row(body, catalog.PRA, PERSONAS.other_admin.oid, "active")
    assert reverse("roles:role_remove") in _holder_row(
        body, catalog.PRA, PERSONAS.admin.oid, "active"
    )
    # The service refuses what the page does not offer.
    url = (
        reverse("roles:role_remove")
        + f"?role=Privileged+Role+Administrator&principal={PERSONAS.admin.oid}&how=active"
    )
    page = ana.get(url)
    response = ana.post(
        url,
        {
            "justification": "Trying to remove my own role.",
            "idempotency_key": page.context["form"].initial["idempotency_key"],
        },
    )
    assert "own directory roles" in response.content.decode()
    assert RoleChangeRequest.objects.count() == 0


def test_the_last_active_paa_holder_shows_why_instead_of_remove(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    client = get_graph_client()
    active = [h for h in holders.read_role(client, catalog.PAA) if h.how == "active"]
    assert len(active) == 2
    first, second = active
    ana = signed_in(PERSONAS.admin)
    body = holders_page(ana, needle="Aaron Agent")
    for holding in active:
        assert "data-remove-refused" not in _holder_row(
            body, catalog.PAA, holding.principal_id, "active"
        )
    ana_user = portal_user(PERSONAS.admin)
    row = services.role_change_create(
        requester=ana_user,
        change="remove",
        role_name=catalog.PAA,
        principal_id=first.principal_id,
        principal_type=first.principal_type,
        hold_kind="active",
        justification="Moved to another team.",
        ticket="",
        idempotency_key=uuid.uuid4().hex,
    )
    row = wait_final(row)
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)

    def without_the_removed_holder() -> str:
        body = holders_page(ana, needle="data-snapshot-at")
        if first.principal_id in _section(body, catalog.PAA):
            ana.post(reverse("roles:roles_refresh"))
            return ""
        return body

    body = wait_for(without_the_removed_holder, timeout=60, interval=0.3, what="the removal")
    assert first.principal_id not in _section(body, catalog.PAA)
    last = _holder_row(body, catalog.PAA, second.principal_id, "active")
    assert "data-remove-refused" in last and "cannot be removed" in last
    assert reverse("roles:role_remove") not in last
