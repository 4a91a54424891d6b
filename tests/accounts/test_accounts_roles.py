"""Portal roles: the claim mapping, re-evaluation at sign-in, and who each page refuses."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory

from accounts.models import PortalProfile
from accounts.roles import has_role, portal_roles_of, role_required, roles_from_claims
from accounts.services import portal_profile_sync
from tests.personas import ADMIN, AGENT, LEAD, OTHER_LEAD, OUTSIDER, portal_user


def test_app_role_values_map_to_portal_roles() -> None:
    assert roles_from_claims(["Helpdesk.Lead", "Helpdesk.Agent"]) == ["Agent", "Lead"]
    assert roles_from_claims(["Helpdesk.Admin", "Helpdesk.Admin"]) == ["Admin"]
    # Another app's role, or the portal role's bare name, is not a portal role.
    assert roles_from_claims(["Directory.Read.All", "Agent", "helpdesk.agent"]) == []


@pytest.mark.django_db
def test_roles_are_replaced_at_every_sign_in() -> None:
    user = get_user_model().objects.create(username=OTHER_LEAD.oid)
    claims: dict[str, object] = {
        "oid": OTHER_LEAD.oid,
        "name": OTHER_LEAD.display_name,
        "preferred_username": OTHER_LEAD.upn,
        "roles": ["Helpdesk.Lead", "Helpdesk.Agent"],
    }
    portal_profile_sync(user=user, claims=claims)
    assert portal_roles_of(get_user_model().objects.get(pk=user.pk)) == {"Agent", "Lead"}

    # Entra removed Helpdesk.Agent: the next sign-in removes it here too.
    portal_profile_sync(user=user, claims={**claims, "roles": ["Helpdesk.Lead"]})
    fresh = get_user_model().objects.get(pk=user.pk)
    assert portal_roles_of(fresh) == {"Lead"}
    assert fresh.portal_profile.display_name == "Lena Lead"

    # No roles claim at all (every app role removed): no portal role left.
    portal_profile_sync(user=user, claims={k: v for k, v in claims.items() if k != "roles"})
    assert portal_roles_of(get_user_model().objects.get(pk=user.pk)) == frozenset()
    assert PortalProfile.objects.count() == 1


@pytest.mark.django_db
def test_has_role() -> None:
    ada, leo = portal_user(AGENT), portal_user(LEAD)
    assert has_role(ada, "Agent") and not has_role(ada, "Lead", "Admin")
    assert has_role(leo, "Agent", "Lead") and has_role(leo)
    assert not has_role(AnonymousUser())
    with pytest.raises(ValueError, match="not portal roles"):
        has_role(ada, "Agnet")


@pytest.mark.django_db
def test_inactive_person_holds_no_role() -> None:
    ada = portal_user(AGENT)
    ada.is_active = False
    ada.save()
    assert not has_role(ada)


def test_role_required_refuses_unknown_role_names() -> None:
    with pytest.raises(ValueError, match="not portal roles"):
        role_required("Leader")


@pytest.mark.django_db
def test_role_required_admits_only_the_listed_roles(rf: RequestFactory) -> None:
    @role_required("Lead", "Admin")
    def approvals(request: HttpRequest) -> HttpResponse:
        return HttpResponse("approvals")

    def call(user: Any) -> HttpResponse:
        request = rf.get("/approvals/")
        request.user = user
        request.session = {}  # type: ignore[assignment]
        return approvals(request)

    assert call(portal_user(LEAD)).content == b"approvals"
    assert call(portal_user(ADMIN)).content == b"approvals"
    with pytest.raises(PermissionDenied):
        call(portal_user(AGENT))
    refused = call(portal_user(OUTSIDER))
    assert refused.status_code == 403
    assert b"you hold no portal role" in refused.content
    anonymous = call(AnonymousUser())
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/oauth2/login?next=")


@pytest.mark.django_db
def test_home_greets_a_person_with_a_role_by_name(client: Client) -> None:
    client.force_login(portal_user(AGENT))
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Ada Agent" in html
    assert '<span class="role-badge">Agent</span>' in html
    assert (
        "Good morning, Ada Agent" in html
        or "Good afternoon, Ada Agent" in html
        or ("Good evening, Ada Agent" in html)
    )


@pytest.mark.django_db
def test_person_without_a_role_gets_the_no_role_page(client: Client) -> None:
    client.force_login(portal_user(OUTSIDER))
    response = client.get("/")
    assert response.status_code == 403
    html = response.content.decode()
    assert "You are signed in as <strong>Otto Outsider</strong>" in html
    assert "but you hold no portal role" in html
    assert "Helpdesk.Agent" in html
    # Nothing else: no navigation to any area.
    assert 'aria-label="Main"' not in html


@pytest.mark.django_db
def test_wrong_role_gets_the_403_page(rf: RequestFactory) -> None:
    from django.views.defaults import permission_denied

    request = rf.get("/approvals/")
    request.user = portal_user(AGENT)
    response = permission_denied(request, PermissionDenied("This page needs the role Lead."))
    assert response.status_code == 403
    assert "This page needs the role Lead." in response.content.decode()


def test_anonymous_home_redirects_to_sign_in(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/oauth2/login?next=/"
