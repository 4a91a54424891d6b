"""Caller verification: proving the caller on the line is the person the agent will act on.

Two ways, each recorded as a :class:`~mfa.models.CallerVerification` with its portal event:

* a six-digit one-time code emailed to the target's manager or alternate address
  (``otherMails``), read back by the caller: :func:`verification_send_code`, then
  :func:`verification_check_code`. The code is stored only as a salted HMAC (keyed with
  ``PORTAL_VERIFICATION_HMAC_KEY``, a secret of its own, never ``SECRET_KEY``) and compared in
  constant time; it expires after
  ``PORTAL_VERIFICATION_CODE_TTL_MINUTES`` and allows ``PORTAL_VERIFICATION_MAX_ATTEMPTS`` tries;
* a manual check chosen from ``PORTAL_MANUAL_CHECKS`` with the agent's written evidence:
  :func:`verification_record_manual`.

Both are capped, over sliding windows, so that neither becomes a way around the other: an agent
records at most ``PORTAL_MANUAL_CHECKS_PER_DAY`` manual checks in 24 hours; at most
``PORTAL_VERIFICATION_SENDS_PER_AGENT_TARGET`` codes go out per agent and person in an hour, and
``PORTAL_VERIFICATION_SENDS_PER_TARGET`` per person in an hour by all agents together (each code
mails the person's manager). A refusal says when the next one is possible and records nothing.

A verification backs actions for ``PORTAL_VERIFICATION_MAX_AGE_MINUTES`` after it succeeded, for
the same agent and the same target only (``CallerVerification.is_valid_for``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from accounts.roles import display_name_of
from audit.models import PortalEvent
from audit.services import portal_event_record
from graph.results import User, mask_email
from mfa.models import ActionRequest, CallerVerification, VerificationMethod

if TYPE_CHECKING:
    from mfa.policy import TargetProfile

Destination = Literal["manager", "alternate"]
CODE_DIGITS = 6
# Evidence shorter than this cannot say what was checked ("ok" is not evidence).
MIN_EVIDENCE_LENGTH = 15
MAX_EVIDENCE_LENGTH = 2000


class VerificationFailed(Exception):
    """A verification step did not succeed. ``message`` is written for the agent;
    ``tries_left`` is set for a wrong code that may still be retried (0 when none are left)."""

    def __init__(self, message: str, *, tries_left: int | None = None) -> None:
        self.message = message
        self.tries_left = tries_left
        super().__init__(message)


@dataclass(frozen=True)
class CodeDestination:
    """Where a code can go for one target: ``kind`` (manager / alternate), the masked address
    shown to the agent, and who it belongs to. ``address`` is the real one, for sending only."""

    kind: Destination
    label: str
    masked: str
    address: str


def code_destinations(profile: TargetProfile) -> list[CodeDestination]:
    """The places a code can be sent for ``profile``'s person, manager first; may be empty."""
    found: list[CodeDestination] = []
    manager: User | None = profile.manager
    if manager is not None:
        address = manager.mail or manager.user_principal_name
        if address and "@" in address:
            found.append(
                CodeDestination(
                    "manager", f"Manager ({manager.display_name})", mask_email(address), address
                )
            )
    alternates = [m for m in profile.user.other_mails if "@" in m]
    if alternates:
        found.append(
            CodeDestination(
                "alternate", "Alternate address on file", mask_email(alternates[0]), alternates[0]
            )
        )
    return found


def _code_hash(code: str, salt: str) -> str:
    # A keyed hash: a leaked database row alone does not let anyone test the 10^6 codes. The key
    # is the portal's own for this (not SECRET_KEY, which signs cookies and may leak with them).
    secret = str(settings.PORTAL_VERIFICATION_HMAC_KEY)
    digest = hmac.new(
        secret.encode(), f"mfa.verification:{salt}:{code}".encode(), hashlib.sha256
    ).hexdigest()
    return f"{salt}${digest}"


def _code_matches(code: str, stored: str) -> bool:
    salt, sep, _digest = stored.partition("$")
    if not sep:
        return False
    return hmac.compare_digest(_code_hash(code, salt), stored)


def _lock_agent(agent: Any) -> None:
    # Counting and inserting happen under the agent's row lock (PostgreSQL), so two tabs cannot
    # both pass the last free slot of a cap. SQLite serialises writers on its own.
    get_user_model().objects.select_for_update().filter(pk=agent.pk).exists()


def _when_free(oldest: datetime, window: timedelta) -> str:
    return timezone.localtime(oldest + window).strftime("%H:%M")


