"""Joining Entra's audit events to the portal changes that caused them: the one rule.

A portal change (:class:`audit.sources.PortalChange`: an action request, a role change)
explains an Entra event when all of these hold (:func:`explains`):

- **target**: the event names every id the change names (the person; for a role change the
  person and the role's template id). An event names its targets' ids and, for a directory role,
  the template id of the member's ``Role.TemplateId`` modified property: in Entra's "Add member to
  role" / "Remove member from role" the Role target is the *directoryRole object* (its id is the
  tenant's own, not the template id), and only ``Role.TemplateId`` names the template
  (:func:`record_ids`);
- **activity**: the activity is one the change writes (for a change of per-user MFA state, the
  event must also have modified ``StrongAuthenticationRequirement``);
- **time**: the event happened between the change's ``started_at`` minus the slack and its
  ``finished_at`` plus the slack, the slack being ``AUDIT_CORRELATION_WINDOW_MINUTES``
  (:func:`correlation_window`; a change still running has no end yet);
- **actor**: Entra names the portal's app (``initiatedBy.app.appId == ENTRA_CLIENT_ID``), or, in
  delegated mode, the agent who asked for the change (``initiatedBy.user.id`` == their oid). For a
  change the portal asked PIM for (its activities include a PIM one), the directory's own
  membership event is initiated by the MS-PIM service (:data:`MS_PIM_APP_ID`) and counts too:
  PIM provisions the portal's request.

An event the flow already linked to the change (a role change's ``entra_event_ids``) is
explained whatever its time. History (:func:`correlate_records`), the roles page's "added
outside the portal" warning and the role services' links all ask this rule.

The flows hand their changes to audit through ``audit.sources`` (audit imports none of them).
An event is linked (``action_request``) to the request source's change that explains it and ran
nearest to it, a run containing it first; ties go to the later start. Changes of the other
sources (role changes) only explain: ``roles`` records their link on the change itself.

An event of an MFA, session or role kind (:func:`is_watched`) made by anyone but the person
themselves, that no change explains, is marked ``outside_portal``: someone changed the account
directly in Entra, or used the portal's credentials outside the portal.

Correlation is deterministic and idempotent: the sync runs it on every page it stores (new and
re-read events alike), and ``manage.py audit_backfill --recorrelate`` runs it over a period.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from accounts.app_roles import portal_service_principal_id
from audit import activities
from audit.models import DirectoryAuditRecord
from audit.sources import PortalChange, change_sources, request_source

# Entra's activity names, from Microsoft's audit activity reference (audit/activities.py).
ADMIN_DELETED_METHOD = activities.ADMIN_DELETED_SECURITY_INFO
ADMIN_REGISTERED_METHOD = activities.ADMIN_REGISTERED_SECURITY_INFO
SESSIONS_REVOKED = activities.SESSIONS_REVOKED
USER_UPDATED = activities.USER_UPDATED
MFA_REQUIREMENT_PROPERTY = activities.MFA_REQUIREMENT_PROPERTY
# The member's modified property naming the role's template id in Entra's "Add member to role" /
# "Remove member from role" (with Role.ObjectID, Role.DisplayName, Role.WellKnownObjectName).
ROLE_TEMPLATE_PROPERTY = "Role.TemplateId"
# The first-party app that initiates the directory's membership events for changes PIM
# provisions ("MS-PIM"; Microsoft's audit reference names no initiator, so both its well-known
# appId and its display name are accepted: app-initiated events may carry a null appId).
MS_PIM_APP_ID = "01fc33a7-78ba-4d2f-a4b7-768e336e890e"
MS_PIM_DISPLAY_NAME = "MS-PIM"

# Changes to someone's sign-in security that the helpdesk would normally make through the portal.
_WATCHED_ACTIVITIES = activities.WATCHED_ACTIVITIES


def modified_property_names(raw: Any) -> set[str]:
    """Names of the properties an event's targets say were modified."""
    names: set[str] = set()
    targets = raw.get("targetResources") if isinstance(raw, dict) else None
    for target in targets or ():
        for prop in (target or {}).get("modifiedProperties") or ():
            if isinstance(prop, dict) and prop.get("displayName"):
                names.add(str(prop["displayName"]))
    return names


