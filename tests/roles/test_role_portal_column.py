"""/roles/'s Portal column: the portal's app roles of every holder, read from Entra with the
holders (people who never signed in included, group assignments expanded), and the fallback to
who signed in when Entra cannot say. Real emulator, real worker."""

from __future__ import annotations

import re
from typing import Any

import pytest

from accounts.models import PortalProfile
from entra_emulator.seed import GROUP_IDS, ROLE_ASSIGNABLE_GROUP
from tests.personas import PERSONAS, signed_in
from tests.roles.role_changes import holders_page

pytestmark = pytest.mark.django_db(transaction=True)

PAA = "Privileged Authentication Administrator"


def _rows(body: str, role: str, principal_id: str) -> list[str]:
    """The table rows of ``principal_id`` in the section of ``role``."""
    start = body.index(f'data-role="{role}"')
    end = body.find("data-role=", start + 10)
    section = body[start : end if end != -1 else len(body)]
    return re.findall(rf'<tr data-holder="{principal_id}".*?</tr>', section, flags=re.S)


def test_a_holder_who_never_signed_in_shows_as_a_portal_agent(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    aaron = PERSONAS.privileged_agent
    group_id = GROUP_IDS[ROLE_ASSIGNABLE_GROUP]
    # The role-assignable group (which holds Authentication Administrator) is given Helpdesk.Lead:
    # its members, who never signed in, are portal Leads.
    fresh_tenant.tenant.app_role_assignments[group_id] = {"Helpdesk.Lead"}
    client = signed_in(PERSONAS.admin)
    assert not PortalProfile.objects.filter(oid__iexact=aaron.oid).exists()

    body = holders_page(client)
    assert 'data-warning="portal_roles_unknown"' not in body
    (row,) = _rows(body, PAA, aaron.oid)
    assert "Aaron Agent" in row
    assert "data-portal-agent>Agent</span>" in row, row
    group_rows = _rows(body, "Authentication Administrator", group_id)
    assert group_rows and all("data-portal-agent>Lead</span>" in r for r in group_rows)


def test_without_graph_the_column_falls_back_to_who_signed_in(
    fresh_tenant: Any, celery_worker: Any
) -> None:
    aaron = PERSONAS.privileged_agent
    fresh_tenant.faults.add_fail_next(
        "GET",
        r"/servicePrincipals\(",
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
        count=5,
    )
    client = signed_in(PERSONAS.admin)
    body = holders_page(client)
    assert 'data-warning="portal_roles_unknown"' in body
    assert "Authorization_RequestDenied" in body
    (row,) = _rows(body, PAA, aaron.oid)
    assert "data-portal-agent" not in row  # Aaron never signed in: unknown without Graph


def test_an_app_role_given_to_a_group_reaches_direct_members_only(fresh_tenant: Any) -> None:
    """As in Entra: nested groups do not pass an app role assignment on."""
    from portal.graph_client import get_graph_client
    from roles.holders import read_portal_roles

    priya, sam = PERSONAS.privileged_target.oid, PERSONAS.standard_target.oid
    tenant = fresh_tenant.tenant
    outer, inner = "0e5f3c1a-0000-4000-8000-00000000000a", "0e5f3c1a-0000-4000-8000-00000000000b"
    with tenant.lock:
        for group_id, name in ((outer, "Night shift"), (inner, "Night shift trainees")):
            tenant.groups[group_id] = {
                "id": group_id,
                "displayName": name,
                "securityEnabled": True,
                "isAssignableToRole": False,
            }
        tenant.group_members[outer] = {priya, inner}
        tenant.group_members[inner] = {sam}
        tenant.app_role_assignments[outer] = {"Helpdesk.Lead"}

    roles = read_portal_roles(get_graph_client())
    assert roles[priya.lower()] == ("Lead",)
    assert sam.lower() not in roles
