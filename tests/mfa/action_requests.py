"""Action requests in tests: making one through the real service, waiting for its end, and
reading what the emulator's directory saw of it.

Named people come from tests/personas.py (``portal_user`` gives a persona's Django user);
waiting is tests/waiting.py's ``wait_for``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Final

from django.conf import settings
from django.core import mail
from django.test import override_settings

from mfa import policy, services
from mfa.models import ActionKind, ActionRequest, CallerVerification
from mfa.policy import TargetProfile
from mfa.verification import (
    Destination,
    verification_check_code,
    verification_record_manual,
    verification_send_code,
)
from portal.graph_client import get_graph_client
from tests.personas import PERSONAS, Persona, portal_user
from tests.waiting import wait_for

REASON = "Caller lost their phone and needs to sign in again today"
TICKET = "INC0012345"


class _Automatic:
    """The type of ``AUTOMATIC``: "a caller check that unlocks the kind alone, when the kind
    needs one": a manual check, or an emailed code read back where a manual check alone needs an
    approval (``PORTAL_MANUAL_CHECK_NEEDS_APPROVAL``)."""


AUTOMATIC: Final = _Automatic()


def target_profile(target: Persona = PERSONAS.standard_target) -> TargetProfile:
    """``target``'s profile read afresh from Graph (no cache), as the action form reads it."""
    return policy.target_profile(get_graph_client(), target.oid, use_cache=False)


def manual_verification(agent: Any, profile: TargetProfile) -> CallerVerification:
    """A succeeded manual caller check by ``agent`` for ``profile``'s person, made now."""
    return verification_record_manual(
        agent=agent,
        profile=profile,
        check=settings.PORTAL_MANUAL_CHECKS[0],
        evidence="Video call, face matched the HR photo, passport shown on camera.",
    )


def code_verification(agent: Any, profile: TargetProfile) -> CallerVerification:
    """A succeeded code check by ``agent`` for ``profile``'s person, made now: a code emailed to
    the manager (else the alternate address) and read back from the email, caught in memory
    (Django's locmem backend, ``mail.outbox``)."""
    destination: Destination = "manager" if profile.manager is not None else "alternate"
    # Whatever backend the test runs with, this one email is caught in memory.
    with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
        pending = verification_send_code(agent=agent, profile=profile, destination=destination)
        # The latest verification email (approvers' notices land in the outbox too).
        codes = [m for m in mail.outbox if m.subject.startswith("Helpdesk verification code")]
        match = re.search(r"\b(\d{3}) (\d{3})\b", str(codes[-1].body)) if codes else None
    assert match, "no code in the verification email"
    return verification_check_code(
        verification=pending, agent=agent, code=match.group(1) + match.group(2)
    )


def new_key() -> str:
    """A fresh idempotency key."""
    return uuid.uuid4().hex


def action_request_make(
    kind: str,
    *,
    agent: Any = None,
    profile: TargetProfile | None = None,
    params: dict[str, Any] | None = None,
    verification: CallerVerification | _Automatic | None = AUTOMATIC,
    reason: str = REASON,
    ticket: str = TICKET,
    idempotency_key: str | None = None,
    **options: Any,
) -> ActionRequest:
    """A request of ``kind`` made through the real ``mfa.services.action_request_create``, so
    every check of creation applies; its task is enqueued on commit as in the portal.

    Defaults: Ada Agent (``portal_user(PERSONAS.agent)``) asks about Sam Standard's profile read
    from Graph now, with no parameters, the usual reason and ticket and a fresh idempotency key.
    ``verification`` defaults to a caller check when the kind needs one (None otherwise): a
    manual check, or a code read back where a manual check alone would need an approval; pass a
    verification, or None, to choose. ``options`` go to the service as they are
    (``rate_override_by=...``). Raises what the service raises.
    """
    agent = agent if agent is not None else portal_user(PERSONAS.agent)
    profile = profile if profile is not None else target_profile()
    if isinstance(verification, _Automatic):
        if not ActionKind.needs_verification(kind):
            verification = None
        elif policy.manual_check_suffices(kind, params):
            verification = manual_verification(agent, profile)
        else:
            verification = code_verification(agent, profile)
    return services.action_request_create(
        agent=agent,
        profile=profile,
        kind=kind,
        reason=reason,
        ticket=ticket,
        params=params or {},
        verification=verification,
        idempotency_key=idempotency_key or new_key(),
        **options,
    )


def wait_final(request_id: int, *, timeout: float = 90.0) -> ActionRequest:
    """The request once it is in a final state (polled from the database)."""

    def final() -> ActionRequest | None:
        row = ActionRequest.objects.get(pk=request_id)
        return row if row.is_final else None

    return wait_for(final, timeout=timeout, what=f"request {request_id} to finish")


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