def _unquote(value: Any) -> str:
    """A modified property's value as text: Entra writes strings JSON-quoted (``"\"id\""``), and
    sometimes as a one-element JSON array."""
    text = str(value or "").strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1].strip()
    return text.strip('"').strip()


def role_template_ids(raw: Any) -> set[str]:
    """The role template ids an event's targets name in ``Role.TemplateId`` (old or new value),
    lower case."""
    found: set[str] = set()
    targets = raw.get("targetResources") if isinstance(raw, dict) else None
    for target in targets or ():
        for prop in (target or {}).get("modifiedProperties") or ():
            if isinstance(prop, dict) and prop.get("displayName") == ROLE_TEMPLATE_PROPERTY:
                for value in (prop.get("newValue"), prop.get("oldValue")):
                    if text := _unquote(value):
                        found.add(text.lower())
    return found


def record_ids(record: DirectoryAuditRecord) -> set[str]:
    """Every id an event names (lower case): its targets' ids and the role template ids of
    ``Role.TemplateId``. A role change matches on its template id here, since the Role target
    of a directory membership event is the directoryRole object, whose id differs."""
    return _targets(record) | role_template_ids(record.raw)


def is_ms_pim(record: DirectoryAuditRecord) -> bool:
    """Whether the MS-PIM service initiated the event (a change PIM provisioned)."""
    if record.initiated_by_kind != DirectoryAuditRecord.InitiatorKind.APP:
        return False
    app_id = (record.initiated_by_app_id or "").lower()
    return app_id == MS_PIM_APP_ID or (
        not app_id and record.initiated_by_name == MS_PIM_DISPLAY_NAME
    )


def is_pim_activity(activity: str) -> bool:
    """An activity PIM writes for a request ("... in PIM completed (...)", "... (PIM ...)")."""
    return re.search(r"\bPIM\b", activity) is not None


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


def correlation_window() -> timedelta:
    """The slack around a change's run within which its Entra events may fall
    (``AUDIT_CORRELATION_WINDOW_MINUTES``, read on every call so that a test may override it)."""
    return timedelta(minutes=settings.AUDIT_CORRELATION_WINDOW_MINUTES)


def _targets(record: DirectoryAuditRecord) -> set[str]:
    targets = {str(t).lower() for t in record.target_ids or () if t}
    if record.target_id:
        targets.add(record.target_id.lower())
    return targets


def is_portal_app(record: DirectoryAuditRecord, *, client_id: str | None = None) -> bool:
    """Whether Entra names the portal's own app as the event's initiator (by its client id,
    or, when Entra gives no appId, by its service principal's object id)."""
    client_id = settings.ENTRA_CLIENT_ID if client_id is None else client_id
    return record.initiated_by_kind == DirectoryAuditRecord.InitiatorKind.APP and _made_by(
        record, agent_oid="", client_id=client_id
    )


def _made_by(
    record: DirectoryAuditRecord, *, agent_oid: str, client_id: str, via_pim: bool = False
) -> bool:
    """Whether Entra names the portal's app, or (delegated mode) the agent ``agent_oid``, or,
    for a change the portal asked PIM for (``via_pim``), the MS-PIM service."""
    if via_pim and is_ms_pim(record):
        return True
    if record.initiated_by_kind == DirectoryAuditRecord.InitiatorKind.APP:
        if record.initiated_by_app_id:
            return bool(client_id) and record.initiated_by_app_id.lower() == client_id.lower()
        # Entra's app-initiated events may carry a null appId and only the servicePrincipalId
        # (public samples; the directoryAudit page does not say): then the portal is named by
        # its service principal's object id, looked up once (docs silent, see DEVNOTES).
        own = portal_service_principal_id() if record.initiated_by_id else ""
        return bool(own) and record.initiated_by_id.lower() == own
    return bool(agent_oid) and record.initiated_by_id == agent_oid


def may_explain(
    change: PortalChange, activity: str, activity_at: datetime, *, slack: timedelta
) -> bool:
    """The part of :func:`explains` that needs only an event's activity and time: ``change``
    makes that activity, and the time is within ``slack`` of its run. A caller holding only
    those columns of a record asks this first and reads the rest only when it holds."""
    if activity not in change.activities:
        return False
    if activity_at < change.started_at - slack:
        return False
    return change.finished_at is None or activity_at <= change.finished_at + slack


