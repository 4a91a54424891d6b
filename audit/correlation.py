"""Joining Entra's audit events to the portal requests that caused them.

An Entra event belongs to an ``ActionRequest`` when all of these hold:

- **target**: the event's targets include the request's target (``target_id``);
- **activity**: the activity is one the request's kind writes (:data:`EXPECTED_ACTIVITIES`);
- **time**: the event happened between the request's ``started_at`` minus the slack and its
  ``finished_at`` plus the slack (``AUDIT_CORRELATION_WINDOW_MINUTES``; a request still running
  has no end yet);
- **actor**: Entra names the portal's app (``initiatedBy.app.appId == ENTRA_CLIENT_ID``), or, in
  delegated mode, the agent who made the request (``initiatedBy.user.id`` == their oid).

When several requests qualify, the one whose actual run (``started_at`` to ``finished_at``, no
slack) is nearest to the event wins, a run containing it first; ties go to the later start.

Role membership events are explained by the portal's role changes instead
(``accounts.RoleChangeRequest``: same principal and role, the portal's app, during the change;
``accounts.role_services.role_changes_correlate`` records the link on the change itself).

An event of an MFA, session or role kind (:func:`is_watched`) made by anyone but the person
themselves, that no request or role change explains, is marked ``outside_portal``: someone
changed the account directly in Entra, or used the portal's credentials outside the portal.

Correlation is deterministic and idempotent: the sync runs it on every page it stores (new and
re-read events alike), and ``manage.py audit_backfill --recorrelate`` runs it over a period.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet

from audit.models import DirectoryAuditRecord
from mfa.models import ActionKind, ActionRequest

ADMIN_DELETED_METHOD = "Admin deleted security info"
ADMIN_REGISTERED_METHOD = "Admin registered security info"
SESSIONS_REVOKED = "Update StsRefreshTokenValidFrom Timestamp"
USER_UPDATED = "Update user"
MFA_REQUIREMENT_PROPERTY = "StrongAuthenticationRequirement"

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

# Changes to someone's sign-in security that the helpdesk would normally make through the portal.
_WATCHED_ACTIVITIES = frozenset(
    {
        ADMIN_DELETED_METHOD,
        ADMIN_REGISTERED_METHOD,
        "Admin updated security info",
        SESSIONS_REVOKED,
        "Revoke all refresh tokens for user",
        "Disable Strong Authentication",
        "Enable Strong Authentication",
    }
)


def modified_property_names(raw: Any) -> set[str]:
    """Names of the properties an event's targets say were modified."""
    names: set[str] = set()
    targets = raw.get("targetResources") if isinstance(raw, dict) else None
    for target in targets or ():
        for prop in (target or {}).get("modifiedProperties") or ():
            if isinstance(prop, dict) and prop.get("displayName"):
                names.add(str(prop["displayName"]))
    return names


def is_role_membership(activity: str) -> bool:
    """Direct and PIM role membership changes ("Add member to role", "Remove eligible member
    from role in PIM completed", ...)."""
    lowered = activity.lower()
    return " to role" in lowered or " from role" in lowered


def is_watched(record: DirectoryAuditRecord) -> bool:
    """Whether the event is an MFA, session or role change made to someone by someone else.

    A person's own registrations and revocations are self-service, not helpdesk work.
    """
    if record.initiated_by_kind == DirectoryAuditRecord.InitiatorKind.USER and (
        record.initiated_by_id and record.initiated_by_id == record.target_id
    ):
        return False
    if record.activity in _WATCHED_ACTIVITIES or is_role_membership(record.activity):
        return True
    return record.activity == USER_UPDATED and MFA_REQUIREMENT_PROPERTY in (
        modified_property_names(record.raw)
    )


def _kinds_for(activity: str) -> set[str]:
    return {kind for kind, activities in EXPECTED_ACTIVITIES.items() if activity in activities}


def expected_activities(request: ActionRequest) -> frozenset[str]:
    """What ``request`` makes Entra write; a re-registration revokes sessions only when asked."""
    activities = EXPECTED_ACTIVITIES.get(request.kind, frozenset())
    if request.kind == ActionKind.REREGISTER and not (request.params or {}).get("revoke_sessions"):
        activities = activities - {SESSIONS_REVOKED}
    return activities


def _distance(request: ActionRequest, moment: datetime) -> float:
    """Seconds between ``moment`` and the request's actual run (0 when it ran then)."""
    assert request.started_at is not None
    if moment < request.started_at:
        return (request.started_at - moment).total_seconds()
    if request.finished_at is not None and moment > request.finished_at:
        return (moment - request.finished_at).total_seconds()
    return 0.0


def _requester_oid(request: ActionRequest) -> str:
    profile = getattr(request.requester, "portal_profile", None)
    return str(getattr(profile, "oid", "") or request.requester.get_username())


@dataclass(frozen=True)
class CorrelationResult:
    """How many of the records given are now linked to a request, and how many are marked
    outside the portal."""

    linked: int
    outside: int


def _candidates(records: Sequence[DirectoryAuditRecord], slack: timedelta) -> list[ActionRequest]:
    """Every request that could explain one of ``records``: one query for the whole batch."""
    target_ids: set[str] = set()
    for record in records:
        target_ids.update(str(t) for t in (record.target_ids or []) if t)
        if record.target_id:
            target_ids.add(record.target_id)
    if not target_ids:
        return []
    earliest = min(r.activity_at for r in records) - slack
    latest = max(r.activity_at for r in records) + slack
    return list(
        ActionRequest.objects.filter(target_id__in=target_ids, started_at__isnull=False)
        .filter(started_at__lte=latest)
        .filter(Q(finished_at__isnull=True) | Q(finished_at__gte=earliest))
        .select_related("requester__portal_profile")
        .order_by("-started_at", "-id")
    )


