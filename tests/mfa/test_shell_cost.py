"""Issue 12: the person page's shell at a few times a bare view's CPU. A cold shell (a person
nobody opened) reads the target profile's independent identity reads (the person, the manager,
transitiveMemberOf, roleAssignments, roleEligibilitySchedules) as one JSON ``$batch``: one HTTPS
request to Graph instead of five in sequence, with the same results and the same errors
(mfa.target_reads). bench/portal_cpu.py measures the CPU; this counts the HTTP requests, at the
HTTP session, against the real emulator.

What would break if these failed: a cold person page paying one TLS connection, one budget
round trip and one JSON parse per read again; a batched read that differs from the one-by-one
reads (a page of memberships lost, a missing manager taken for an error, a role missed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.backends import PortalAdfsBackend
from accounts.roles import portal_roles_of
from entra_emulator.seed import GROUP_IDS, ROLE_ASSIGNABLE_GROUP
from graph import client as graph_client
from graph import roles as graph_roles
from graph import users as graph_users
from graph.batch import BatchCall, run_batch
from graph.results import Group
from mfa import policy
from mfa.models import CallerVerification, VerificationMethod
from mfa.target_reads import identity_reads, principal_roles
from mfa.verification import verification_current, verification_pending, verification_state
from portal.graph_client import get_graph_client
from tests.personas import PERSONAS, portal_user, signed_in

pytestmark = pytest.mark.django_db

SAM = PERSONAS.standard_target
PRIYA = PERSONAS.privileged_target


@contextmanager
def http_requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str, Any]]]:
    """Every HTTP request that leaves for Graph (not the login host): (method, path, JSON body)."""
    seen: list[tuple[str, str, Any]] = []
    root = urlsplit(str(settings.GRAPH_URL))
    real = graph_client._HttpSession.request

    def counted(self: Any, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(url.decode() if isinstance(url, bytes) else str(url))
        if (parts.scheme, parts.netloc) == (root.scheme, root.netloc) and parts.path.startswith(
            ("/v1.0/", "/beta/")
        ):
            seen.append((str(method).upper(), parts.path, kwargs.get("json")))
        return real(self, method, url, *args, **kwargs)

    monkeypatch.setattr(graph_client._HttpSession, "request", counted)
    yield seen


def test_a_cold_shell_reads_the_profile_in_one_graph_request(
    tenant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = signed_in(PERSONAS.agent)
    agent.get(f"/users/{PRIYA.oid}/")  # the portal roles' shared map and capabilities, read once
    policy.target_profile_forget(SAM.oid)
    with http_requests(monkeypatch) as seen:
        response = agent.get(f"/users/{SAM.oid}/")
    assert response.status_code == 200
    assert SAM.display_name in response.content.decode()
    assert [(method, path) for method, path, _ in seen] == [("POST", "/v1.0/$batch")], seen
    inner = [(r["method"], urlsplit(r["url"]).path) for r in seen[0][2]["requests"]]
    assert inner == [
        ("GET", f"/users/{SAM.oid}"),
        ("GET", f"/users/{SAM.oid}/manager"),
        ("GET", f"/users/{SAM.oid}/transitiveMemberOf"),
        ("GET", "/roleManagement/directory/roleAssignments"),
        ("GET", "/roleManagement/directory/roleEligibilitySchedules"),
    ]
    # An agent is waiting: every inner identity read asks Graph for high priority.
    assert all(
        r["headers"].get(graph_client.THROTTLE_PRIORITY_HEADER) == "high"
        for r in seen[0][2]["requests"]
    )
    # Again: from the cache, no Graph request at all.
    with http_requests(monkeypatch) as seen:
        assert agent.get(f"/users/{SAM.oid}/").status_code == 200
    assert seen == []


def _people(tenant: Any) -> list[str]:
    """People of every shape: personas, the members of the role-assignable group, everyone
    holding a role actively or through PIM, and someone without a manager."""
    client = get_graph_client()
    found = [p.oid for p in PERSONAS.all()]
    found += sorted(tenant.tenant.group_members[GROUP_IDS[ROLE_ASSIGNABLE_GROUP]])
    found += [a.principal_id for a in graph_roles.list_all_role_assignments(client)]
    found += [s.principal_id for s in graph_roles.list_all_role_eligibility_schedules(client)]
    found += [str(oid) for oid in list(tenant.tenant.users)[:40]]
    users = {str(oid).lower() for oid in tenant.tenant.users}
    # Role holders may be groups or service principals: only people have a profile.
    return [oid for oid in dict.fromkeys(o.lower() for o in found) if oid in users]


def test_the_batched_reads_are_the_one_by_one_reads(tenant: Any) -> None:
    client = get_graph_client()
    people = _people(tenant)
    shapes = {"no manager": 0, "groups": 0, "active": 0, "eligible": 0}
    for oid in people:
        user, manager, memberships, (assignments, schedules) = identity_reads(client, oid)
        assert user == graph_users.get_user(client, oid)
        assert manager == graph_users.get_manager(client, oid)
        assert memberships == graph_users.list_transitive_member_of(client, oid)
        assert assignments == graph_roles.list_role_assignments(client, principal_id=oid)
        assert schedules == graph_roles.list_role_eligibility_schedules(client, principal_id=oid)
        shapes["no manager"] += manager is None
        shapes["groups"] += any(isinstance(m, Group) for m in memberships)
        shapes["active"] += bool(assignments)
        shapes["eligible"] += bool(schedules)
    assert all(shapes.values()), shapes  # every shape was compared, not only easy ones
    # A UPN is resolved first, then read the same way.
    assert identity_reads(client, PRIYA.upn) == identity_reads(client, PRIYA.oid)


def test_the_groups_roles_are_read_as_one_by_one(tenant: Any) -> None:
    client = get_graph_client()
    groups = [GROUP_IDS[ROLE_ASSIGNABLE_GROUP], *sorted(GROUP_IDS.values())]
    groups = list(dict.fromkeys(groups))
    found = principal_roles(client, groups)
    assert len(found) == len(groups)
    for group_id, (assignments, schedules) in zip(groups, found, strict=True):
        assert assignments == graph_roles.list_role_assignments(client, principal_id=group_id)
        assert schedules == graph_roles.list_role_eligibility_schedules(
            client, principal_id=group_id
        )
    assert any(assignments for assignments, _ in found)
    assert principal_roles(client, []) == []


def test_a_batched_collection_reads_its_later_pages(tenant: Any) -> None:
    """One membership a page: the batch answers the first page, the rest follow its
    ``@odata.nextLink`` as a direct read does."""
    client = get_graph_client()
    member = sorted(tenant.tenant.group_members[GROUP_IDS[ROLE_ASSIGNABLE_GROUP]])[0]
    direct = graph_users.list_transitive_member_of(client, member)
    assert len(direct) > 1
    op = graph_users.transitive_member_of_call(member).op
    (outcome,) = run_batch(client, [BatchCall(op, {"user_id": member}, query={"$top": "1"})])
    assert len(outcome.result()["value"]) == 1 and outcome.result()["@odata.nextLink"]
    assert graph_users.transitive_member_of_from(client, outcome) == direct


def test_a_failed_inner_read_fails_the_page_as_before(tenant: Any) -> None:
    tenant.faults.add_fail_next(
        "GET",
        rf"^/v1\.0/users/{SAM.oid}/transitiveMemberOf$",
        403,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
    policy.target_profile_forget(SAM.oid)
    response = signed_in(PERSONAS.agent).get(f"/users/{SAM.oid}/")
    assert response.status_code == 502
    assert "Authorization_RequestDenied" in response.content.decode()


def test_an_unknown_person_is_still_a_404(tenant: Any) -> None:
    missing = "00000000-0000-4000-8000-00000000dead"
    response = signed_in(PERSONAS.agent).get(f"/users/{missing}/")
    assert response.status_code == 404


def test_a_transient_inner_failure_is_retried(tenant: Any) -> None:
    tenant.faults.add_fail_next(
        "GET", rf"^/v1\.0/users/{SAM.oid}/manager$", 503, "ServiceUnavailable", "Try again."
    )
    profile = policy.target_profile(get_graph_client(), SAM.oid, use_cache=False)
    assert profile.manager == graph_users.get_manager(get_graph_client(), SAM.oid)
    assert json.dumps(tenant.faults.snapshot()["fail_next"]) == "[]"


def test_one_query_finds_the_verification_and_the_code_waiting(
    django_assert_num_queries: Any,
) -> None:
    """The person page's verification panel: the verification backing actions now and the code
    waiting to be read back, in one query, as verification_current and verification_pending
    choose them one by one (newest first; expired, failed, another agent's or another
    person's never)."""
    ada, aaron = portal_user(PERSONAS.agent), portal_user(PERSONAS.privileged_agent)
    now = timezone.now()
    max_age = timedelta(minutes=settings.PORTAL_VERIFICATION_MAX_AGE_MINUTES)

    def made(agent: Any = ada, target: str = SAM.oid, **fields: Any) -> CallerVerification:
        values: dict[str, Any] = {
            "method": VerificationMethod.EMAIL_CODE,
            "target_name": "x",
            "expires_at": now + timedelta(minutes=5),
            **fields,
        }
        return CallerVerification.objects.create(agent=agent, target_id=target, **values)

    def both() -> tuple[Any, Any]:
        with django_assert_num_queries(1):
            found = verification_state(agent=ada, target_id=SAM.oid)
        assert found == (
            verification_current(agent=ada, target_id=SAM.oid),
            verification_pending(agent=ada, target_id=SAM.oid),
        )
        return found

    assert both() == (None, None)
    made(expires_at=now - timedelta(seconds=1))  # an expired code
    made(failed_at=now)  # a code that failed
    made(agent=aaron)  # another agent's
    made(target=PRIYA.oid)  # about another person
    made(method=VerificationMethod.MANUAL, verified_at=now - max_age - timedelta(minutes=1))
    assert both() == (None, None)
    older = made(created_at=now - timedelta(minutes=2))
    newer = made(created_at=now - timedelta(minutes=1))
    assert both() == (None, newer)
    done = made(method=VerificationMethod.MANUAL, verified_at=now - timedelta(minutes=3))
    later = made(verified_at=now - timedelta(minutes=1), created_at=now - timedelta(minutes=4))
    assert both() == (later, newer)
    newer.delete()
    later.delete()
    assert both() == (done, older)


def test_a_session_user_comes_with_their_portal_profile() -> None:
    """The session's user is read with the portal profile every page reads the roles from:
    one query for both (accounts.backends.PortalAdfsBackend.get_user)."""
    ada = portal_user(PERSONAS.agent)
    with CaptureQueriesContext(connection) as queries:
        user = PortalAdfsBackend().get_user(ada.pk)
        assert user is not None and portal_roles_of(user) == {"Agent"}
    assert len(queries.captured_queries) == 1, queries.captured_queries
    assert PortalAdfsBackend().get_user(10**9) is None