def explains(
    change: PortalChange,
    record: DirectoryAuditRecord,
    *,
    slack: timedelta | None = None,
    client_id: str | None = None,
) -> bool:
    """Whether ``change`` explains ``record``: the rule of this module's docstring (target,
    activity, time within ``slack`` of the run, actor). ``slack`` defaults to
    :func:`correlation_window`, ``client_id`` to ``ENTRA_CLIENT_ID``; pass them when asking
    about many records at once."""
    if record.entra_id in change.linked_entra_ids:
        return True
    slack = correlation_window() if slack is None else slack
    if not may_explain(change, record.activity, record.activity_at, slack=slack):
        return False
    wanted = {t.lower() for t in change.target_ids if t}
    if not wanted or not wanted <= record_ids(record):
        return False
    if change.required_properties and not change.required_properties <= (
        modified_property_names(record.raw)
    ):
        return False
    client_id = settings.ENTRA_CLIENT_ID if client_id is None else client_id
    via_pim = any(is_pim_activity(a) for a in change.activities)
    return _made_by(record, agent_oid=change.agent_oid, client_id=client_id, via_pim=via_pim)


def records_explained_by(change: PortalChange) -> list[DirectoryAuditRecord]:
    """The cached Entra records ``change`` explains, oldest first. The query narrows by
    activity and window; :func:`explains` decides."""
    slack = correlation_window()
    client_id: str = settings.ENTRA_CLIENT_ID
    records = DirectoryAuditRecord.objects.filter(
        activity__in=sorted(change.activities), activity_at__gte=change.started_at - slack
    )
    if change.finished_at is not None:
        records = records.filter(activity_at__lte=change.finished_at + slack)
    return [
        record
        for record in records.order_by("activity_at", "id")
        if explains(change, record, slack=slack, client_id=client_id)
    ]


def distance_from_run(change: PortalChange, moment: datetime) -> float:
    """Seconds between ``moment`` and the change's actual run, no slack (0 when it ran then):
    of several events (or changes) the rule accepts, the nearest is the one to take."""
    if moment < change.started_at:
        return (change.started_at - moment).total_seconds()
    if change.finished_at is not None and moment > change.finished_at:
        return (moment - change.finished_at).total_seconds()
    return 0.0


@dataclass(frozen=True)
class CorrelationResult:
    """How many of the records given are now linked to a request, and how many are marked
    outside the portal."""

    linked: int
    outside: int


def request_for(
    record: DirectoryAuditRecord,
    candidates: Iterable[PortalChange],
    *,
    slack: timedelta,
    client_id: str,
) -> PortalChange | None:
    """The request among ``candidates`` (newest start first) that explains ``record`` and ran
    nearest to it, if any."""
    best: PortalChange | None = None
    best_distance = 0.0
    for change in candidates:
        if not explains(change, record, slack=slack, client_id=client_id):
            continue
        distance = distance_from_run(change, record.activity_at)
        # Candidates come newest start first, so a tie keeps the later start.
        if best is None or distance < best_distance:
            best, best_distance = change, distance
    return best


def correlate_records(records: Sequence[DirectoryAuditRecord]) -> CorrelationResult:
    """Set ``action_request``, ``outside_portal`` and ``agent_oid`` (the requester when linked,
    else the initiating user) on each of ``records`` and save them.

    Call it inside the transaction that stored the records (the sync does, page by page).
    """
    if not records:
        return CorrelationResult(0, 0)
    slack = correlation_window()
    client_id: str = settings.ENTRA_CLIENT_ID
    candidates = request_source().changes(records, slack)
    others = [change for finder in change_sources() for change in finder(records, slack)]
    changed: list[DirectoryAuditRecord] = []
    linked = outside = 0
    for record in records:
        request = request_for(record, candidates, slack=slack, client_id=client_id)
        is_outside = (
            request is None
            and is_watched(record)
            and not any(explains(c, record, slack=slack, client_id=client_id) for c in others)
        )
        linked += request is not None
        outside += is_outside
        before = (record.action_request_id, record.outside_portal, record.agent_oid)
        record.action_request_id = request.pk if request is not None else None
        record.outside_portal = is_outside
        # The history's agent filter reads agent_oid alone (audit.selectors): it must follow
        # the link, so it is derived here, where the link is made.
        record.agent_oid = record.derived_agent_oid(
            request.agent_oid if request is not None else None
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