def _explains(
    request: ActionRequest, record: DirectoryAuditRecord, slack: timedelta, client_id: str
) -> bool:
    if record.activity not in expected_activities(request):
        return False
    if request.target_id != record.target_id and request.target_id not in (record.target_ids or []):
        return False
    if request.kind == ActionKind.SET_MFA_STATE and MFA_REQUIREMENT_PROPERTY not in (
        modified_property_names(record.raw)
    ):
        return False
    assert request.started_at is not None
    if record.activity_at < request.started_at - slack:
        return False
    if request.finished_at is not None and record.activity_at > request.finished_at + slack:
        return False
    if record.initiated_by_kind == DirectoryAuditRecord.InitiatorKind.APP:
        return bool(client_id) and record.initiated_by_app_id == client_id
    # Delegated mode: Entra names the agent, acting with their own token through the portal.
    return bool(record.initiated_by_id) and record.initiated_by_id == _requester_oid(request)


def request_for(
    record: DirectoryAuditRecord,
    candidates: Iterable[ActionRequest],
    *,
    slack: timedelta,
    client_id: str,
) -> ActionRequest | None:
    """The request among ``candidates`` (newest start first) that explains ``record`` and ran
    nearest to it, if any."""
    if not _kinds_for(record.activity):
        return None
    best: ActionRequest | None = None
    best_distance = 0.0
    for request in candidates:
        if not _explains(request, record, slack, client_id):
            continue
        distance = _distance(request, record.activity_at)
        # Candidates come newest start first, so a tie keeps the later start.
        if best is None or distance < best_distance:
            best, best_distance = request, distance
    return best


def _role_change_explained(
    records: Sequence[DirectoryAuditRecord], slack: timedelta, client_id: str
) -> set[str]:
    """``entra_id`` of the role membership records that a portal role change explains."""
    from accounts.models import RoleChangeRequest

    role_records = [r for r in records if is_role_membership(r.activity)]
    if not role_records:
        return set()
    earliest = min(r.activity_at for r in role_records) - slack
    latest = max(r.activity_at for r in role_records) + slack
    changes = list(
        RoleChangeRequest.objects.filter(started_at__isnull=False, started_at__lte=latest)
        .filter(Q(finished_at__isnull=True) | Q(finished_at__gte=earliest))
        .values_list(
            "principal_id", "role_template_id", "started_at", "finished_at", "entra_event_ids"
        )
    )
    explained: set[str] = set()
    for record in role_records:
        ids = {str(i).lower() for i in record.target_ids or ()}
        by_portal = bool(client_id) and record.initiated_by_app_id.lower() == client_id.lower()
        for principal, template, started, finished, linked in changes:
            if record.entra_id in (linked or ()):
                explained.add(record.entra_id)
            elif (
                by_portal
                and principal.lower() in ids
                and template.lower() in ids
                and started is not None  # the query keeps only started changes
                and started - slack <= record.activity_at
                and (finished is None or record.activity_at <= finished + slack)
            ):
                explained.add(record.entra_id)
    return explained


def correlate_records(records: Sequence[DirectoryAuditRecord]) -> CorrelationResult:
    """Set ``action_request``, ``outside_portal`` and ``agent_oid`` (the requester when linked,
    else the initiating user) on each of ``records`` and save them.

    Call it inside the transaction that stored the records (the sync does, page by page).
    """
    if not records:
        return CorrelationResult(0, 0)
    slack = timedelta(minutes=settings.AUDIT_CORRELATION_WINDOW_MINUTES)
    client_id: str = settings.ENTRA_CLIENT_ID
    candidates = _candidates(records, slack)
    role_changes = _role_change_explained(records, slack, client_id)
    changed: list[DirectoryAuditRecord] = []
    linked = outside = 0
    for record in records:
        request = request_for(record, candidates, slack=slack, client_id=client_id)
        is_outside = request is None and record.entra_id not in role_changes and is_watched(record)
        linked += request is not None
        outside += is_outside
        before = (record.action_request_id, record.outside_portal, record.agent_oid)
        record.action_request_id = request.pk if request is not None else None
        record.outside_portal = is_outside
        # The history's agent filter reads agent_oid alone (audit.selectors): it must follow
        # the link, so it is derived here, where the link is made.
        record.agent_oid = record.derived_agent_oid(
            _requester_oid(request) if request is not None else None
        )
        if (record.action_request_id, record.outside_portal, record.agent_oid) != before:
            changed.append(record)
    if changed:
        DirectoryAuditRecord.objects.bulk_update(
            changed, ["action_request", "outside_portal", "agent_oid"], batch_size=500
        )
    return CorrelationResult(linked, outside)


def correlate_period(
    *, since: datetime, until: datetime | None = None, batch_size: int = 1000
) -> CorrelationResult:
    """Run :func:`correlate_records` again over every cached event in ``[since, until]``
    (for requests whose events were stored before the request's row was complete)."""
    queryset: QuerySet[DirectoryAuditRecord] = DirectoryAuditRecord.objects.filter(
        activity_at__gte=since
    )
    if until is not None:
        queryset = queryset.filter(activity_at__lte=until)
    linked = outside = 0
    batch: list[DirectoryAuditRecord] = []
    for record in queryset.order_by("activity_at", "id").iterator(chunk_size=batch_size):
        batch.append(record)
        if len(batch) == batch_size:
            result = correlate_records(batch)
            linked, outside, batch = linked + result.linked, outside + result.outside, []
    result = correlate_records(batch)
    return CorrelationResult(linked + result.linked, outside + result.outside)
