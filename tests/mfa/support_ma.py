"""Helpers shared by MA's tests of mfa (policy, services, tasks, TAP vault, durability).

Named people come from tests/personas.py; ``portal_user`` gives the Django user a persona has
after signing in (its PortalProfile written by the real ``portal_profile_sync``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model

from accounts.services import portal_profile_sync
from mfa.models import ActionRequest, CallerVerification
from mfa.policy import TargetProfile
from mfa.verification import verification_record_manual
from tests.personas import Persona

REASON = "Caller lost their phone and needs to sign in again today"
TICKET = "INC0012345"


def portal_user(persona: Persona) -> Any:
    """The Django user of ``persona`` as after a sign-in with its app role (idempotent)."""
    user, _ = get_user_model().objects.get_or_create(username=persona.oid)
    portal_profile_sync(
        user=user,
        claims={
            "oid": persona.oid,
            "name": persona.display_name,
            "preferred_username": persona.upn,
            "roles": [persona.app_role] if persona.app_role else [],
        },
    )
    return get_user_model().objects.get(pk=user.pk)


def manual_verification(agent: Any, profile: TargetProfile) -> CallerVerification:
    """A succeeded manual caller check by ``agent`` for ``profile``'s person, made now."""
    return verification_record_manual(
        agent=agent,
        profile=profile,
        check=settings.PORTAL_MANUAL_CHECKS[0],
        evidence="Video call, face matched the HR photo, passport shown on camera.",
    )


def new_key() -> str:
    return uuid.uuid4().hex


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


def wait_final(request_id: int, *, timeout: float = 90.0) -> ActionRequest:
    """The request once it is in a final state (polled from the database)."""

    def final() -> ActionRequest | None:
        row = ActionRequest.objects.get(pk=request_id)
        return row if row.is_final else None

    row: ActionRequest = wait_for(final, timeout=timeout, what=f"request {request_id} to finish")
    return row


def emulator_audit(server: Any, *, target_id: str, activity_contains: str) -> list[dict[str, Any]]:
    """Entra audit events of the emulator about ``target_id`` whose activity contains a text
    (read from the running emulator's tenant, as its ``/_emulator/audit`` would answer)."""
    with server.tenant.lock:
        items = list(server.tenant.audit_events)
    found = []
    for event in items:
        if activity_contains not in str(event.get("activityDisplayName", "")):
            continue
        if any(t.get("id") == target_id for t in event.get("targetResources") or []):
            found.append(event)
    return found


def quiet_emulator_throttle(server: Any) -> None:
    """Turn the emulator's own throttling off for a test (the ``emulator_faults`` fixture turns
    it back on): the client's shared budget still paces calls, but a budget emptied between
    tests must not meet the emulator's window still full from the previous test."""
    server.throttle.configure(enabled=False)
