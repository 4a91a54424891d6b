"""What mfa tells audit about action requests (``audit.sources``): the model history links to,
its labels, and the Entra events each kind of request makes.

audit imports no mfa module (the portal's one-way dependencies); ``MfaConfig.ready()`` imports
this module, which registers mfa as audit's request source.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.db.models import Q

from audit.correlation import (
    ADMIN_DELETED_METHOD,
    ADMIN_REGISTERED_METHOD,
    MFA_REQUIREMENT_PROPERTY,
    SESSIONS_REVOKED,
    USER_UPDATED,
)
from audit.models import DirectoryAuditRecord
from audit.sources import PortalChange, RequestSource, request_source_register
from mfa.models import ActionKind, ActionRequest, Status, Tier, VerificationMethod

# What each kind of portal request makes Entra write (GRAPH.md, "audit events"; the emulator
# writes the same). Re-registration may also revoke sessions; issuing a pass may first remove
# the person's earlier one.
EXPECTED_ACTIVITIES: dict[str, frozenset[str]] = {
    ActionKind.REREGISTER: frozenset({ADMIN_DELETED_METHOD, SESSIONS_REVOKED}),
    ActionKind.REVOKE_SESSIONS: frozenset({SESSIONS_REVOKED}),
    ActionKind.ISSUE_TAP: frozenset({ADMIN_REGISTERED_METHOD, ADMIN_DELETED_METHOD}),
    ActionKind.SET_MFA_STATE: frozenset({USER_UPDATED}),
    ActionKind.DELETE_METHOD: frozenset({ADMIN_DELETED_METHOD}),
}


def expected_activities(request: ActionRequest) -> frozenset[str]:
    """What ``request`` makes Entra write; a re-registration revokes sessions only when asked."""
    activities = EXPECTED_ACTIVITIES.get(request.kind, frozenset())
    if request.kind == ActionKind.REREGISTER and not (request.params or {}).get("revoke_sessions"):
        activities = activities - {SESSIONS_REVOKED}
    return activities


def _requester_oid(request: ActionRequest) -> str:
    profile = getattr(request.requester, "portal_profile", None)
    return str(getattr(profile, "oid", "") or request.requester.get_username())


def portal_change(request: ActionRequest) -> PortalChange:
    """``request`` (started) as correlation sees it."""
    assert request.started_at is not None
    return PortalChange(
        pk=request.pk,
        target_ids=frozenset({request.target_id}),
        activities=expected_activities(request),
        started_at=request.started_at,
        finished_at=request.finished_at,
        agent_oid=_requester_oid(request),
        # "Update user" is the portal's only when it changed the per-user MFA state.
        required_properties=(
            frozenset({MFA_REQUIREMENT_PROPERTY})
            if request.kind == ActionKind.SET_MFA_STATE
            else frozenset()
        ),
    )


def action_request_changes(
    records: Sequence[DirectoryAuditRecord], slack: timedelta
) -> list[PortalChange]:
    """Every started request that could explain one of ``records`` (same target, run within
    ``slack`` of them), newest start first: one query for the whole batch."""
    target_ids: set[str] = set()
    for record in records:
        target_ids.update(str(t) for t in (record.target_ids or []) if t)
        if record.target_id:
            target_ids.add(record.target_id)
    if not target_ids:
        return []
    earliest = min(r.activity_at for r in records) - slack
    latest = max(r.activity_at for r in records) + slack
    requests = (
        ActionRequest.objects.filter(target_id__in=target_ids, started_at__isnull=False)
        .filter(started_at__lte=latest)
        .filter(Q(finished_at__isnull=True) | Q(finished_at__gte=earliest))
        .select_related("requester__portal_profile")
        .order_by("-started_at", "-id")
    )
    return [portal_change(request) for request in requests]


REQUEST_SOURCE = RequestSource(
    model=ActionRequest,
    changes=action_request_changes,
    kind_labels=dict(ActionKind.choices),
    status_labels=dict(Status.choices),
    verification_labels=dict(VerificationMethod.choices),
    done_statuses=(Status.SUCCEEDED, Status.PARTIALLY_SUCCEEDED, Status.FAILED),
    stopped_statuses=(Status.REJECTED, Status.CANCELLED, Status.EXPIRED),
    privileged_tier=Tier.PRIVILEGED,
)

request_source_register(REQUEST_SOURCE)
