"""Building audit history for the history, export and dashboard tests.

Portal events are written through the real ``audit.services.portal_event_record`` (so the hash
chain holds), at a chosen time: the service stamps ``timezone.now()``, which ``at(...)`` fixes.
Action requests and Entra records are rows as ``mfa.services`` and ``audit.sync`` leave them;
the tests build them directly because what is under test here is reading them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

from django.utils import timezone

from audit.models import DirectoryAuditRecord, PortalEvent
from audit.services import portal_event_record
from mfa.models import (
    ActionKind,
    ActionRequest,
    CallerVerification,
    Status,
    Tier,
    VerificationMethod,
)
from tests.personas import Persona, portal_user

PORTAL_APP_NAME = "MFA helpdesk portal"
MANUAL_CHECK = "Video call: face matched the HR photo, government ID shown"


@contextmanager
def at(moment: datetime) -> Iterator[None]:
    """Make ``django.utils.timezone.now`` return ``moment`` inside the block."""
    with mock.patch("django.utils.timezone.now", return_value=moment):
        yield


def action_request(
    agent: Persona,
    target: Persona,
    *,
    created_at: datetime,
    kind: str = ActionKind.REREGISTER,
    status: str = Status.SUCCEEDED,
    ticket: str = "INC0012345",
    tier: str | None = None,
    finished_after: timedelta | None = timedelta(minutes=2),
    decided_by: Persona | None = None,
    verified: bool = True,
) -> ActionRequest:
    """A request by ``agent`` on ``target`` made at ``created_at``, as the services leave it."""
    user = portal_user(agent)
    verification = None
    if verified:
        verification = CallerVerification.objects.create(
            agent=user,
            target_id=target.oid,
            target_name=target.display_name,
            method=VerificationMethod.MANUAL,
            manual_check=MANUAL_CHECK,
            evidence="Passport shown on camera.",
            created_at=created_at - timedelta(minutes=3),
            expires_at=created_at + timedelta(minutes=7),
            verified_at=created_at - timedelta(minutes=2),
        )
    decider = portal_user(decided_by) if decided_by else None
    return ActionRequest.objects.create(
        kind=kind,
        status=status,
        requester=user,
        requester_name=agent.display_name,
        target_id=target.oid,
        target_upn=target.upn,
        target_name=target.display_name,
        target_tier=tier or (Tier.PRIVILEGED if target.privileged else Tier.STANDARD),
        reason="Caller lost their phone and needs to register again.",
        ticket=ticket,
        verification=verification,
        idempotency_key=uuid.uuid4().hex,
        decided_by=decider,
        decided_by_name=decided_by.display_name if decided_by else "",
        decided_at=created_at + timedelta(minutes=1) if decided_by else None,
        created_at=created_at,
        finished_at=created_at + finished_after if finished_after is not None else None,
    )


def request_event(
    row: ActionRequest, kind: str, moment: datetime, *, actor: Persona | None = None
) -> PortalEvent:
    """A portal event about request ``row`` at ``moment`` (by ``actor``, or by a task)."""
    with at(moment):
        return portal_event_record(
            kind=kind,
            actor=portal_user(actor) if actor else None,
            action_request_id=row.pk,
            target_id=row.target_id,
            target_name=row.target_name,
            ticket=row.ticket,
        )


def event(
    kind: str, moment: datetime, *, actor: Persona | None = None, **fields: Any
) -> PortalEvent:
    """A portal event not tied to a request (sign-in, verification, ...)."""
    with at(moment):
        return portal_event_record(kind=kind, actor=portal_user(actor) if actor else None, **fields)


def entra_record(
    moment: datetime,
    target: Persona | None,
    *,
    activity: str = "Admin deleted security info",
    category: str = "UserManagement",
    result: str = "success",
    request: ActionRequest | None = None,
    outside_portal: bool = False,
    initiated_by: Persona | None = None,
) -> DirectoryAuditRecord:
    """One cached Entra record: by the portal's app unless ``initiated_by`` names a person."""
    entra_id = f"Directory_{uuid.uuid4()}"
    by_user = initiated_by is not None
    return DirectoryAuditRecord.objects.create(
        entra_id=entra_id,
        activity_at=moment,
        category=category,
        activity=activity,
        result=result,
        result_reason="" if result == "success" else "Method is the default one",
        logged_by_service="Authentication Methods",
        operation_type="Delete",
        initiated_by_kind="user" if by_user else "app",
        initiated_by_id=initiated_by.oid if initiated_by else str(uuid.uuid4()),
        initiated_by_name=initiated_by.upn if initiated_by else PORTAL_APP_NAME,
        initiated_by_app_id="" if by_user else "3c1e9f2a-7d4b-4e6a-8f1c-0a9b8c7d6e5f",
        target_id=target.oid if target else "",
        target_name=target.display_name if target else "",
        target_upn=target.upn if target else "",
        target_ids=[target.oid] if target else [],
        correlation_id=str(uuid.uuid4()),
        raw={"id": entra_id, "activityDisplayName": activity},
        synced_at=timezone.now(),
        action_request=request,
        outside_portal=outside_portal,
    )
