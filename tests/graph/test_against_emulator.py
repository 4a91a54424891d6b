"""The real graph client against the real HTTPS Entra emulator (tests/plugin.py ``emulator``).

The client is built from Django settings (portal/graph_client.py), which the test plugin points at
the emulator exactly as a real tenant would be configured: MSAL gets its token from the emulator's
token endpoint, every call crosses TLS, and throttling and faults are the emulator's own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from graph import (
    BudgetRate,
    GraphAuthError,
    GraphClient,
    GraphNotFound,
    GraphTokenUnavailable,
    GraphTransient,
    audit_logs,
    methods,
    requirements,
    roles,
    sessions,
    users,
)
from graph.results import Group, MethodKind, PerUserMfa
from portal.graph_client import check_token, graph_config_from_settings, reset_graph_client
from tests.personas import PERSONAS

if TYPE_CHECKING:
    from pytest_django.fixtures import Settings

    from entra_emulator.server import EmulatorServer

SAM = PERSONAS.standard_target
PRIYA = PERSONAS.privileged_target
PAA = roles.ROLE_TEMPLATES["Privileged Authentication Administrator"]
AUTH_ADMIN = roles.ROLE_TEMPLATES["Authentication Administrator"]


def client_for(emulator: EmulatorServer, **overrides: object) -> GraphClient:
    """A fresh client (own MSAL app and token cache) from the settings, with overrides."""
    config = dataclasses.replace(graph_config_from_settings(), **overrides)  # type: ignore[arg-type]
    return GraphClient(config)


@pytest.fixture
def roomy(emulator_faults: EmulatorServer) -> Iterator[GraphClient]:
    """A client and an emulator with a larger reports budget (50 per 10 s on both sides), so that
    functional tests do not spend their time waiting on the 5-per-10-s limit."""
    emulator_faults.throttle.configure(limits={"reports": (50, 10.0)})
    yield client_for(
        emulator_faults,
        budgets={"reports": BudgetRate(50, 10), "identity": BudgetRate(3500, 10)},
    )


def test_check_token_from_settings(emulator: EmulatorServer, settings: Settings) -> None:
    """/readyz's check gets a real token with the configured credentials, and refuses wrong
    ones with the emulator's own error: a check that did not ask the token endpoint, or that
    swallowed its answer, fails the second half."""
    reset_graph_client()
    try:
        check_token()  # raises unless the emulator issued a token for the portal's app
        settings.ENTRA_CLIENT_SECRET = "not-the-portal-secret"
        reset_graph_client()  # a new MSAL app: no token cached from the good secret
        with pytest.raises(GraphAuthError) as refused:
            check_token()
        assert refused.value.permanent is True
        assert refused.value.code == "invalid_client", refused.value
    finally:
        reset_graph_client()


def test_token_endpoint_down_is_transient(emulator_faults: EmulatorServer) -> None:
    emulator_faults.faults.configure(token_endpoint_down=True)
    with pytest.raises(GraphTokenUnavailable) as caught:
        client_for(emulator_faults).check_token()
    assert caught.value.permanent is False


def test_users(roomy: GraphClient) -> None:
    sam = users.get_user(roomy, SAM.upn)
    assert (sam.id, sam.display_name, sam.user_principal_name) == (
        SAM.oid,
        SAM.display_name,
        SAM.upn,
    )
    assert users.get_user(roomy, SAM.oid) == sam
    with pytest.raises(GraphNotFound) as missing:
        users.get_user(roomy, "nobody@contoso-demo.onmicrosoft.com")
    assert missing.value.code == "Request_ResourceNotFound" and missing.value.request_id

    found = users.search_users(roomy, "Standard")
    assert SAM.oid in [u.id for u in found.items]
    assert found.count is not None and found.count >= 1
    prefixed = users.list_users_startswith(roomy, "Sam Stand")
    assert [u.id for u in prefixed.items] == [SAM.oid]
    # Hostile input is quoted, not interpreted: it simply matches nobody.
    assert users.list_users_startswith(roomy, "x') or true or ('").items == ()
    assert users.search_users(roomy, 'x" OR "displayName:').items == ()


def test_paging_over_all_users(roomy: GraphClient) -> None:
    seen: list[str] = []
    page = users.list_users_startswith(roomy, "a", top=3)
    pages = 1
    while True:
        seen.extend(u.id for u in page.items)
        if not page.next_link:
            break
        page = users.list_users_startswith(roomy, "ignored", next_link=page.next_link)
        pages += 1
    assert pages >= 2 and len(seen) == len(set(seen)) > 3


def test_manager_and_memberships(roomy: GraphClient) -> None:
    manager = users.get_manager(roomy, SAM.oid)
    assert manager is None or manager.id != SAM.oid
    memberships = users.list_transitive_member_of(roomy, PRIYA.oid)
    assert all(m.id for m in memberships)
    assert all(isinstance(m, Group) for m in memberships if m.is_group)


def test_batch_of_users(roomy: GraphClient) -> None:
    ids = [SAM.oid, PRIYA.oid, "00000000-0000-0000-0000-000000000000"]
    result = users.get_users(roomy, ids)
    assert result[SAM.oid].display_name == SAM.display_name  # type: ignore[union-attr]
    assert result[PRIYA.oid].display_name == PRIYA.display_name  # type: ignore[union-attr]
    assert isinstance(result[ids[2]], GraphNotFound)


def test_methods_and_tap(fresh_tenant: EmulatorServer) -> None:
    fresh_tenant.throttle.configure(limits={"reports": (50, 10.0)})
    client = client_for(
        fresh_tenant, budgets={"reports": BudgetRate(50, 10), "identity": BudgetRate(3500, 10)}
    )
    found = methods.list_methods(client, SAM.oid)
    kinds = {m.kind for m in found}
    assert {MethodKind.MICROSOFT_AUTHENTICATOR, MethodKind.PHONE} <= kinds
    phone = next(m for m in found if m.kind is MethodKind.PHONE)
    assert "*" in phone.detail and "900123" not in phone.detail

    policy = methods.get_tap_policy(client)
    lifetime = max(policy.minimum_lifetime_in_minutes or 10, 60)
    if policy.maximum_lifetime_in_minutes:
        lifetime = min(lifetime, policy.maximum_lifetime_in_minutes)
    tap = methods.create_temporary_access_pass(
        client, SAM.oid, lifetime_in_minutes=lifetime, is_usable_once=True
    )
    assert tap.pass_value and tap.pass_value not in repr(tap)
    listed = [m for m in methods.list_methods(client, SAM.oid) if m.id == tap.id]
    assert [m.kind for m in listed] == [MethodKind.TEMPORARY_ACCESS_PASS]
    methods.delete_method(client, SAM.oid, listed[0])
    assert tap.id not in [m.id for m in methods.list_methods(client, SAM.oid)]


def test_revoke_sessions_and_audit_trail(fresh_tenant: EmulatorServer) -> None:
    fresh_tenant.throttle.configure(limits={"reports": (50, 10.0)})
    client = client_for(
        fresh_tenant, budgets={"reports": BudgetRate(50, 10), "identity": BudgetRate(3500, 10)}
    )
    since = datetime.now(UTC) - timedelta(minutes=1)
    sessions.revoke_sign_in_sessions(client, SAM.oid)
    events = list(audit_logs.iter_directory_audits(client, since=since, target_id=SAM.oid, top=5))
    revoked = [e for e in events if e.activity_display_name.startswith("Update StsRefreshToken")]
    assert revoked, [e.activity_display_name for e in events]
    assert revoked[0].initiated_by_app is not None
    assert SAM.oid in revoked[0].target_ids
    assert revoked[0].raw["id"] == revoked[0].id


def test_audit_paging_follows_next_links(roomy: GraphClient) -> None:
    first = audit_logs.directory_audits_page(roomy, top=2)
    if not first.next_link:
        pytest.skip("the seeded tenant holds fewer than three audit events")
    second = audit_logs.directory_audits_page(roomy, next_link=first.next_link)
    assert {e.id for e in first.items}.isdisjoint({e.id for e in second.items})


def test_per_user_mfa_state(fresh_tenant: EmulatorServer) -> None:
    fresh_tenant.throttle.configure(limits={"reports": (50, 10.0)})
    client = client_for(
        fresh_tenant, budgets={"reports": BudgetRate(50, 10), "identity": BudgetRate(3500, 10)}
    )
    requirements.set_per_user_mfa_state(client, SAM.oid, PerUserMfa.DISABLED)
    assert requirements.get_per_user_mfa_state(client, SAM.oid).state is PerUserMfa.DISABLED
    requirements.set_per_user_mfa_state(client, SAM.oid, "enforced")
    assert requirements.get_per_user_mfa_state(client, SAM.oid).state is PerUserMfa.ENFORCED


def test_roles(fresh_tenant: EmulatorServer) -> None:
    client = client_for(fresh_tenant)
    paa = roles.get_role_definition_by_template(client, PAA)
    auth_admin = roles.get_role_definition_by_template(client, AUTH_ADMIN)
    assert paa is not None and paa.template_id == PAA
    assert auth_admin is not None
    assert roles.get_role_definition_by_template(client, "not-a-template-id") is None

    holders = roles.list_role_assignments(client, role_definition_id=auth_admin.id)
    assert PRIYA.oid in [a.principal_id for a in holders]
    priya = next(a for a in holders if a.principal_id == PRIYA.oid)
    assert priya.principal is not None and priya.principal.id == PRIYA.oid

    created = roles.create_role_assignment(client, role_definition_id=paa.id, principal_id=SAM.oid)
    mine = roles.list_role_assignments(client, principal_id=SAM.oid)
    assert created.id in [a.id for a in mine]
    roles.delete_role_assignment(client, created.id)
    assert created.id not in [
        a.id for a in roles.list_role_assignments(client, principal_id=SAM.oid)
    ]

    start = datetime.now(UTC)
    request = roles.create_role_eligibility_schedule_request(
        client,
        action="adminAssign",
        role_definition_id=paa.id,
        principal_id=SAM.oid,
        justification="test",
        start=start,
        end=start + timedelta(days=1),
    )
    assert request.action == "adminAssign" and request.principal_id == SAM.oid
    schedules = roles.list_role_eligibility_schedules(client, principal_id=SAM.oid)
    assert paa.id in [s.role_definition_id for s in schedules]
    requests_seen = roles.list_role_eligibility_schedule_requests(client, principal_id=SAM.oid)
    assert request.id in [r.id for r in requests_seen]


def test_injected_503s_are_retried(emulator_faults: EmulatorServer) -> None:
    emulator_faults.faults.configure(
        fail_next=[{"method": "GET", "path_regex": "/v1.0/users/", "status": 503, "count": 2}]
    )
    client = client_for(emulator_faults, backoff_base=0.05)
    assert users.get_user(client, SAM.oid).id == SAM.oid


def test_injected_500_on_a_post_is_not_repeated(fresh_tenant: EmulatorServer) -> None:
    fresh_tenant.throttle.configure(limits={"reports": (50, 10.0)})
    fresh_tenant.faults.configure(
        fail_next=[{"method": "POST", "path_regex": "temporaryAccessPassMethods", "status": 500}]
    )
    client = client_for(
        fresh_tenant, budgets={"reports": BudgetRate(50, 10), "identity": BudgetRate(3500, 10)}
    )
    with pytest.raises(GraphTransient) as caught:
        methods.create_temporary_access_pass(
            client, SAM.oid, lifetime_in_minutes=60, is_usable_once=True
        )
    assert caught.value.code == "OutcomeUnknown"
    # It was not retried behind the caller's back: the next one goes through.
    tap = methods.create_temporary_access_pass(
        client, SAM.oid, lifetime_in_minutes=60, is_usable_once=True
    )
    assert tap.pass_value


def test_shared_budget_keeps_the_client_under_graphs_limit(
    real_graph_budget: EmulatorServer,
) -> None:
    """The real 5-per-10-s reports limit on both sides: 7 calls, no 429 from the emulator."""
    before = real_graph_budget.throttle.throttled_count
    client = client_for(real_graph_budget)
    assert client.config.budgets["reports"] == BudgetRate(5, 10)
    started = time.monotonic()
    for _ in range(7):
        methods.list_methods(client, SAM.oid)
    assert real_graph_budget.throttle.throttled_count == before
    assert time.monotonic() - started >= 3.0  # two calls had to wait for a refill


def test_429s_are_honoured_when_the_budget_is_too_generous(
    emulator_faults: EmulatorServer,
) -> None:
    emulator_faults.throttle.configure(limits={"reports": (3, 3.0)}, enabled=True)
    before = emulator_faults.throttle.throttled_count
    client = client_for(
        emulator_faults,
        budgets={"reports": BudgetRate(100, 1), "identity": BudgetRate(3500, 10)},
        max_retry_wait=10.0,
    )
    for _ in range(5):
        methods.list_methods(client, SAM.oid)
    # Graph (the emulator) did throttle, and every call still succeeded after Retry-After.
    assert emulator_faults.throttle.throttled_count > before
    # Only the throttled class was paused.
    assert client.budget.pause_remaining("identity") == 0
