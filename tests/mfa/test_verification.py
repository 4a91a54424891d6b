"""Caller verification (mfa.verification): the emailed code and the manual check.

The code's life: sent (only its salted hash stored, the email in the demo mailbox), read back
right or wrong, with limited tries, expiry, and only for the agent who sent it and the target it
was sent for.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from audit.models import PortalEvent
from graph.results import User
from mfa.models import CallerVerification, MailboxMessage, Tier
from mfa.policy import TargetProfile
from mfa.verification import (
    VerificationFailed,
    code_destinations,
    verification_check_code,
    verification_current,
    verification_pending,
    verification_record_manual,
    verification_send_code,
)
from tests.personas import PERSONAS, portal_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _demo_mailbox(settings: Settings) -> None:
    """pytest-django swaps in the locmem backend; these tests read the demo's real mailbox."""
    settings.EMAIL_BACKEND = "mfa.mailbox.MailboxBackend"


MANAGER = User(
    id="11111111-2222-4333-8444-555555555555",
    display_name="Mia Manager",
    user_principal_name="mia.manager@contoso-demo.onmicrosoft.com",
    mail="mia.manager@contoso-demo.onmicrosoft.com",
)


def _profile(
    user_id: str = PERSONAS.standard_target.oid,
    *,
    manager: User | None = MANAGER,
    other_mails: tuple[str, ...] = ("sam.home@example.org",),
) -> TargetProfile:
    user = User(
        id=user_id,
        display_name="Sam Standard",
        user_principal_name=PERSONAS.standard_target.upn,
        mail=PERSONAS.standard_target.upn,
        other_mails=other_mails,
    )
    return TargetProfile(
        user=user, manager=manager, roles=(), protected_groups=(), tier=Tier.STANDARD
    )


def _sent_code() -> str:
    """The code of the newest email in the demo mailbox."""
    mail = MailboxMessage.objects.order_by("-id").first()
    assert mail is not None
    match = re.search(r"\b(\d{3}) (\d{3})\b", mail.body)
    assert match, mail.body
    return match.group(1) + match.group(2)


def test_code_goes_to_the_manager_and_only_its_hash_is_stored() -> None:
    ada = portal_user(PERSONAS.agent)
    verification = verification_send_code(agent=ada, profile=_profile(), destination="manager")

    mail = MailboxMessage.objects.get()
    assert mail.to == [MANAGER.mail]
    assert "Ada Agent" in mail.body and "Sam Standard" in mail.body
    code = _sent_code()
    stored = CallerVerification.objects.get(pk=verification.pk)
    assert code not in stored.code_hash and len(stored.code_hash) > 64
    assert stored.sent_to_masked == "m**********@contoso-demo.onmicrosoft.com"
    assert stored.sent_to_kind == "manager"
    assert stored.verified_at is None
    event = PortalEvent.objects.get(kind="verification_code_sent")
    assert event.target_id == PERSONAS.standard_target.oid
    assert code not in str(event.detail)
    assert verification_pending(agent=ada, target_id=PERSONAS.standard_target.oid) == stored


def test_right_code_verifies_and_backs_actions_for_the_same_agent_and_target() -> None:
    ada = portal_user(PERSONAS.agent)
    profile = _profile()
    verification = verification_send_code(agent=ada, profile=profile, destination="alternate")
    assert MailboxMessage.objects.get().to == ["sam.home@example.org"]
    code = _sent_code()

    spoken = f"{code[:3]} {code[3:]}"
    done = verification_check_code(verification=verification, agent=ada, code=spoken)

    assert done.verified_at is not None and done.code_hash == ""
    assert verification_current(agent=ada, target_id=profile.user.id) == done
    assert done.is_valid_for(agent_id=ada.pk, target_id=profile.user.id)
    # Another agent, or another target, gets nothing from it.
    aaron = portal_user(PERSONAS.privileged_agent)
    assert verification_current(agent=aaron, target_id=profile.user.id) is None
    assert verification_current(agent=ada, target_id=PERSONAS.privileged_target.oid) is None
    assert not done.is_valid_for(agent_id=ada.pk, target_id=PERSONAS.privileged_target.oid)
    assert PortalEvent.objects.filter(kind="verification_succeeded").count() == 1