def _check_send_caps(*, agent: Any, target: User, now: datetime) -> None:
    """Raise VerificationFailed when another code for ``target`` would pass a send cap."""
    window = timedelta(hours=1)
    recent = CallerVerification.objects.filter(
        target_id=target.id, method=VerificationMethod.EMAIL_CODE, created_at__gt=now - window
    )
    mine = recent.filter(agent=agent)
    per_agent: int = settings.PORTAL_VERIFICATION_SENDS_PER_AGENT_TARGET
    per_target: int = settings.PORTAL_VERIFICATION_SENDS_PER_TARGET
    for rows, limit, whose in (
        (mine, per_agent, "You have sent"),
        (recent, per_target, "Agents have sent"),
    ):
        if rows.count() >= limit:
            oldest = rows.order_by("created_at").values_list("created_at", flat=True).first()
            assert oldest is not None
            raise VerificationFailed(
                f"{whose} {limit} verification code{'s' if limit != 1 else ''} for "
                f"{target.display_name} in the last hour, the most allowed (each one emails "
                f"their manager). Use a manual check, or send a new code after "
                f"{_when_free(oldest, window)}."
            )


def _check_manual_cap(*, agent: Any, now: datetime) -> None:
    """Raise VerificationFailed when ``agent`` has used up today's manual checks."""
    window = timedelta(hours=24)
    limit: int = settings.PORTAL_MANUAL_CHECKS_PER_DAY
    rows = CallerVerification.objects.filter(
        agent=agent, method=VerificationMethod.MANUAL, created_at__gt=now - window
    )
    if rows.count() >= limit:
        oldest = rows.order_by("created_at").values_list("created_at", flat=True).first()
        assert oldest is not None
        raise VerificationFailed(
            f"You have recorded {limit} manual check{'s' if limit != 1 else ''} in the last 24 "
            "hours, the most allowed. Verify this caller with a code instead, or record a "
            f"manual check again after {_when_free(oldest, window)}."
        )


def _normalise_code(code: str) -> str:
    # Callers read codes aloud in groups ("123 456"); spaces and dashes carry no meaning.
    return "".join(ch for ch in code if ch not in " -\t")


def _code_email(
    *, code: str, agent_name: str, target: User, to: str, destination: Destination
) -> EmailMessage:
    minutes = settings.PORTAL_VERIFICATION_CODE_TTL_MINUTES
    whose = "your report " if destination == "manager" else ""
    body = (
        f"A helpdesk agent, {agent_name}, is on a call with someone who says they are "
        f"{whose}{target.display_name} ({target.user_principal_name}).\n\n"
        f"If that is right, the caller should read this code back to the agent:\n\n"
        f"    {code[:3]} {code[3:]}\n\n"
        f"The code works for {minutes} minutes. If you do not know about this call, do not pass "
        f"the code on, and contact {settings.PORTAL_HELPDESK_CONTACT}.\n"
    )
    return EmailMessage(
        subject=f"Helpdesk verification code for {target.display_name}",
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to],
    )


def verification_send_code(
    *,
    agent: Any,
    profile: TargetProfile,
    destination: Destination,
    http_request: HttpRequest | None = None,
) -> CallerVerification:
    """Email a fresh six-digit code to ``profile``'s manager or alternate address.

    Earlier unfinished code verifications of the same agent for the same target stop counting
    (only the newest code can be read back). The row, the email and the ``verification_code_sent``
    event are written in one transaction. Raises VerificationFailed when the target has no such
    address or a send cap is reached (module docstring); any error of the email backend
    propagates (and nothing is recorded).
    """
    chosen = next((d for d in code_destinations(profile) if d.kind == destination), None)
    if chosen is None:
        what = (
            "manager with an email address"
            if destination == "manager"
            else "alternate email address"
        )
        raise VerificationFailed(
            f"{profile.user.display_name} has no {what} in the directory. "
            "Choose another way to verify the caller."
        )
    now = timezone.now()
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    target = profile.user
    with transaction.atomic():
        _lock_agent(agent)
        _check_send_caps(agent=agent, target=target, now=now)
        CallerVerification.objects.filter(
            agent=agent,
            target_id=target.id,
            method=VerificationMethod.EMAIL_CODE,
            verified_at__isnull=True,
            failed_at__isnull=True,
        ).update(failed_at=now, code_hash="")
        verification = CallerVerification.objects.create(
            agent=agent,
            target_id=target.id,
            target_name=target.display_name,
            method=VerificationMethod.EMAIL_CODE,
            sent_to_masked=chosen.masked,
            sent_to_kind=chosen.kind,
            code_hash=_code_hash(code, secrets.token_hex(16)),
            created_at=now,
            expires_at=now + timedelta(minutes=settings.PORTAL_VERIFICATION_CODE_TTL_MINUTES),
        )
        _code_email(
            code=code,
            agent_name=display_name_of(agent),
            target=target,
            to=chosen.address,
            destination=destination,
        ).send(fail_silently=False)
        portal_event_record(
            kind=PortalEvent.Kind.VERIFICATION_CODE_SENT,
            actor=agent,
            request=http_request,
            target_id=target.id,
            target_name=target.display_name,
            detail={
                "verification_id": verification.pk,
                "destination": chosen.kind,
                "sent_to": chosen.masked,
            },
        )
    return verification


