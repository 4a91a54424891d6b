"""Every change to an ActionRequest: one function per state change, each writing its PortalEvent in
the same transaction (Zulip's ``do_*`` habit).

Life of a request (DESIGN.md): ``action_request_create`` checks the helpdesk's rules and records
it (``awaiting_approval`` for a privileged target, else ``pending``) and enqueues
``mfa.tasks.action_request_run`` on commit; ``action_request_approve`` / ``_reject`` /
``_cancel`` decide it; the task calls ``action_request_execute``. Deciding, executing,
redispatching and expiring are the durable-request engine's (``outbox.engine``, with this flow
in ``mfa.flow`` and the Graph steps of each kind in ``mfa.runners``): the functions here are
the helpdesk's names for them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.roles import display_name_of
from audit.models import PortalEvent
from audit.services import portal_event_record
from graph import GraphClient
from graph.results import MethodKind, PerUserMfa
from mfa import escalations, policy, tap_vault
from mfa.flow import ACTION_REQUESTS
from mfa.locks import LockUnavailable, agent_lock, target_lock
from mfa.models import (
    FINAL_STATUSES,
    ActionKind,
    ActionRequest,
    CallerVerification,
    Status,
    Tier,
)
from mfa.notifications import notify_waiting
from mfa.policy import (
    InvalidRequest,
    NotAllowed,
    PolicyError,
    TargetBusy,
    TargetProfile,
    VerificationRequired,
)
from mfa.runners import KIND_LABELS, method_label
from outbox import decisions, engine
from outbox.errors import Deferred
from outbox.flow import enqueue
from outbox.inputs import clean_idempotency_key

logger = logging.getLogger(__name__)

# The engine's: raised by action_request_execute when the task must retry after ``countdown``.
ActionDeferred = Deferred


def _ticket_event_fields(row: ActionRequest) -> dict[str, Any]:
    return ACTION_REQUESTS.event_fields(row)


def _enqueue(request_id: int) -> None:
    """Send the task (called on commit). A broker failure is logged, not raised: the row is the
    outbox and beat dispatches it again."""
    enqueue(ACTION_REQUESTS, request_id)


def _enqueue_on_commit(request_id: int) -> None:
    transaction.on_commit(lambda: _enqueue(request_id))


# --- create --------------------------------------------------------------------------------------


def _check_verification(
    *, kind: str, agent: Any, profile: TargetProfile, verification: CallerVerification | None
) -> None:
    if not ActionKind.needs_verification(kind):
        return
    if verification is None:
        raise VerificationRequired(
            "Verify the caller first: this action needs a caller verification from the last "
            f"{settings.PORTAL_VERIFICATION_MAX_AGE_MINUTES} minutes."
        )
    if verification.agent_id != agent.pk:
        raise VerificationRequired("That caller verification was made by another agent.")
    if verification.target_id.lower() != profile.user.id.lower():
        raise VerificationRequired("That caller verification is for another person.")
    if verification.verified_at is None:
        raise VerificationRequired("That caller verification has not succeeded.")
    if not verification.is_valid_for(agent_id=agent.pk, target_id=verification.target_id):
        raise VerificationRequired(
            "That caller verification is more than "
            f"{settings.PORTAL_VERIFICATION_MAX_AGE_MINUTES} minutes old: verify the caller again."
        )


def clean_params(
    *, kind: str, params: Mapping[str, Any], client: GraphClient | None = None
) -> dict[str, Any]:
    """The kind's parameters, checked and normalised (no other key survives).

    ``issue_tap`` reads the tenant's TAP policy through Graph (``client``, default the process's
    client) and refuses a lifetime or a multi-use pass the policy does not allow. Raises
    InvalidRequest with a message for the agent.
    """
    if kind == ActionKind.REREGISTER:
        return {"revoke_sessions": _bool(params.get("revoke_sessions", False))}
    if kind == ActionKind.REVOKE_SESSIONS:
        return {}
    if kind == ActionKind.ISSUE_TAP:
        try:
            lifetime = int(params.get("lifetime_minutes"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InvalidRequest("Give the pass lifetime in minutes.") from None
        usable_once = _bool(params.get("usable_once", True))
        if client is None:
            from portal.graph_client import get_graph_client

            client = get_graph_client()
        tap_policy = policy.tap_policy(client)
        policy.check_tap_params(tap_policy, lifetime_minutes=lifetime, usable_once=usable_once)
        return {"lifetime_minutes": lifetime, "usable_once": usable_once}
    if kind == ActionKind.SET_MFA_STATE:
        state = str(params.get("state", "")).strip().lower()
        if state not in {m.value for m in PerUserMfa}:
            raise InvalidRequest("Choose enabled, enforced or disabled.")
        return {"state": state}
    if kind == ActionKind.DELETE_METHOD:
        method_id = str(params.get("method_id", "")).strip()
        method_type = str(params.get("method_type", "")).strip().lstrip("#")
        kind_of = MethodKind.from_odata_type(method_type)
        if not method_id or len(method_id) > 64:
            raise InvalidRequest("Choose the method to delete.")
        if not kind_of.deletable:
            raise InvalidRequest("This kind of method cannot be deleted through Graph.")
        label = str(params.get("method_label", "")).strip()[:200] or KIND_LABELS[kind_of]
        return {"method_id": method_id, "method_type": method_type, "method_label": label}
    raise InvalidRequest(f"Unknown action {kind!r}.")


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "on", "yes"}
    return bool(value)


def notify_recipients(profile: TargetProfile) -> list[dict[str, str]]:
    """Who is told when an action on ``profile`` finishes: the person, and their manager when
    PORTAL_NOTIFY_MANAGER is on (kind, address, name each)."""
    recipients: list[dict[str, str]] = []
    address = profile.user.mail or profile.user.user_principal_name
    if address:
        recipients.append({"kind": "target", "address": address, "name": profile.user.display_name})
    if settings.PORTAL_NOTIFY_MANAGER and profile.manager is not None:
        manager_address = profile.manager.mail or profile.manager.user_principal_name
        if manager_address:
            recipients.append(
                {
                    "kind": "manager",
                    "address": manager_address,
                    "name": profile.manager.display_name,
                }
            )
    return recipients


def _existing_for_key(agent: Any, key: str) -> ActionRequest | None:
    existing = ActionRequest.objects.filter(idempotency_key=key).first()
    if existing is None:
        return None
    if existing.requester_id != agent.pk:
        # Keys are random per form; a collision with someone else's means a forged post.
        raise InvalidRequest("This form was already used. Reload the page and submit again.")
    return existing


def action_request_create(
    *,
    agent: Any,
    profile: TargetProfile,
    kind: str,
    reason: str,
    ticket: str,
    params: Mapping[str, Any],
    verification: CallerVerification | None,
    idempotency_key: str,
    http_request: HttpRequest | None = None,
    repeat_reason: str = "",
) -> ActionRequest:
    """Record a request (and its ``action_requested`` event) and, unless it waits for approval,
    enqueue its task on commit.

    Same ``idempotency_key`` again (double click, back button) returns the request already made,
    with nothing new recorded or sent. Checks in order: the agent may act on this person
    (NotAllowed), reason and ticket (InvalidRequest), parameters (InvalidRequest; a TAP against
    the tenant policy read from Graph), caller verification for every kind but revoking sessions
    (VerificationRequired: missing, not succeeded, other agent, other person, too old), the
    repeat reason when one is given (InvalidRequest: too short); then, under the per-target lock
    (never waited for: TargetBusy at once when another submission holds it) and the per-agent
    lock, in one transaction that also locks the agent's user row: no other open request of the
    same family on this person (TargetBusy; a unique index backs it), no success of the same
    kind on this person by this agent in the last PORTAL_REPEAT_WINDOW_MINUTES unless
    ``repeat_reason`` confirms it (RepeatNeedsConfirmation; the confirmation is an
    ``action_repeat_confirmed`` event of the new request), and the rate limit (RateLimited,
    unless a lead's override grant has a request left: one is taken and the lead recorded). So
    N parallel submissions against a limit of M record exactly M. A privileged target leaves
    the request ``awaiting_approval``.
    """
    key = clean_idempotency_key(idempotency_key)
    existing = _existing_for_key(agent, key)
    if existing is not None:
        return existing

    policy.check_may_request(agent, profile, kind)
    clean_reason = policy.clean_reason(reason)
    clean_ticket = policy.clean_ticket(ticket)
    clean = clean_params(kind=kind, params=params)
    _check_verification(kind=kind, agent=agent, profile=profile, verification=verification)
    repeat_why = _clean_repeat_reason(repeat_reason)

    family = policy.kind_family(kind)
    slot = f"{profile.user.id.lower()}:{family}"
    try:
        with target_lock(profile.user.id, family), agent_lock(agent.pk):
            # A twin submission may have been recorded just before we took the locks.
            existing = _existing_for_key(agent, key)
            if existing is not None:
                return existing
            with transaction.atomic():
                _lock_agent_row(agent)
                busy = ActionRequest.objects.filter(open_slot=slot).first()
                if busy is not None:
                    raise TargetBusy(_busy_message(busy), existing=busy)
                previous = policy.check_repeat(
                    agent, target_id=profile.user.id, kind=kind, confirmed=bool(repeat_why)
                )
                grant = policy.check_rate(agent)
                row = _insert(
                    agent=agent,
                    profile=profile,
                    kind=kind,
                    reason=clean_reason,
                    ticket=clean_ticket,
                    params=clean,
                    verification=verification,
                    key=key,
                    slot=slot,
                    rate_override_by=grant.granted_by if grant is not None else None,
                    http_request=http_request,
                )
                if previous is not None:
                    _record_repeat(
                        row=row,
                        previous=previous,
                        why=repeat_why,
                        agent=agent,
                        http_request=http_request,
                    )
    except LockUnavailable as exc:
        if exc.redis_down:
            raise TargetBusy(
                "The portal cannot reach its queue (Redis) right now, so nothing was recorded. "
                "Try again in a minute."
            ) from None
        if exc.scope == "agent":
            raise TargetBusy(
                "Your other submissions are still being recorded. Try again in a moment."
            ) from None
        raise TargetBusy(
            "Another request for this person is being recorded right now. Try again in a moment."
        ) from None
    except IntegrityError:
        # Lost a race the lock should have prevented: the unique indexes decided.
        existing = _existing_for_key(agent, key)
        if existing is not None:
            return existing
        busy = ActionRequest.objects.filter(open_slot=slot).first()
        raise TargetBusy(
            _busy_message(busy) if busy else "Another request for this person is open.",
            existing=busy,
        ) from None
    return row


def _clean_repeat_reason(value: str) -> str:
    """The agent's reason for repeating a recent action, stripped; "" when none was given."""
    text = str(value or "").strip()
    if text and len(text) < policy.REASON_MIN_LENGTH:
        raise InvalidRequest(
            f"Say why you are doing this again, in at least {policy.REASON_MIN_LENGTH} characters."
        )
    return text[: policy.REASON_MAX_LENGTH]


def _lock_agent_row(agent: Any) -> None:
    """Lock the agent's user row until the transaction ends: the database's own guarantee that
    one agent's count-and-insert runs one at a time, should the Redis lock be lost (PostgreSQL
    ``SELECT ... FOR UPDATE``; SQLite takes its write lock at BEGIN IMMEDIATE anyway)."""
    list(get_user_model().objects.select_for_update().filter(pk=agent.pk).values_list("pk"))


def _record_repeat(
    *,
    row: ActionRequest,
    previous: ActionRequest,
    why: str,
    agent: Any,
    http_request: HttpRequest | None,
) -> None:
    portal_event_record(
        kind=PortalEvent.Kind.ACTION_REPEAT_CONFIRMED,
        actor=agent,
        request=http_request,
        detail={
            "kind": row.kind,
            "repeat_of": str(previous.public_id),
            "repeat_of_request": previous.pk,
            "previous_finished_at": previous.finished_at.isoformat()
            if previous.finished_at
            else None,
            "window_minutes": int(settings.PORTAL_REPEAT_WINDOW_MINUTES),
            "reason": why,
        },
        **_ticket_event_fields(row),
    )


def _busy_message(busy: ActionRequest) -> str:
    return (
        f"{busy.requester_name} already has an open request ({busy.get_kind_display()}, "
        f"{busy.get_status_display().lower()}) for {busy.target_name}. Wait for it to finish."
    )


def _insert(
    *,
    agent: Any,
    profile: TargetProfile,
    kind: str,
    reason: str,
    ticket: str,
    params: dict[str, Any],
    verification: CallerVerification | None,
    key: str,
    slot: str,
    rate_override_by: Any,
    http_request: HttpRequest | None,
) -> ActionRequest:
    now = timezone.now()
    needed = ActionKind.needs_verification(kind)
    # A kind that needs no verification (revoking sessions) still records the one the agent
    # holds for this person: the request then says who the caller was checked to be.
    backing = verification if needed or _valid_now(verification, agent, profile) else None
    # The tier, and the kind's own rule (a TAP backed only by a manual check, ...).
    why_approval = policy.approval_reasons(profile, kind, params, backing if needed else None)
    approval = bool(why_approval)
    # An agent without PAA on a privileged person (tiering mirrored): a PAA holder takes it on
    # first (mfa.escalations), then it waits for the usual approval.
    escalate = escalations.needs_escalation(agent, privileged=profile.privileged)
    if escalate:
        status = Status.ESCALATED
    else:
        status = Status.AWAITING_APPROVAL if approval else Status.PENDING
    waiting = escalate or approval
    row = ActionRequest.objects.create(
        kind=kind,
        status=status,
        escalated_to=escalations.escalated_to(agent, target_id=profile.user.id) if escalate else [],
        requester=agent,
        requester_name=display_name_of(agent),
        target_id=profile.user.id,
        target_upn=profile.user.user_principal_name,
        target_name=profile.user.display_name,
        **policy.target_columns(profile),
        reason=reason,
        ticket=ticket,
        params=params,
        verification=backing,
        idempotency_key=key,
        rate_override_by=rate_override_by,
        created_at=now,
        enqueued_at=None if waiting else now,
        open_slot=slot,
        notify_to=notify_recipients(profile),
    )
    portal_event_record(
        kind=PortalEvent.Kind.ACTION_REQUESTED,
        actor=agent,
        request=http_request,
        new_value={"status": row.status},
        detail={
            "kind": kind,
            "params": params,
            "tier": profile.tier,
            "roles": [r.role_name for r in profile.roles],
            "protected_groups": list(profile.protected_groups),
            "portal_roles": list(profile.portal_roles),
            "verification": backing.pk if backing else None,
            "verification_method": backing.method if backing else None,
            "needs_approval": approval,
            "approval_reasons": why_approval,
            "escalated": escalate,
            "reason": reason,
        },
        **_ticket_event_fields(row),
    )
    if escalate:
        portal_event_record(
            kind=escalations.EVENT_ESCALATED,
            actor=agent,
            request=http_request,
            new_value={"status": row.status},
            detail={"kind": kind, "escalated_to": row.escalated_to, "reason": reason},
            **_ticket_event_fields(row),
        )
    if rate_override_by is not None:
        portal_event_record(
            kind=PortalEvent.Kind.RATE_OVERRIDE,
            actor=rate_override_by,
            request=http_request,
            detail={"agent": row.requester_name, "agent_id": agent.pk},
            **_ticket_event_fields(row),
        )
    if escalate:
        # Those who may take it are told (a request created awaiting approval is announced by
        # mfa.receivers).
        notify_waiting(row)
    elif not waiting:
        _enqueue_on_commit(row.pk)
    return row


def _valid_now(verification: CallerVerification | None, agent: Any, profile: TargetProfile) -> bool:
    return verification is not None and verification.is_valid_for(
        agent_id=agent.pk, target_id=profile.user.id
    )


# --- decisions -----------------------------------------------------------------------------------


def action_request_approve(
    *,
    action_request: ActionRequest,
    approver: Any,
    comment: str,
    http_request: HttpRequest | None = None,
) -> ActionRequest:
    """Approve a request ``awaiting_approval``: it becomes ``pending`` and its task is enqueued
    on commit. Raises NotAllowed unless ``approver`` is a Lead/Admin other than the requester and
    the target; InvalidRequest when the request is not awaiting approval or has expired (it is
    then marked ``expired``). With PORTAL_MIRROR_ENTRA_TIERING, NotAllowed as well when the
    target is privileged and the requester no longer holds PAA in the tenant."""
    return decisions.decide(
        ACTION_REQUESTS,
        row=action_request,
        approver=approver,
        comment=comment,
        approve=True,
        http_request=http_request,
    )


def action_request_reject(
    *,
    action_request: ActionRequest,
    approver: Any,
    comment: str,
    http_request: HttpRequest | None = None,
) -> ActionRequest:
    """Reject a request ``awaiting_approval`` (a comment is required). Same rules as approve."""
    return decisions.decide(
        ACTION_REQUESTS,
        row=action_request,
        approver=approver,
        comment=comment,
        approve=False,
        http_request=http_request,
    )


def action_request_cancel(
    *, action_request: ActionRequest, by: Any, http_request: HttpRequest | None = None
) -> ActionRequest:
    """Cancel a request that has not started (``awaiting_approval`` or ``pending``). The
    requester may cancel their own; a Lead or Admin anyone's. Raises NotAllowed or
    InvalidRequest (already running or finished)."""
    return decisions.cancel(ACTION_REQUESTS, row=action_request, by=by, http_request=http_request)


# --- TAP reveal ----------------------------------------------------------------------------------


def tap_reveal(
    *, action_request: ActionRequest, agent: Any, http_request: HttpRequest | None = None
) -> str | None:
    """The new pass, once, to the requester only; it is wiped from the vault by this read.

    Returns None when there is nothing to show (not a TAP request, not finished, already shown or
    expired). Raises NotAllowed for anyone but the requester (the attempt is recorded). Records a
    ``tap_revealed`` event (without the pass) when it hands one out.
    """
    if action_request.requester_id != agent.pk:
        portal_event_record(
            kind=PortalEvent.Kind.TAP_REVEAL_REFUSED,
            actor=agent,
            request=http_request,
            detail={"requester": action_request.requester_name},
            **_ticket_event_fields(action_request),
        )
        raise NotAllowed("Only the agent who asked for this pass can see it.")
    if action_request.kind != ActionKind.ISSUE_TAP or action_request.status != Status.SUCCEEDED:
        return None
    try:
        value = tap_vault.tap_take(public_id=action_request.public_id, requester_id=agent.pk)
    except tap_vault.TapVaultError as exc:
        logger.warning("TAP reveal for request %s failed: %s", action_request.pk, exc)
        return None
    if value is None:
        return None
    portal_event_record(
        kind=PortalEvent.Kind.TAP_REVEALED,
        actor=agent,
        request=http_request,
        detail={"tap_id": action_request.result.get("tap_id", "")},
        **_ticket_event_fields(action_request),
    )
    return value


# --- execution and beat --------------------------------------------------------------------------


def action_request_execute(*, request_id: int) -> None:
    """Run request ``request_id`` if it can be claimed (``outbox.engine.execute``).

    Returns quietly when there is nothing to claim (a redelivered or duplicate task) or when the
    lease was lost mid-run. Raises ActionDeferred when Graph throttled or failed transiently (or
    the database connection was lost) and the retry budget is not used up: the task retries
    after ``countdown`` seconds. Never leaves the row ``running`` on an exception it can catch.
    """
    engine.execute(ACTION_REQUESTS, request_id)


def requests_redispatch() -> int:
    """Enqueue again every request no worker has picked up: ``pending`` rows enqueued more than
    ``PORTAL_REDISPATCH_AFTER_SECONDS`` ago, and ``running`` rows whose worker's lease ran out.
    Returns how many were dispatched (each with an ``action_redispatched`` event)."""
    return engine.redispatch(ACTION_REQUESTS)


def requests_expire_stale() -> int:
    """Expire requests that waited for approval longer than ``PORTAL_APPROVAL_TTL_MINUTES``.
    Returns how many (each with an ``action_expired`` event)."""
    return decisions.expire_stale(ACTION_REQUESTS)


def request_is_open(row: ActionRequest) -> bool:
    """Whether the request may still change (not in a final state)."""
    return row.status not in FINAL_STATUSES


__all__ = [
    "ActionDeferred",
    "InvalidRequest",
    "NotAllowed",
    "PolicyError",
    "TargetBusy",
    "Tier",
    "VerificationRequired",
    "action_request_approve",
    "action_request_cancel",
    "action_request_create",
    "action_request_execute",
    "action_request_reject",
    "clean_params",
    "method_label",
    "request_is_open",
    "requests_expire_stale",
    "requests_redispatch",
    "tap_reveal",
]
