"""The dry run (bulk.services.plan): every refusal, the tiers, the method counts read in bulk,
the calls and the time estimate, the size cap; stored as a draft, nothing sent."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from audit.models import PortalEvent
from bulk import services
from bulk.dry_run import parse_csv
from bulk.errors import BulkError, BulkNotAllowed, PlanRefused
from bulk.models import DRAFT, BulkItem, BulkOperation, Refusal
from mfa.models import ActionRequest
from tests.bulk.support import PHISHING_GROUP_ID, group_standard_ids, items, plan, rita
from tests.personas import PERSONAS, portal_user

pytestmark = pytest.mark.django_db


def test_the_phishing_group_dry_run_shows_every_refusal(tenant: Any) -> None:
    op = plan(group_id=PHISHING_GROUP_ID, actions=("revoke_sessions", "reregister"))
    people = items(op)
    by_refusal: dict[str, list[BulkItem]] = {}
    for item in people:
        by_refusal.setdefault(item.refusal, []).append(item)
    # 30 direct standard people + 3 in the nested group, included; the nested group itself is
    # not a person.
    assert len(by_refusal[""]) == 33
    assert all(i.tier == "standard" and i.included for i in by_refusal[""])
    (priya,) = by_refusal[Refusal.PRIVILEGED_WITHOUT_PAA]
    assert priya.target_id == PERSONAS.privileged_target.oid
    assert priya.tier == "privileged"
    assert "Privileged Authentication Administrator" in priya.refusal_text
    (starter,) = by_refusal[Refusal.STARTER]
    assert starter.target_id == PERSONAS.responder.oid
    assert len(by_refusal[Refusal.DISABLED]) == 1
    assert op.status == DRAFT and op.confirmed_at is None
    summary = op.dry_run
    assert summary["included"] == 33 and summary["refused"] == 3
    assert summary["counts"] == {
        "included": 33,
        Refusal.PRIVILEGED_WITHOUT_PAA: 1,
        Refusal.STARTER: 1,
        Refusal.DISABLED: 1,
    }
    # 33 > 25: a second person approves it.
    assert summary["approval_reasons"]
    # Nothing acted on, nothing queued: a draft.
    assert not ActionRequest.objects.exists()
    assert PortalEvent.objects.filter(kind="bulk_operation_planned").count() == 1


def test_methods_are_counted_from_the_registration_report_in_one_call(tenant: Any) -> None:
    op = plan(group_id=PHISHING_GROUP_ID, actions=("reregister",))
    included = [i for i in items(op) if i.included]
    assert all(i.methods_count is not None for i in included)
    # One page of the report for the whole group (the tenant has fewer than 999 people).
    assert op.dry_run["dry_run_calls"] == {"reports": 1}
    assert op.dry_run["methods_known"] is True
    assert op.dry_run["methods_total"] == sum(i.methods_count or 0 for i in included)


def test_the_estimate_counts_calls_per_class_at_the_budget_ceiling(tenant: Any) -> None:
    with override_settings(GRAPH_BUDGET_REPORTS="5/10"):
        op = plan(group_id=PHISHING_GROUP_ID, actions=("revoke_sessions", "reregister"))
    included = [i for i in items(op) if i.included]
    methods = sum(i.methods_count or 0 for i in included)
    calls = op.dry_run["calls"]
    # Re-registration: list, sign-in preferences, one delete per method, list again.
    assert calls["reports"] == 3 * len(included) + methods
    assert calls["identity"] >= len(included)  # one revoke each, plus the execution checks
    assert op.dry_run["slowest_class"] == "reports"
    assert op.dry_run["estimate_seconds"] == pytest.approx(calls["reports"] / 5 * 10, abs=0.1)
    text = op.dry_run["estimate_text"]
    assert text.startswith(f"33 people, about {calls['reports']:,} calls in the reports class")
    assert "at 5 per 10 s" in text


def test_pasted_people_duplicates_not_found_and_a_guest(tenant: Any) -> None:
    sam = PERSONAS.standard_target
    guests = [u["id"] for u in tenant.tenant.users.values() if u.get("userType") == "Guest"]
    asked = [sam.upn, sam.upn.upper(), sam.oid, "nobody.here@contoso.example", *guests[:1]]
    op = plan(asked)
    refusals = [i.refusal for i in items(op)]
    expected = ["", Refusal.DUPLICATE, Refusal.DUPLICATE, Refusal.NOT_FOUND]
    if guests:
        expected.append(Refusal.GUEST)
    assert refusals == expected
    assert op.dry_run["included"] == 1
    assert not op.dry_run["approval_reasons"]  # one standard person: no approval


def test_staff_and_break_glass_need_an_admins_confirmation(tenant: Any) -> None:
    sam = PERSONAS.standard_target
    with override_settings(PORTAL_BREAK_GLASS_IDS=[sam.oid.lower()]):
        op = plan([PERSONAS.agent.upn, sam.upn])
    ada, sam_item = items(op)
    assert ada.refusal == Refusal.STAFF_OR_BREAK_GLASS  # a portal Agent
    assert sam_item.refusal == Refusal.STAFF_OR_BREAK_GLASS  # the configured break-glass id
    with pytest.raises(BulkNotAllowed):
        services.confirm_person(op, sam_item, by=portal_user(PERSONAS.lead))
    services.confirm_person(op, sam_item, by=portal_user(PERSONAS.admin))
    sam_item.refresh_from_db()
    assert sam_item.included and sam_item.admin_confirmed_by_name == "Ana Admin"
    op.refresh_from_db()
    assert op.dry_run["included"] == 1
    # Ada holds a portal role: privileged, and Rita has no PAA: an Admin cannot include her.
    with pytest.raises(BulkError, match="Privileged Authentication Administrator"):
        services.confirm_person(op, ada, by=portal_user(PERSONAS.admin))


def test_a_privileged_person_is_included_for_a_paa_holder_and_needs_approval(
    tenant: Any,
) -> None:
    # Aaron holds PAA but is an Agent: only Responders and Admins start bulk operations.
    with pytest.raises(BulkNotAllowed):
        plan([PERSONAS.privileged_target.upn], starter=portal_user(PERSONAS.privileged_agent))
    with override_settings(PORTAL_MIRROR_ENTRA_TIERING=False):
        op = plan([PERSONAS.privileged_target.upn])
    (priya,) = items(op)
    assert priya.included and priya.tier == "privileged"
    assert op.dry_run["privileged"] == 1
    assert any("privileged" in r for r in op.dry_run["approval_reasons"])


def test_the_size_cap_refuses_with_nothing_stored(tenant: Any) -> None:
    people = group_standard_ids(tenant, 4)
    with override_settings(PORTAL_BULK_MAX_PEOPLE=3), pytest.raises(PlanRefused, match="at most 3"):
        plan(people)
    assert not BulkOperation.objects.exists()
    with pytest.raises(BulkError, match="at least one person"):
        plan([])
    with pytest.raises(BulkError, match="no such group"):
        plan(group_id="00000000-0000-0000-0000-00000000dead")
    assert not BulkOperation.objects.exists()


def test_csv_columns() -> None:
    assert parse_csv(b"Name,UPN\nSam,sam@x.example\n,\nAda,ada@x.example\n") == [
        "sam@x.example",
        "ada@x.example",
    ]
    assert parse_csv("objectId\n1234\n") == ["1234"]
    # No known column: the first; its first row is data when it looks like a UPN.
    assert parse_csv("sam@x.example,1\nada@x.example,2\n") == ["sam@x.example", "ada@x.example"]
    assert parse_csv("who\nsam@x.example\n") == ["sam@x.example"]


def test_only_responders_and_admins_plan(tenant: Any) -> None:
    for persona in (PERSONAS.agent, PERSONAS.lead, PERSONAS.outsider):
        with pytest.raises(BulkNotAllowed):
            plan([PERSONAS.standard_target.upn], starter=portal_user(persona))
    assert plan([PERSONAS.standard_target.upn], starter=portal_user(PERSONAS.admin)).pk
    assert rita().pk


def test_a_protected_group_member_follows_the_privileged_rule(tenant: Any) -> None:
    """Guard rails: a member of a protected group (PORTAL_PROTECTED_GROUP_IDS) with no role is
    privileged, so a starter without PAA cannot include them, as for a role holder."""
    from django.core.cache import cache

    from entra_emulator.seed import GROUP_IDS, PROTECTED_GROUP
    from mfa import policy
    from portal.graph_client import get_graph_client

    executives = sorted(tenant.tenant.group_members[GROUP_IDS[PROTECTED_GROUP]])
    with override_settings(PORTAL_PROTECTED_GROUP_IDS=[]):
        member = next(
            oid
            for oid in executives
            if policy.target_profile(get_graph_client(), oid, use_cache=False).tier == "standard"
        )
    cache.clear()  # the profiles read above knew of no protected group
    with override_settings(PORTAL_PROTECTED_GROUP_IDS=[GROUP_IDS[PROTECTED_GROUP].upper()]):
        (item,) = items(plan([member]))
    assert item.tier == "privileged" and not item.included
    assert item.refusal == Refusal.PRIVILEGED_WITHOUT_PAA
    assert PROTECTED_GROUP in item.refusal_text
