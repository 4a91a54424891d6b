"""What mfa tells audit about action requests (``audit.sources``): the model history links to,
its labels, and the Entra events each kind of request makes.

audit imports no mfa module (the portal's one-way dependencies); ``MfaConfig.ready()`` imports
this module, which registers mfa as audit's request source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from django.db.models import Q

from audit import activities as entra
from audit.models import DirectoryAuditRecord
from audit.sources import PortalChange, RequestSource, request_source_register
from mfa.models import ActionKind, ActionRequest, Status, Tier, VerificationMethod

# What each kind of portal request makes Entra write: every name Microsoft's audit activity
# reference gives for the act (audit/activities.py; the reference does not say which of them
# Entra picks). Re-registration may also revoke sessions; issuing a pass may first remove the
# person's earlier one. A FIDO2 key or a Windows Hello credential may be logged by the Device
# Registration Service rather than as "Admin deleted security info".
EXPECTED_ACTIVITIES: dict[str, frozenset[str]] = {
    ActionKind.REREGISTER: frozenset({*entra.METHOD_DELETIONS, entra.SESSIONS_REVOKED}),
    ActionKind.REVOKE_SESSIONS: frozenset({entra.SESSIONS_REVOKED}),
    ActionKind.ISSUE_TAP: frozenset(
        {entra.ADMIN_REGISTERED_SECURITY_INFO, entra.ADMIN_DELETED_SECURITY_INFO}
    ),
    ActionKind.SET_MFA_STATE: frozenset(entra.PER_USER_MFA_ACTIVITIES),
    ActionKind.DELETE_METHOD: frozenset(entra.METHOD_DELETIONS),
}


def expected_activities(request: ActionRequest) -> frozenset[str]:
    """What ``request`` makes Entra write; a re-registration revokes sessions only when asked.
    (A change of per-user MFA may also be an "Update user": :func:`portal_changes`.)"""
    activities = EXPECTED_ACTIVITIES.get(request.kind, frozenset())
    if request.kind == ActionKind.REREGISTER and not (request.params or {}).get("revoke_sessions"):
        activities = activities - {entra.SESSIONS_REVOKED}
    return activities


def _requester_oid(request: ActionRequest) -> str:
    profile = getattr(request.requester, "portal_profile", None)
    return str(getattr(profile, "oid", "") or request.requester.get_username())


def portal_changes(request: ActionRequest) -> list[PortalChange]:
    """``request`` (started) as correlation sees it: one change, or for a change of per-user
    MFA two, since "Update user" is the request's only when it modified
    StrongAuthenticationRequirement, while the reference's per-user MFA names need no property."""
    assert request.started_at is not None
    change = PortalChange(
        pk=request.pk,
        target_ids=frozenset({request.target_id}),
        activities=expected_activities(request),
        started_at=request.started_at,
        finished_at=request.finished_at,
        agent_oid=_requester_oid(request),
    )
    if request.kind != ActionKind.SET_MFA_STATE:
        return [change]
    update_user = replace(
        change,
        activities=frozenset({entra.USER_UPDATED}),
        required_properties=frozenset({entra.MFA_REQUIREMENT_PROPERTY}),
    )
    return [change, update_user]


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
    return [change for request in requests for change in portal_changes(request)]


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
