"""The /roles/ pages: Admin-only (the persona matrix), what the list shows, and the forms'
refusals and decisions as a person meets them. Real emulator, real worker."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import role_admin, role_services
from accounts.models import RoleChangeRequest, RoleHolderSnapshot
from mfa.models import Status
from portal.graph_client import get_graph_client
from tests.mfa.signin import portal_user, signed_in
from tests.personas import PERSONAS, Persona

pytestmark = pytest.mark.django_db(transaction=True)

SOME_ID = str(uuid.uuid4())
GET_URLS = [
    reverse("accounts:directory_roles"),
    reverse("accounts:role_add"),
    reverse("accounts:role_principals") + "?q=sam",
    reverse("accounts:role_remove") + f"?role=Authentication+Administrator&principal={SOME_ID}"
    "&how=active",
    reverse("accounts:role_change_detail", args=[SOME_ID]),
]
POST_URLS = [
    reverse("accounts:roles_refresh"),
    reverse("accounts:role_add"),
    reverse("accounts:role_change_decide", args=[SOME_ID]),
    reverse("accounts:role_change_cancel", args=[SOME_ID]),
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


def _wait_for_holders(client: Client, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(reverse("accounts:directory_roles")).content.decode()
        if "data-snapshot-at" in body and "data-refresh=" not in body:
            return body
        time.sleep(0.3)
    raise AssertionError("the holders were never shown")


def test_admin_sees_every_holder_and_how_they_hold_it(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    portal_user(PERSONAS.privileged_agent)  # Aaron has signed in: he is a portal agent
    client = signed_in(PERSONAS.admin)
    body = client.get(reverse("accounts:directory_roles")).content.decode()
    assert "Reading the holders from Entra" in body  # first visit: a read is queued at once
    body = _wait_for_holders(client)
    for role in role_admin.ROLES_SHOWN:
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
    active = [h for h in role_admin.read_role(client, role_admin.PAA) if h.how == "active"]
    first, second = active
    ana.get(reverse("accounts:directory_roles"))
    _wait_for_holders(ana)
    url = (
        reverse("accounts:role_remove")
        + f"?role=Privileged+Authentication+Administrator&principal={first.principal_id}&how=active"
    )
    page = ana.get(url)
    assert page.status_code == 200
    key = page.context["form"].initial["idempotency_key"]
    response = ana.post(url, {"justification": "Moved to another team.", "idempotency_key": key})
    assert response.status_code == 302
    row = RoleChangeRequest.objects.get()
    deadline = time.monotonic() + 60
    while row.status != Status.SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.2)
        row.refresh_from_db()
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)

    _wait_for_holders(ana)
    url = (
        reverse("accounts:role_remove")
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
    row = role_services.role_change_create(
        requester=ana_user,
        change="add",
        role_name=role_admin.PRA,
        principal_id=PERSONAS.lead.oid,
        principal_type="user",
        hold_kind="active_permanent",
        justification="Covers role administration during the audit.",
        ticket="REQ-4567",
        idempotency_key=uuid.uuid4().hex,
    )
    assert row.status == Status.AWAITING_APPROVAL
    ana = signed_in(PERSONAS.admin)
    detail = ana.get(reverse("accounts:role_change_detail", args=[row.public_id]))
    assert b"data-own-change" in detail.content and b'value="approve"' not in detail.content
    decide = reverse("accounts:role_change_decide", args=[row.public_id])
    page = ana.post(decide, {"decision": "approve", "comment": ""}, follow=True)
    assert "your own change" in page.content.decode()
    row.refresh_from_db()
    assert row.status == Status.AWAITING_APPROVAL

    abel = signed_in(PERSONAS.other_admin)
    detail = abel.get(reverse("accounts:role_change_detail", args=[row.public_id]))
    assert b'value="approve"' in detail.content
    abel.post(decide, {"decision": "approve", "comment": "Agreed with the CISO."})
    deadline = time.monotonic() + 60
    while row.status != Status.SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.2)
        row.refresh_from_db()
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)
    fragment = abel.get(
        reverse("accounts:role_change_detail", args=[row.public_id]), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'id="change-status"' in fragment and "hx-trigger" not in fragment  # polling stops


def _wait_for(client: Client, needle: str, timeout: float = 60.0) -> str:
    """The list page once ``needle`` is in it and no read is under way (asks for a read when
    none is running, as the Refresh button does)."""
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        body = client.get(reverse("accounts:directory_roles")).content.decode()
        if needle in body and "data-refresh=" not in body:
            return body
        if "data-refresh=" not in body:
            client.post(reverse("accounts:roles_refresh"))
        time.sleep(0.3)
    raise AssertionError(f"{needle!r} never shown")


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
    add_url = reverse("accounts:role_add")
    page = ana.get(add_url + "?role=Authentication+Administrator")
    assert page.status_code == 200
    assert b"data-active-until-unsupported" not in page.content
    assert b'value="active_until"' in page.content
    ends_on = (timezone.localdate() + timedelta(days=6)).isoformat()
    response = ana.post(
        add_url,
        {
            "principal": f"user:{sam.oid}",
            "role": role_admin.AUTH_ADMIN,
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
    deadline = time.monotonic() + 60
    while row.status != Status.SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.2)
        row.refresh_from_db()
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message, row.steps)

    body = _wait_for(ana, f'data-holder="{sam.oid}"')
    cells = _holder_row(body, role_admin.AUTH_ADMIN, sam.oid, "active")
    assert "until a date (PIM)" in cells and "data-expiring" in cells
    shown = timezone.localtime(row.ends_at)
    assert f"{shown:%-d %b %Y %H:%M}" in cells
    assert 'data-warning="expiring"' in body
    assert "Sam Standard&#x27;s active assignment of Authentication Administrator" in body
    # Its removal page names the end, and removing it goes through PIM.
    remove_url = (
        reverse("accounts:role_remove")
        + f"?role=Authentication+Administrator&principal={sam.oid}&how=active"
    )
    assert f"until {shown:%-d %b %Y %H:%M} (PIM)" in ana.get(remove_url).content.decode()


def test_an_admin_sees_why_instead_of_remove_on_their_own_row(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    ana = signed_in(PERSONAS.admin)
    body = _wait_for(ana, "Abel Admin")
    own = _holder_row(body, role_admin.PRA, PERSONAS.admin.oid, "active")
    assert "data-remove-refused" in own and "Your own role" in own
    assert "accounts/roles/remove" not in own and reverse("accounts:role_remove") not in own
    other = _holder_row(body, role_admin.PRA, PERSONAS.other_admin.oid, "active")
    assert reverse("accounts:role_remove") in other and "data-remove-refused" not in other
    # And the other way round for Abel.
    abel = signed_in(PERSONAS.other_admin)
    body = _wait_for(abel, "Ana Admin")
    assert "Your own role" in _holder_row(body, role_admin.PRA, PERSONAS.other_admin.oid, "active")
    assert reverse("accounts:role_remove") in _holder_row(
        body, role_admin.PRA, PERSONAS.admin.oid, "active"
    )
    # The service refuses what the page does not offer.
    url = (
        reverse("accounts:role_remove")
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
    active = [h for h in role_admin.read_role(client, role_admin.PAA) if h.how == "active"]
    assert len(active) == 2
    first, second = active
    ana = signed_in(PERSONAS.admin)
    body = _wait_for(ana, "Aaron Agent")
    for holding in active:
        assert "data-remove-refused" not in _holder_row(
            body, role_admin.PAA, holding.principal_id, "active"
        )
    ana_user = portal_user(PERSONAS.admin)
    row = role_services.role_change_create(
        requester=ana_user,
        change="remove",
        role_name=role_admin.PAA,
        principal_id=first.principal_id,
        principal_type=first.principal_type,
        hold_kind="active",
        justification="Moved to another team.",
        ticket="",
        idempotency_key=uuid.uuid4().hex,
    )
    deadline = time.monotonic() + 60
    while row.status != Status.SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.2)
        row.refresh_from_db()
    assert row.status == Status.SUCCEEDED, (row.error_code, row.error_message)
    deadline = time.monotonic() + 60
    body = _wait_for(ana, "data-snapshot-at")
    while first.principal_id in _section(body, role_admin.PAA) and time.monotonic() < deadline:
        ana.post(reverse("accounts:roles_refresh"))
        time.sleep(0.3)
        body = _wait_for(ana, "data-snapshot-at")
    assert first.principal_id not in _section(body, role_admin.PAA)
    last = _holder_row(body, role_admin.PAA, second.principal_id, "active")
    assert "data-remove-refused" in last and "cannot be removed" in last
    assert reverse("accounts:role_remove") not in last