def verification_check_code(
    *,
    verification: CallerVerification,
    agent: Any,
    code: str,
    http_request: HttpRequest | None = None,
) -> CallerVerification:
    """Check the code the caller read back; on success the verification is ``verified``.

    Raises VerificationFailed (and records ``verification_failed``) when the code is wrong (with
    ``tries_left``), expired, out of tries, superseded, or belongs to another agent. A wrong code
    uses up one of ``PORTAL_VERIFICATION_MAX_ATTEMPTS`` tries; the last one ends the verification.
    An already verified verification is returned unchanged.
    """
    max_attempts: int = settings.PORTAL_VERIFICATION_MAX_ATTEMPTS
    failure: VerificationFailed | None = None
    with transaction.atomic():
        # The row lock makes concurrent guesses count one by one against the limit.
        row = CallerVerification.objects.select_for_update().get(pk=verification.pk)
        now = timezone.now()
        if row.agent_id != agent.pk:
            failure = VerificationFailed(
                "This code was sent by another agent. Send a new code yourself."
            )
        elif row.method != VerificationMethod.EMAIL_CODE:
            failure = VerificationFailed("This verification has no code to check.")
        elif row.verified_at is not None:
            return row
        elif row.failed_at is not None:
            failure = VerificationFailed(
                "This code no longer works (a newer code was sent, or no tries were left). "
                "Send a new code."
            )
        elif now >= row.expires_at:
            row.failed_at = now
            row.code_hash = ""
            row.save(update_fields=["failed_at", "code_hash"])
            failure = VerificationFailed("The code has expired. Send a new code.", tries_left=0)
        else:
            row.attempts += 1
            if row.code_hash and _code_matches(_normalise_code(code), row.code_hash):
                row.verified_at = now
                # The hash has done its job; nothing code-shaped stays behind.
                row.code_hash = ""
                row.save(update_fields=["attempts", "verified_at", "code_hash"])
            else:
                tries_left = max(max_attempts - row.attempts, 0)
                fields = ["attempts"]
                if tries_left == 0:
                    row.failed_at = now
                    row.code_hash = ""
                    fields += ["failed_at", "code_hash"]
                    failure = VerificationFailed(
                        "Wrong code, and no tries are left. Send a new code, or choose a manual "
                        "check.",
                        tries_left=0,
                    )
                else:
                    failure = VerificationFailed(
                        f"Wrong code. {tries_left} {'try' if tries_left == 1 else 'tries'} left.",
                        tries_left=tries_left,
                    )
                row.save(update_fields=fields)
        portal_event_record(
            kind=(
                PortalEvent.Kind.VERIFICATION_FAILED
                if failure
                else PortalEvent.Kind.VERIFICATION_SUCCEEDED
            ),
            actor=agent,
            request=http_request,
            target_id=row.target_id,
            target_name=row.target_name,
            detail={
                "verification_id": row.pk,
                "attempts": row.attempts,
                "sent_to": row.sent_to_masked,
                **({"reason": failure.message} if failure else {}),
            },
        )
    if failure is not None:
        raise failure
    return row


