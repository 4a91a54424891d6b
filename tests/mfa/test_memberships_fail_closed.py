"""Issue 10, point 17: memberships are read with ``$select`` (checked against Microsoft's
metadata), and a group whose ``isAssignableToRole`` Graph did not give is read as role-assignable,
so the roles it holds still make its members privileged.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from entra_emulator.seed import GROUP_IDS, ROLE_ASSIGNABLE_GROUP
from graph import users as graph_users
from graph.operations import Operation
from graph.results import Group
from mfa import policy
from mfa.models import Tier
from portal.graph_client import get_graph_client
from tests.graph.csdl import SUBSET_PATH, ContractError, Metadata, check_operation
from tests.personas import PERSONAS

WANTED = {"id", "displayName", "isAssignableToRole", "roleTemplateId"}


def test_memberships_select_what_tiering_decides_on() -> None:
    op = graph_users._TRANSITIVE_MEMBER_OF
    url = get_graph_client().build_url(op, {"user_id": "00000000-0000-0000-0000-000000000001"})
    selected = set(parse_qs(urlsplit(url).query)["$select"][0].split(","))
    assert WANTED <= selected
    # Against the committed metadata: directoryObject is open, its derived types declare these.
    metadata = Metadata.load(SUBSET_PATH)
    check_operation(metadata, op)
    with pytest.raises(ContractError):
        check_operation(
            metadata,
            Operation("bad.derived", "GET", op.path, "x", select=("id", "isAssignableToRoles")),
        )


def test_a_group_of_unknown_role_assignability_counts_as_role_assignable(tenant: Any) -> None:
    group_id = GROUP_IDS[ROLE_ASSIGNABLE_GROUP]
    member = sorted(tenant.tenant.group_members[group_id])[0]
    # As Graph answers an app that may not read groups fully: the property is simply absent.
    with tenant.tenant.lock:
        tenant.tenant.groups[group_id].pop("isAssignableToRole")

    groups = [
        m
        for m in graph_users.list_transitive_member_of(get_graph_client(), member)
        if isinstance(m, Group)
    ]
    assert any(g.id == group_id and g.is_assignable_to_role is None for g in groups)
    profile = policy.target_profile(get_graph_client(), member, use_cache=False)

    assert profile.tier == Tier.PRIVILEGED
    assert any(r.how == "group" and r.via_group == ROLE_ASSIGNABLE_GROUP for r in profile.roles)


def test_directory_roles_keep_their_template_through_the_select(tenant: Any) -> None:
    roles = [
        m
        for m in graph_users.list_transitive_member_of(
            get_graph_client(), PERSONAS.privileged_target.oid
        )
        if m.is_directory_role
    ]
    assert roles and all(r.role_template_id for r in roles)
