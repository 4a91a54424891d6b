"""The person-page selector (``mfa.selectors.person_page``) and the Entra-events read, through the
real emulator and the real graph client.

What would break if these failed: one Graph section's failure would blank the whole person page
(or none would be reported), the small reports budget would be spent on sign-in preferences for a
person with no methods, an agent would see actions on their own account with no reason given, or
a reload of the person page would spend Graph calls on Entra events read a moment ago.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from mfa import selectors
from portal.graph_client import get_graph_client
from tests.mfa.action_requests import target_profile
from tests.personas import PERSONAS, portal_user

SAM = PERSONAS.standard_target
METHODS_PATH = rf"^/v1\.0/users/{SAM.oid}/authentication/methods$"
PREFERENCES_PATH = r"/beta/users/[^/]+/authentication/signInPreferences"
AUDITS_PATH = r"/v1\.0/auditLogs/directoryAudits"


@pytest.mark.django_db
def test_person_page_reads_every_section(tenant: Any) -> None:
    page = selectors.person_page(
        get_graph_client(), agent=portal_user(PERSONAS.agent), profile=target_profile(SAM)
    )
    assert (page.methods_error, page.preferences_error, page.mfa_error) == (None, None, None)
    assert page.methods and sum(row["is_default"] for row in page.methods) == 1
    assert page.default_known and page.preferences is not None and page.mfa_state is not None
    assert "revoke_sessions" in [action["kind"] for action in page.actions]
    assert page.no_action_reason == ""
    assert page.context()["profile"].user.id == SAM.oid


@pytest.mark.django_db
def test_a_failed_methods_read_stays_in_its_section(tenant: Any) -> None:
    tenant.faults.add_fail_next(
        "GET", METHODS_PATH, 403, "Authorization_RequestDenied", "Insufficient privileges."
    )
    # Armed, but never reached: with no methods the preferences are not worth a reports call.
    tenant.faults.add_fail_next("GET", PREFERENCES_PATH, 403, "Authorization_RequestDenied")
    page = selectors.person_page(
        get_graph_client(), agent=portal_user(PERSONAS.agent), profile=target_profile(SAM)
    )
    assert page.methods_error is not None and page.methods_error.code == (
        "Authorization_RequestDenied"
    )
    assert page.methods == [] and not page.default_known
    assert page.preferences is None and page.preferences_error is None
    assert page.mfa_error is None and page.mfa_state is not None
    assert page.actions  # the rest of the page is still there


@pytest.mark.django_db
def test_no_actions_on_your_own_account_says_why(tenant: Any) -> None:
    page = selectors.person_page(
        get_graph_client(),
        agent=portal_user(PERSONAS.agent),
        profile=target_profile(PERSONAS.agent),
    )
    assert page.actions == []
    assert "your own account" in page.no_action_reason


@pytest.mark.django_db
def test_entra_events_are_cached_but_a_failure_is_not(tenant: Any) -> None:
    cache.delete(f"mfa:entra-events:{SAM.oid}")
    tenant.faults.add_fail_next("GET", AUDITS_PATH, 403, "Authorization_RequestDenied")
    failed = selectors.entra_events(get_graph_client(), target_id=SAM.oid)
    assert failed.error is not None and failed.rows == []

    first = selectors.entra_events(get_graph_client(), target_id=SAM.oid)
    assert first.error is None
    # A failure armed now is not reached: the rows come from the cache.
    tenant.faults.add_fail_next("GET", AUDITS_PATH, 403, "Authorization_RequestDenied")
    again = selectors.entra_events(get_graph_client(), target_id=SAM.oid)
    assert again.error is None and again.rows == first.rows
    cache.delete(f"mfa:entra-events:{SAM.oid}")