def verification_record_manual(
    *,
    agent: Any,
    profile: TargetProfile,
    check: str,
    evidence: str,
    http_request: HttpRequest | None = None,
) -> CallerVerification:
    """Record a manual check from ``PORTAL_MANUAL_CHECKS`` with the agent's written evidence.

    The verification is ``verified`` at once. Raises VerificationFailed for a check not on the
    configured list, evidence shorter than MIN_EVIDENCE_LENGTH characters, or an agent who
    recorded ``PORTAL_MANUAL_CHECKS_PER_DAY`` manual checks in the last 24 hours.
    """
    if check not in settings.PORTAL_MANUAL_CHECKS:
        raise VerificationFailed("Choose one of the listed checks.")
    evidence = evidence.strip()
    if len(evidence) < MIN_EVIDENCE_LENGTH:
        raise VerificationFailed(
            f"Write what you checked and saw (at least {MIN_EVIDENCE_LENGTH} characters)."
        )
    if len(evidence) > MAX_EVIDENCE_LENGTH:
        raise VerificationFailed(f"Keep the evidence under {MAX_EVIDENCE_LENGTH} characters.")
    now = timezone.now()
    target = profile.user
    with transaction.atomic():
        _lock_agent(agent)
        _check_manual_cap(agent=agent, now=now)
        verification = CallerVerification.objects.create(
            agent=agent,
            target_id=target.id,
            target_name=target.display_name,
            method=VerificationMethod.MANUAL,
            manual_check=check,
            evidence=evidence,
            created_at=now,
            expires_at=now + timedelta(minutes=settings.PORTAL_VERIFICATION_MAX_AGE_MINUTES),
            verified_at=now,
        )
        portal_event_record(
            kind=PortalEvent.Kind.VERIFICATION_MANUAL,
            actor=agent,
            request=http_request,
            target_id=target.id,
            target_name=target.display_name,
            detail={"verification_id": verification.pk, "check": check, "evidence": evidence},
        )
    return verification


def verification_current(
    *, agent: Any, target_id: str, include_expired: bool = False
) -> CallerVerification | None:
    """The newest verification by ``agent`` for ``target_id`` that may back an action now.

    With ``include_expired``, the newest succeeded one however old: the action service then
    refuses it as too old, which tells the agent more than "verify first"."""
    max_age = timedelta(minutes=settings.PORTAL_VERIFICATION_MAX_AGE_MINUTES)
    rows = CallerVerification.objects.filter(
        agent=agent, target_id=target_id, verified_at__isnull=False
    )
    if not include_expired:
        rows = rows.filter(verified_at__gte=timezone.now() - max_age)
    return rows.order_by("-verified_at", "-id").first()


def verification_pending(*, agent: Any, target_id: str) -> CallerVerification | None:
    """The code verification by ``agent`` for ``target_id`` still waiting for its code, if any."""
    return (
        CallerVerification.objects.filter(
            agent=agent,
            target_id=target_id,
            method=VerificationMethod.EMAIL_CODE,
            verified_at__isnull=True,
            failed_at__isnull=True,
            expires_at__gt=timezone.now(),
        )
        .order_by("-created_at", "-id")
        .first()
    )


def verification_state(
    *, agent: Any, target_id: str
) -> tuple[CallerVerification | None, CallerVerification | None]:
    """(:func:`verification_current`, :func:`verification_pending`) of ``agent`` for
    ``target_id``, read in one query: the person page shows both. The rows an agent has for one
    person within the verification's lifetime are few; the two are picked from them by the
    same rules and order as the two functions."""
    now = timezone.now()
    max_age = timedelta(minutes=settings.PORTAL_VERIFICATION_MAX_AGE_MINUTES)
    backing = Q(verified_at__isnull=False, verified_at__gte=now - max_age)
    waiting = Q(
        method=VerificationMethod.EMAIL_CODE,
        verified_at__isnull=True,
        failed_at__isnull=True,
        expires_at__gt=now,
    )
    rows = list(
        CallerVerification.objects.filter(agent=agent, target_id=target_id).filter(
            backing | waiting
        )
    )
    verified = [r for r in rows if r.verified_at is not None]
    codes = [r for r in rows if r.verified_at is None]
    current = max(verified, key=lambda r: (r.verified_at, r.pk), default=None)
    pending = max(codes, key=lambda r: (r.created_at, r.pk), default=None)
    return current, pending


def verification_carried_request(*, verification: CallerVerification) -> ActionRequest | None:
    """The newest request its agent made on its person since ``verification`` succeeded, while
    it is valid: the next action in the same call starts from its ticket and reason."""
    if verification.verified_at is None:
        return None
    return (
        ActionRequest.objects.filter(
            requester_id=verification.agent_id,
            target_id=verification.target_id,
            created_at__gte=verification.verified_at,
        )
        .order_by("-created_at", "-id")
        .first()
    )


def verification_valid_until(verification: CallerVerification) -> Any:
    """When ``verification`` stops backing actions (None if it never succeeded)."""
    if verification.verified_at is None:
        return None
    return verification.verified_at + timedelta(
        minutes=settings.PORTAL_VERIFICATION_MAX_AGE_MINUTES
    )
