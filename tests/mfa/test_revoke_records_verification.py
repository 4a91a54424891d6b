"""Revoking sessions needs no caller verification, but records the one the agent holds (issue 13:
it recorded "Caller verification: None (not needed)" while the agent held a valid one)."""

from __future__ import annotations

from typing import Any

from audit.models import PortalEvent
from mfa.models import ActionKind
from tests.mfa.action_requests import action_request_make, manual_verification, target_profile
from tests.personas import PERSONAS, portal_user


def test_revoking_sessions_records_the_verification_the_agent_holds(
    fresh_tenant: Any, db: None
) -> None:
    ada = portal_user(PERSONAS.agent)
    profile = target_profile(PERSONAS.standard_target)
    held = manual_verification(ada, profile)
    row = action_request_make(
        ActionKind.REVOKE_SESSIONS, agent=ada, profile=profile, verification=held
    )
    assert row.verification == held
    requested = PortalEvent.objects.get(request=row.pk, kind=PortalEvent.Kind.ACTION_REQUESTED)
    assert requested.detail["verification"] == held.pk
