"""The person page's readers: the shell (``mfa.selectors.person_shell``), its Graph panels
(``mfa.panels.person_panel``) and the Entra events (``mfa.selectors.entra_events``, from the
local audit cache), through the real emulator and the real graph client.

What would break if these failed: one Graph panel's failure would blank the others (or none would
be reported), the small reports budget would be spent on sign-in preferences for a person with no
methods, an agent would see actions on their own account with no reason given, or the Entra
events panel would call Graph (or show another person's events).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from audit.models import DirectoryAuditRecord
from mfa import panels, selectors
from portal.graph_client import get_graph_client
from tests.mfa.action_requests import target_profile
from tests.personas import PERSONAS, portal_user

SAM = PERSONAS.standard_target
METHODS_PATH = rf"^/v1\.0/users/{SAM.oid}/authentication/methods$"
PREFERENCES_PATH = r"/beta/users/[^/]+/authentication/signInPreferences"


def _panel(name: str) -> panels.Panel:
    """The panel ``name``; the methods with the default method ("Show the default method")."""
    return panels.person_panel(
        get_graph_client(),
        oid=SAM.oid,
        panel=name,
        agent_key=PERSONAS.agent.oid,
        with_default=True,
    )


@pytest.mark.django_db
def test_person_panels_read_every_section(tenant: Any) -> None:
    methods, mfa = _panel(panels.METHODS_PANEL), _panel(panels.MFA_PANEL)
    assert (methods.error, methods.preferences_error, mfa.error) == (None, None, None)
    context = methods.context()
    assert context["methods"] and sum(row["is_default"] for row in context["methods"]) == 1
    assert context["default_known"] and context["preferences"] is not None
    assert mfa.context()["mfa_state"] is not None
    shell = selectors.person_shell(agent=portal_user(PERSONAS.agent), profile=target_profile(SAM))
    assert "revoke_sessions" in [action["kind"] for action in shell.actions]
    assert shell.no_action_reason == ""
    assert shell.context()["profile"].user.id == SAM.oid


@pytest.mark.django_db
def test_a_failed_methods_read_stays_in_its_panel(tenant: Any) -> None:
    tenant.faults.add_fail_next(
        "GET", METHODS_PATH, 403, "Authorization_RequestDenied", "Insufficient privileges."
    )
    # Armed, but never reached: with no methods the preferences are not worth a reports call.
    tenant.faults.add_fail_next("GET", PREFERENCES_PATH, 403, "Authorization_RequestDenied")
    methods = _panel(panels.METHODS_PANEL)
    assert methods.error is not None and methods.error.code == "Authorization_RequestDenied"
    assert methods.context()["methods"] == [] and not methods.context()["default_known"]
    assert methods.preferences_error is None
    mfa = _panel(panels.MFA_PANEL)
    assert mfa.error is None and mfa.context()["mfa_state"] is not None


@pytest.mark.django_db
def test_no_actions_on_your_own_account_says_why(tenant: Any) -> None:
    shell = selectors.person_shell(
        agent=portal_user(PERSONAS.agent), profile=target_profile(PERSONAS.agent)
    )
    assert shell.actions == []
    assert "your own account" in shell.no_action_reason


@pytest.mark.django_db
def test_entra_events_come_from_the_local_cache_newest_first() -> None:
    now = timezone.now()
    for minutes, target in ((30, SAM.oid), (5, SAM.oid), (1, PERSONAS.privileged_target.oid)):
        DirectoryAuditRecord.objects.create(
            entra_id=f"event-{minutes}",
            activity_at=now - timedelta(minutes=minutes),
            category="UserManagement",
            activity=f"Activity {minutes}",
            result="success",
            target_id=target,
            synced_at=now,
        )
    events = selectors.entra_events(viewer=portal_user(PERSONAS.agent), target_id=SAM.oid)
    assert [row.kind_label for row in events.rows] == ["Activity 5", "Activity 30"]
