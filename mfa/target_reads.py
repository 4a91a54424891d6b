"""The Graph reads behind a target profile (``mfa.policy.target_profile``), batched.

The person, their manager, their transitive memberships and their own active and PIM-eligible
directory roles are independent reads: they go as one JSON ``$batch`` (graph.batch), one HTTPS
request whose inner requests Graph throttles one by one, instead of five requests in sequence.
The roles of the person's role-assignable groups depend on the memberships: a second batch, only
when there are such groups. Results and errors are those of the one-by-one reads
(graph.users, graph.roles), in the same order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from accounts.capabilities import is_licence_refusal, note_pim_refused, tenant_capabilities
from graph import GraphClient
from graph import roles as graph_roles
from graph import users as graph_users
from graph.batch import BatchOutcome, run_batch
from graph.errors import GraphError
from graph.results import DirectoryObject, RoleAssignment, RoleEligibilitySchedule, User

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# A principal's own roles: (active assignments, eligibilities).
Direct = tuple[list[RoleAssignment], list[RoleEligibilitySchedule]]


def identity_reads(
    client: GraphClient, target_id: str
) -> tuple[User, User | None, list[DirectoryObject], Direct]:
    """The person, their manager, their transitive memberships and their own active and
    eligible directory roles: one ``$batch`` of up to five inner requests (each counted by
    Graph's throttling on its own) instead of five HTTPS requests in sequence. A UPN is first
    resolved to the object id the role filters need. Errors are raised in the order the reads
    were made one by one (GraphNotFound for an unknown person first)."""
    user: User | None = None
    oid = target_id
    if not _GUID.fullmatch(target_id):
        user = graph_users.get_user(client, target_id)
        oid = user.id
    # No PIM (no Entra ID P2, accounts.capabilities): nobody is eligible, nothing is read.
    pim = tenant_capabilities(client).pim
    calls = [] if user is not None else [graph_users.user_call(oid)]
    calls += [
        graph_users.manager_call(oid),
        graph_users.transitive_member_of_call(oid),
        graph_roles.role_assignments_call(principal_id=oid),
    ]
    if pim:
        calls.append(graph_roles.role_eligibility_schedules_call(principal_id=oid))
    outcomes = iter(run_batch(client, calls))
    if user is None:
        user = graph_users.user_from(next(outcomes))
    manager = graph_users.manager_from(next(outcomes))
    memberships = graph_users.transitive_member_of_from(client, next(outcomes))
    assignments = graph_roles.role_assignments_from(client, next(outcomes))
    schedules = _eligibilities(client, next(outcomes) if pim else None)
    return user, manager, memberships, (assignments, schedules)


def principal_roles(client: GraphClient, principal_ids: Sequence[str]) -> list[Direct]:
    """The active and eligible directory roles of each principal (the role-assignable groups
    of a person), read in one ``$batch`` (more when over Graph's 20 inner requests)."""
    if not principal_ids:
        return []
    pim = tenant_capabilities(client).pim
    calls = []
    for principal_id in principal_ids:
        calls.append(graph_roles.role_assignments_call(principal_id=principal_id))
        if pim:
            calls.append(graph_roles.role_eligibility_schedules_call(principal_id=principal_id))
    outcomes = iter(run_batch(client, calls))
    found: list[Direct] = []
    for _ in principal_ids:
        assignments = graph_roles.role_assignments_from(client, next(outcomes))
        found.append((assignments, _eligibilities(client, next(outcomes) if pim else None)))
    return found


def _eligibilities(
    client: GraphClient, outcome: BatchOutcome | None
) -> list[RoleEligibilitySchedule]:
    """The eligibilities an inner read found: none without PIM (``outcome`` None) or when Graph
    refused the read for the tenant's licence (noted, as ``accounts.capabilities.pim_read``
    does); any other error is raised."""
    if outcome is None:
        return []
    try:
        return graph_roles.role_eligibility_schedules_from(client, outcome)
    except GraphError as exc:
        if not is_licence_refusal(exc):
            raise
        note_pim_refused(exc)
        return []