def test_wrong_code_counts_tries_and_the_last_one_ends_the_verification() -> None:
    ada = portal_user(PERSONAS.agent)
    verification = verification_send_code(agent=ada, profile=_profile(), destination="manager")
    code = _sent_code()
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    tries = settings.PORTAL_VERIFICATION_MAX_ATTEMPTS

    for left in range(tries - 1, 0, -1):
        with pytest.raises(VerificationFailed) as failed:
            verification_check_code(verification=verification, agent=ada, code=wrong)
        assert failed.value.tries_left == left
        assert f"{left} tr" in failed.value.message
    with pytest.raises(VerificationFailed) as failed:
        verification_check_code(verification=verification, agent=ada, code=wrong)
    assert failed.value.tries_left == 0

    # Out of tries: even the right code no longer works.
    with pytest.raises(VerificationFailed, match="no longer works"):
        verification_check_code(verification=verification, agent=ada, code=code)
    row = CallerVerification.objects.get(pk=verification.pk)
    assert row.verified_at is None and row.failed_at is not None and row.attempts == tries
    assert verification_current(agent=ada, target_id=row.target_id) is None
    assert PortalEvent.objects.filter(kind="verification_failed").count() == tries + 1


def test_expired_code_is_refused() -> None:
    ada = portal_user(PERSONAS.agent)
    verification = verification_send_code(agent=ada, profile=_profile(), destination="manager")
    code = _sent_code()
    CallerVerification.objects.filter(pk=verification.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    with pytest.raises(VerificationFailed, match="expired"):
        verification_check_code(verification=verification, agent=ada, code=code)
    assert CallerVerification.objects.get(pk=verification.pk).verified_at is None


def test_another_agent_cannot_use_the_code() -> None:
    ada = portal_user(PERSONAS.agent)
    aaron = portal_user(PERSONAS.privileged_agent)
    verification = verification_send_code(agent=ada, profile=_profile(), destination="manager")
    with pytest.raises(VerificationFailed, match="another agent"):
        verification_check_code(verification=verification, agent=aaron, code=_sent_code())
    assert CallerVerification.objects.get(pk=verification.pk).verified_at is None


def test_code_for_another_target_cannot_be_checked_on_this_target_page() -> None:
    ada = portal_user(PERSONAS.agent)
    verification = verification_send_code(agent=ada, profile=_profile(), destination="manager")
    client = Client()
    client.force_login(ada)
    response = client.post(
        f"/users/{PERSONAS.privileged_target.oid}/verify/check/",
        {"verification": verification.pk, "code": _sent_code()},
    )
    assert response.status_code == 404
    assert CallerVerification.objects.get(pk=verification.pk).verified_at is None


def test_a_new_code_replaces_the_previous_one() -> None:
    ada = portal_user(PERSONAS.agent)
    first = verification_send_code(agent=ada, profile=_profile(), destination="manager")
    first_code = _sent_code()
    verification_send_code(agent=ada, profile=_profile(), destination="manager")
    with pytest.raises(VerificationFailed, match="no longer works"):
        verification_check_code(verification=first, agent=ada, code=first_code)


def test_verification_stops_backing_actions_after_the_max_age() -> None:
    ada = portal_user(PERSONAS.agent)
    profile = _profile()
    done = verification_record_manual(
        agent=ada,
        profile=profile,
        check=settings.PORTAL_MANUAL_CHECKS[0],
        evidence="Video call, face matched HR photo, passport shown.",
    )
    assert verification_current(agent=ada, target_id=profile.user.id) == done
    old = timezone.now() - timedelta(minutes=settings.PORTAL_VERIFICATION_MAX_AGE_MINUTES + 1)
    CallerVerification.objects.filter(pk=done.pk).update(verified_at=old)
    assert verification_current(agent=ada, target_id=profile.user.id) is None


def test_manual_check_needs_a_listed_check_and_real_evidence() -> None:
    ada = portal_user(PERSONAS.agent)
    with pytest.raises(VerificationFailed, match="listed checks"):
        verification_record_manual(
            agent=ada, profile=_profile(), check="Looked trustworthy", evidence="x" * 40
        )
    with pytest.raises(VerificationFailed, match="at least"):
        verification_record_manual(
            agent=ada, profile=_profile(), check=settings.PORTAL_MANUAL_CHECKS[0], evidence="ok"
        )
    assert not CallerVerification.objects.exists()
    done = verification_record_manual(
        agent=ada,
        profile=_profile(),
        check=settings.PORTAL_MANUAL_CHECKS[1],
        evidence="Called back +44 20 7946 0123 from HR record; caller answered.",
    )
    assert done.method == "manual" and done.verified_at is not None
    event = PortalEvent.objects.get(kind="verification_manual")
    assert event.detail["check"] == settings.PORTAL_MANUAL_CHECKS[1]


def test_no_address_means_no_code() -> None:
    ada = portal_user(PERSONAS.agent)
    bare = _profile(manager=None, other_mails=())
    assert code_destinations(bare) == []
    with pytest.raises(VerificationFailed, match="no manager with an email address"):
        verification_send_code(agent=ada, profile=bare, destination="manager")
    with pytest.raises(VerificationFailed, match="alternate"):
        verification_send_code(agent=ada, profile=bare, destination="alternate")
    assert not MailboxMessage.objects.exists() and not CallerVerification.objects.exists()
