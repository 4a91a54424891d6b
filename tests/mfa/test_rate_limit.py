"""The per-agent rate limit under concurrency, and overrides that grant a number of requests.

Issue 10, point 3: 30 parallel posts against a limit of 20 created 27 requests (the count ran
outside any per-agent lock), an override gave 15 minutes of unlimited requests, and a Lead could
override a fellow Lead's limit. No worker runs here: only the created rows are counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client, TestCase
from pytest_django.fixtures import Settings

from audit.models import PortalEvent
from mfa import policy, services
from mfa.models import ActionKind, ActionRequest, Status
from mfa.policy import RateLimited
from portal.graph_client import get_graph_client
from tests.personas import PERSONAS, Persona, portal_user, signed_in

SAM = PERSONAS.standard_target
REASON = "Caller lost their phone and needs to sign in again today"


def _profiles(count: int) -> list[policy.TargetProfile]:
    """``count`` standard people: Sam's profile (read from Graph once) under fresh object ids,
    so that no per-person rule (one open request per person) gets in the way of counting."""
    sam = policy.target_profile(get_graph_client(), SAM.oid, use_cache=False)
    return [
        dataclasses.replace(
            sam,
            user=dataclasses.replace(
                sam.user,
                id=str(uuid.uuid4()),
                display_name=f"Person {n}",
                user_principal_name=f"person{n}@example.test",
            ),
        )
        for n in range(count)
    ]


def _submit_in_parallel(agent: Any, profiles: list[policy.TargetProfile]) -> list[Any]:
    """One revoke-sessions request per profile, all released at the same moment, each in its own
    thread (its own database connection); the request made or the exception raised, each."""
    barrier = threading.Barrier(len(profiles))
    outcomes: list[Any] = []

    def submit(profile: policy.TargetProfile) -> None:
        try:
            barrier.wait(timeout=30)
            outcomes.append(
                services.action_request_create(
                    agent=agent,
                    profile=profile,
                    kind=ActionKind.REVOKE_SESSIONS,
                    reason=REASON,
                    ticket="INC0012345",
                    params={},
                    verification=None,
                    idempotency_key=uuid.uuid4().hex,
                )
            )
        except Exception as exc:  # collected and checked by the caller
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(p,)) for p in profiles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return outcomes


@contextlib.contextmanager
def _no_lock(*args: Any, **kwargs: Any) -> Iterator[None]:
    yield


@pytest.mark.parametrize("redis_lock", ["held", "lost"])
def test_parallel_submissions_make_exactly_the_limit(
    emulator: Any,
    transactional_db: None,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    redis_lock: str,
) -> None:
    """12 submissions at the same moment against a limit of 5: exactly 5 requests, 7 refusals.
    With the Redis lock lost (a failover), the database's row lock alone still holds."""
    settings.PORTAL_AGENT_RATE_LIMIT = 5
    if redis_lock == "lost":
        monkeypatch.setattr(services, "agent_lock", _no_lock, raising=False)
    agent = portal_user(PERSONAS.agent)

    outcomes = _submit_in_parallel(agent, _profiles(12))

    made = [o for o in outcomes if isinstance(o, ActionRequest)]
    limited = [o for o in outcomes if isinstance(o, RateLimited)]
    assert (len(made), len(limited)) == (5, 7), outcomes
    assert ActionRequest.objects.filter(requester=agent).count() == 5
    assert PortalEvent.objects.filter(kind=PortalEvent.Kind.ACTION_REQUESTED).count() == 5


# --- overrides, through the pages ------------------------------------------------------------


def _post_action(client: Client, kind: str = ActionKind.REVOKE_SESSIONS) -> Any:
    return client.post(
        f"/users/{SAM.oid}/actions/{kind}/",
        {"reason": REASON, "ticket": "INC0012345", "idempotency_key": uuid.uuid4().hex},
    )


def _request_made(client: Client) -> bool:
    """Post one revoke-sessions request for Sam: True when it was made (then it is cancelled at
    once, so the next one is not refused as "already open"), False when the limit refused it."""
    response = _post_action(client)
    if response.status_code == 409:
        assert "the limit is" in response.content.decode()
        return False
    assert response.status_code == 302, response.content.decode()[:2000]
    ActionRequest.objects.filter(open_slot__isnull=False).update(
        status=Status.CANCELLED, open_slot=None
    )
    return True


def _grant(client: Client, persona: Persona) -> str:
    """``client`` grants ``persona`` an override; the message the page then shows. (What the
    grant leaves for after the commit runs, as it would outside the test's transaction.)"""
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post(
            "/approvals/rate-override/",
            {"agent": portal_user(persona).pk, "comment": "Major incident, many callers"},
            follow=True,
        )
    assert response.status_code == 200
    return " ".join(str(m) for m in response.context["messages"])


@pytest.mark.django_db
def test_an_override_grants_a_number_of_requests_and_counts_them_down(
    emulator: Any, settings: Settings
) -> None:
    settings.PORTAL_AGENT_RATE_LIMIT = 1
    settings.PORTAL_RATE_OVERRIDE_REQUESTS = 2
    ada = signed_in(PERSONAS.agent)
    assert _request_made(ada)
    assert not _request_made(ada)

    leo = signed_in(PERSONAS.lead)
    assert "Override granted" in _grant(leo, PERSONAS.agent)

    # Two more, each naming the lead, then the limit again: not a stretch of unlimited time.
    assert [_request_made(ada) for _ in range(4)] == [True, True, False, False]
    grant = PortalEvent.objects.filter(kind=PortalEvent.Kind.RATE_OVERRIDE).earliest("seq")
    assert grant.actor_id == portal_user(PERSONAS.lead).pk and grant.detail["requests"] == 2
    overridden = ActionRequest.objects.exclude(rate_override_by=None)
    assert overridden.count() == 2
    assert {r.rate_override_by_id for r in overridden} == {portal_user(PERSONAS.lead).pk}
    assert PortalEvent.objects.filter(kind=PortalEvent.Kind.RATE_OVERRIDE).count() == 3


@pytest.mark.django_db
def test_a_leads_or_admins_override_needs_an_admin_other_than_them(
    emulator: Any, settings: Settings
) -> None:
    settings.PORTAL_AGENT_RATE_LIMIT = 1
    leo, lena = signed_in(PERSONAS.lead), signed_in(PERSONAS.other_lead)
    ana, abel = signed_in(PERSONAS.admin), signed_in(PERSONAS.other_admin)
    assert _request_made(leo) and not _request_made(leo)
    assert _request_made(ana) and not _request_made(ana)

    # A Lead does not override a fellow Lead, nor an Admin; nobody overrides themself. The
    # page does not offer them, and a forged post changes nothing.
    leo_pk, ana_pk = portal_user(PERSONAS.lead).pk, portal_user(PERSONAS.admin).pk
    page = lena.get("/approvals/").content.decode()
    assert f'value="{leo_pk}"' not in page and f'value="{ana_pk}"' not in page
    assert "Only an Admin" in _grant(lena, PERSONAS.lead)
    assert "Only an Admin" in _grant(lena, PERSONAS.admin)
    assert "Override granted" not in _grant(ana, PERSONAS.admin)
    assert not _request_made(leo) and not _request_made(ana)
    assert not PortalEvent.objects.filter(kind=PortalEvent.Kind.RATE_OVERRIDE).exists()

    # An Admin overrides a Lead; another Admin overrides an Admin.
    assert f'value="{leo_pk}"' in ana.get("/approvals/").content.decode()
    assert "Override granted" in _grant(ana, PERSONAS.lead)
    assert "Override granted" in _grant(abel, PERSONAS.admin)
    assert _request_made(leo) and _request_made(ana)
