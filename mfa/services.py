"""Every change to an ActionRequest: one function per state change, each writing its PortalEvent in
the same transaction (Zulip's ``do_*`` habit), and the execution of a request against Graph.

Life of a request (DESIGN.md): ``action_request_create`` records it (``awaiting_approval`` for a
privileged target, else ``pending``) and enqueues ``mfa.tasks.action_request_run`` on commit;
``action_request_approve`` / ``_reject`` / ``_cancel`` decide it; the task calls
``action_request_execute``, which claims the row with a conditional UPDATE, runs the kind's steps
and ends it ``succeeded``, ``partially_succeeded`` or ``failed``. Beat calls
``requests_redispatch`` (the row is the outbox) and ``requests_expire_stale``.

Durability rules of execution:

* The claim is ``UPDATE ... WHERE status='pending' OR (status='running' AND heartbeat is older
  than the lease)``: a duplicate delivery claims nothing; a row left ``running`` by a dead worker
  is claimed again once its lease has run out. Every later write of the worker is fenced on its
  claim (``attempts`` as a fencing token): a worker that lost its lease stops.
* Before a Graph write its key goes into ``pending_writes``; after it, into ``completed_writes``.
  A re-run never repeats a completed write, and for one that was in flight it re-reads Graph
  (methods still registered, session timestamp, MFA state) instead of writing blindly. A TAP
  whose creation was in flight is never re-issued: the request fails with "outcome unknown".
* Throttled and transient Graph errors put the row back to ``pending`` with a visible "waiting
  for Graph" step and ask the task to retry after ``Retry-After``; after
  ``PORTAL_ACTION_MAX_ATTEMPTS`` claims the request fails with Graph's error. Permanent errors and
  unexpected exceptions end it ``failed`` at once: it is never left ``running``.
* The new pass of a TAP goes to ``mfa.tap_vault`` only: never to a column, a log line, a Celery
  argument or result, or an email.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone

from accounts.role_admin import approval_refusal
from accounts.roles import display_name_of, has_role
from audit.models import PortalEvent
from audit.services import portal_event_record
from graph import GraphClient
from graph import methods as graph_methods
from graph import requirements as graph_requirements
from graph import sessions as graph_sessions
from graph import users as graph_users
from graph.errors import (
    GraphBadRequest,
    GraphError,
    GraphNotFound,
    GraphThrottled,
    GraphTokenUnavailable,
    GraphTransient,
)
from graph.results import AuthenticationMethod, MethodKind, PerUserMfa
from mfa import policy, tap_vault
from mfa.locks import LockUnavailable, target_lock
from mfa.models import (
    FINAL_STATUSES,
    ActionKind,
    ActionRequest,
    CallerVerification,
    Status,
    Tier,
)
from mfa.policy import (
    InvalidRequest,
    NotAllowed,
    PolicyError,
    TargetBusy,
    TargetProfile,
    VerificationRequired,
)

logger = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX_LENGTH = 64
DECISION_COMMENT_MAX_LENGTH = 2000
# Deletion order of the methods of a re-registration (GRAPH.md): alternateMobile before mobile,
# and the kinds most likely to be the default sign-in method (which Graph refuses to delete while
# others remain) last. The default named by Graph's sign-in preferences goes after all of these
# (_deletion_plan); when they cannot be read this order stands alone. Either way a method Graph
# still refuses is retried once at the end.
_DELETE_ORDER: tuple[tuple[MethodKind, str | None], ...] = (
    (MethodKind.TEMPORARY_ACCESS_PASS, None),
    (MethodKind.EMAIL, None),
    (MethodKind.SOFTWARE_OATH, None),
    (MethodKind.PHONE, "alternateMobile"),
    (MethodKind.PHONE, "office"),
    (MethodKind.PLATFORM_CREDENTIAL, None),
    (MethodKind.WINDOWS_HELLO_FOR_BUSINESS, None),
    (MethodKind.FIDO2, None),
    (MethodKind.PHONE, "mobile"),
    (MethodKind.MICROSOFT_AUTHENTICATOR, None),
)
_KIND_LABELS: dict[MethodKind, str] = {
    MethodKind.PHONE: "Phone",
    MethodKind.MICROSOFT_AUTHENTICATOR: "Microsoft Authenticator",
    MethodKind.SOFTWARE_OATH: "Software OATH token",
    MethodKind.FIDO2: "FIDO2 security key",
    MethodKind.EMAIL: "Email",
    MethodKind.WINDOWS_HELLO_FOR_BUSINESS: "Windows Hello for Business",
    MethodKind.TEMPORARY_ACCESS_PASS: "Temporary Access Pass",
    MethodKind.PLATFORM_CREDENTIAL: "Platform credential",
    MethodKind.PASSWORD: "Password",
    MethodKind.UNKNOWN: "Unknown method",
}
_FINAL_EVENT: dict[str, str] = {
    Status.SUCCEEDED: PortalEvent.Kind.ACTION_SUCCEEDED,
    Status.PARTIALLY_SUCCEEDED: PortalEvent.Kind.ACTION_PARTIALLY_SUCCEEDED,
    Status.FAILED: PortalEvent.Kind.ACTION_FAILED,
}


class ActionDeferred(Exception):
    """Raised by action_request_execute when Graph asked us to wait: the task must retry after
    ``countdown`` seconds (the row is ``pending`` again, with a visible waiting step)."""

    def __init__(self, countdown: float) -> None:
        self.countdown = countdown
        super().__init__(f"retry in {countdown:.0f} s")


class _LeaseLost(Exception):
    """This worker no longer owns the row (its lease ran out and another worker claimed it)."""


# --- small shared pieces -------------------------------------------------------------------------


def method_label(method: AuthenticationMethod) -> str:
    """``Microsoft Authenticator (iPhone 15)``, ``Phone (mobile +44 ******0123)``: masked,
    safe to show and to log."""
    label = _KIND_LABELS.get(method.kind, method.odata_type or "Method")
    return f"{label} ({method.detail})" if method.detail else label


def _method_entry(method: AuthenticationMethod) -> dict[str, Any]:
    return {
        "id": method.id,
        "type": method.odata_type,
        "phone_type": method.phone_type,
        "label": method_label(method),
    }


def _method_from_entry(entry: Mapping[str, Any]) -> AuthenticationMethod:
    odata_type = str(entry.get("type") or "")
    return AuthenticationMethod(
        id=str(entry["id"]),
        kind=MethodKind.from_odata_type(odata_type),
        odata_type=odata_type,
        detail="",
        phone_type=entry.get("phone_type"),
    )


def _deletion_rank(method: AuthenticationMethod) -> int:
    for rank, (kind, phone_type) in enumerate(_DELETE_ORDER):
        if method.kind is kind and (phone_type is None or method.phone_type == phone_type):
            return rank
    return 0  # an unlisted deletable kind goes first: it is not a default candidate


def _deletion_plan(
    methods: list[AuthenticationMethod], default_id: str | None
) -> list[AuthenticationMethod]:
    """The deletable methods in the order a re-registration removes them: by _DELETE_ORDER, with
    the known default (``default_id``) moved to the very end."""
    deletable = sorted((m for m in methods if m.kind.deletable), key=_deletion_rank)
    return sorted(deletable, key=lambda m: m.id == default_id)


def _ticket_event_fields(row: ActionRequest) -> dict[str, Any]:
    return {
        "action_request_id": row.pk,
        "target_id": row.target_id,
        "target_name": row.target_name,
        "ticket": row.ticket,
    }


def _enqueue(request_id: int) -> None:
    """Send the task (called on commit). A broker failure is logged, not raised: the row is the
    outbox and beat dispatches it again."""
    from mfa.tasks import action_request_run

    try:
        action_request_run.apply_async(args=(request_id,), queue="interactive")
    except Exception:  # any broker failure: beat re-dispatches
        logger.warning("could not enqueue action request %s; beat will retry", request_id)


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
        label = str(params.get("method_label", "")).strip()[:200] or _KIND_LABELS[kind_of]
        return {"method_id": method_id, "method_type": method_type, "method_label": label}
    raise InvalidRequest(f"Unknown action {kind!r}.")


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "on", "yes"}
    return bool(value)


def _notify_to(profile: TargetProfile) -> list[dict[str, str]]:
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
    rate_override_by: Any = None,
) -> ActionRequest:
    """Record a request (and its ``action_requested`` event) and, unless it waits for approval,
    enqueue its task on commit.

    Same ``idempotency_key`` again (double click, back button) returns the request already made,
    with nothing new recorded or sent. Checks in order: the agent may act on this person
    (NotAllowed), reason and ticket (InvalidRequest), parameters (InvalidRequest; a TAP against
    the tenant policy read from Graph), caller verification for every kind but revoking sessions
    (VerificationRequired: missing, not succeeded, other agent, other person, too old), the rate
    limit (RateLimited, unless ``rate_override_by`` is a Lead/Admin other than the agent: the
    override is recorded), and no other open request of the same family on this person
    (TargetBusy, under a Redis lock and a unique index). A privileged target leaves the request
    ``awaiting_approval``.
    """
    key = (idempotency_key or "").strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise InvalidRequest("The form is missing its submission token. Reload the page.")
    existing = _existing_for_key(agent, key)
    if existing is not None:
        return existing

    policy.check_may_request(agent, profile, kind)
    clean_reason = policy.clean_reason(reason)
    clean_ticket = policy.clean_ticket(ticket)
    clean = clean_params(kind=kind, params=params)
    _check_verification(kind=kind, agent=agent, profile=profile, verification=verification)
    overridden = policy.check_rate(agent, override_by=rate_override_by)

    family = policy.kind_family(kind)
    slot = f"{profile.user.id.lower()}:{family}"
    try:
        with target_lock(profile.user.id, family):
            # A twin submission may have been recorded while we waited for the lock.
            existing = _existing_for_key(agent, key)
            if existing is not None:
                return existing
            with transaction.atomic():
                busy = ActionRequest.objects.filter(open_slot=slot).first()
                if busy is not None:
                    raise TargetBusy(_busy_message(busy), existing=busy)
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
                    rate_override_by=rate_override_by if overridden else None,
                    http_request=http_request,
                )
    except LockUnavailable as exc:
        if exc.redis_down:
            raise TargetBusy(
                "The portal cannot reach its queue (Redis) right now, so nothing was recorded. "
                "Try again in a minute."
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
    approval = policy.needs_approval(profile)
    roles = [
        {
            "role_name": r.role_name,
            "template_id": r.template_id,
            "how": r.how,
            "via_group": r.via_group,
            "ends": r.ends.isoformat() if r.ends else None,
        }
        for r in profile.roles
    ]
    row = ActionRequest.objects.create(
        kind=kind,
        status=Status.AWAITING_APPROVAL if approval else Status.PENDING,
        requester=agent,
        requester_name=display_name_of(agent),
        target_id=profile.user.id,
        target_upn=profile.user.user_principal_name,
        target_name=profile.user.display_name,
        target_tier=profile.tier,
        target_roles=roles
        + [
            {"role_name": f"Protected group: {g}", "how": "group"} for g in profile.protected_groups
        ],
        reason=reason,
        ticket=ticket,
        params=params,
        verification=verification if ActionKind.needs_verification(kind) else None,
        idempotency_key=key,
        rate_override_by=rate_override_by,
        created_at=now,
        enqueued_at=None if approval else now,
        open_slot=slot,
        notify_to=_notify_to(profile),
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
            "roles": [r["role_name"] for r in roles],
            "protected_groups": list(profile.protected_groups),
            "verification": verification.pk if verification else None,
            "verification_method": verification.method if verification else None,
            "needs_approval": approval,
            "reason": reason,
        },
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
    if not approval:
        _enqueue_on_commit(row.pk)
    return row


# --- decisions -----------------------------------------------------------------------------------


def _expire_if_due(row: ActionRequest, now: datetime) -> bool:
    """Expire an awaiting request whose approval window has passed (own transaction)."""
    if row.status != Status.AWAITING_APPROVAL or now <= row.approval_expires_at():
        return False
    with transaction.atomic():
        done = ActionRequest.objects.filter(pk=row.pk, status=Status.AWAITING_APPROVAL).update(
            status=Status.EXPIRED, finished_at=now, open_slot=None, updated_at=now
        )
        if done:
            portal_event_record(
                kind=PortalEvent.Kind.ACTION_EXPIRED,
                old_value={"status": Status.AWAITING_APPROVAL},
                new_value={"status": Status.EXPIRED},
                detail={"approval_ttl_minutes": settings.PORTAL_APPROVAL_TTL_MINUTES},
                **_ticket_event_fields(row),
            )
    row.refresh_from_db()
    return bool(done)


def _decide(
    *,
    action_request: ActionRequest,
    approver: Any,
    comment: str,
    approve: bool,
    http_request: HttpRequest | None,
) -> ActionRequest:
    policy.check_may_decide(approver, action_request)
    text = (comment or "").strip()
    if len(text) > DECISION_COMMENT_MAX_LENGTH:
        raise InvalidRequest(
            f"The comment is longer than {DECISION_COMMENT_MAX_LENGTH} characters."
        )
    if not approve and not text:
        raise InvalidRequest("Say why you reject the request: the agent will read it.")
    now = timezone.now()
    row = ActionRequest.objects.get(pk=action_request.pk)
    if _expire_if_due(row, now):
        raise InvalidRequest(
            "This request waited longer than "
            f"{settings.PORTAL_APPROVAL_TTL_MINUTES} minutes and has expired."
        )
    new_status = Status.PENDING if approve else Status.REJECTED
    with transaction.atomic():
        changes: dict[str, Any] = {
            "status": new_status,
            "decided_by": approver,
            "decided_by_name": display_name_of(approver),
            "decision_comment": text,
            "decided_at": now,
            "updated_at": now,
        }
        if approve:
            changes["enqueued_at"] = now
        else:
            changes["finished_at"] = now
            changes["open_slot"] = None
        done = ActionRequest.objects.filter(pk=row.pk, status=Status.AWAITING_APPROVAL).update(
            **changes
        )
        if not done:
            row.refresh_from_db()
            raise InvalidRequest(
                f"This request is already {row.get_status_display().lower()}: nothing to decide."
            )
        portal_event_record(
            kind=PortalEvent.Kind.ACTION_APPROVED if approve else PortalEvent.Kind.ACTION_REJECTED,
            actor=approver,
            request=http_request,
            old_value={"status": Status.AWAITING_APPROVAL},
            new_value={"status": new_status},
            detail={"comment": text, "requester": row.requester_name},
            **_ticket_event_fields(row),
        )
        if approve:
            _enqueue_on_commit(row.pk)
    row.refresh_from_db()
    return row


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
    # Role administration (issue 5): a privileged request whose requester lost PAA cannot be
    # approved (it may still be rejected or cancelled).
    policy.check_may_decide(approver, action_request)
    refusal = approval_refusal(action_request.requester, privileged=action_request.is_privileged)
    if refusal:
        raise NotAllowed(refusal)
    return _decide(
        action_request=action_request,
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
    return _decide(
        action_request=action_request,
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
    if by.pk != action_request.requester_id and not has_role(by, *policy.APPROVER_ROLES):
        raise NotAllowed("Only the requester, a Lead or an Admin can cancel this request.")
    now = timezone.now()
    with transaction.atomic():
        old = ActionRequest.objects.get(pk=action_request.pk).status
        done = ActionRequest.objects.filter(
            pk=action_request.pk, status__in=(Status.AWAITING_APPROVAL, Status.PENDING)
        ).update(status=Status.CANCELLED, finished_at=now, open_slot=None, updated_at=now)
        if not done:
            action_request.refresh_from_db()
            raise InvalidRequest(
                f"This request is {action_request.get_status_display().lower()}: it can no longer "
                "be cancelled."
            )
        portal_event_record(
            kind=PortalEvent.Kind.ACTION_CANCELLED,
            actor=by,
            request=http_request,
            old_value={"status": old},
            new_value={"status": Status.CANCELLED},
            **_ticket_event_fields(action_request),
        )
    action_request.refresh_from_db()
    return action_request


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


# --- execution -----------------------------------------------------------------------------------


@dataclass
class _Run:
    """One worker's hold on one request: the row as claimed, the Graph client, and fenced
    persistence of its progress."""

    row: ActionRequest
    client: GraphClient
    token: int  # the row's ``attempts`` after our claim: the fencing token

    def _fenced(self) -> Any:
        return ActionRequest.objects.filter(
            pk=self.row.pk, status=Status.RUNNING, attempts=self.token
        )

    def save(self, *, event: tuple[str, dict[str, Any]] | None = None) -> None:
        """Write steps, result and write-journal with a fresh heartbeat; raise _LeaseLost when
        the row is no longer ours. ``event`` (kind, detail) is recorded in the same transaction."""
        row = self.row
        now = timezone.now()
        with transaction.atomic():
            done = self._fenced().update(
                steps=row.steps,
                result=row.result,
                completed_writes=row.completed_writes,
                pending_writes=row.pending_writes,
                heartbeat_at=now,
                updated_at=now,
            )
            if not done:
                raise _LeaseLost()
            if event is not None:
                kind, detail = event
                portal_event_record(kind=kind, detail=detail, **_ticket_event_fields(row))
        row.heartbeat_at = now

    def step(self, text: str, *, state: str = "running", detail: str = "") -> int:
        """Append a step a person can read and save it; returns its index."""
        self.row.steps = [
            *self.row.steps,
            {"at": timezone.now().isoformat(), "text": text, "state": state, "detail": detail},
        ]
        self.save()
        return len(self.row.steps) - 1

    def step_end(
        self,
        index: int,
        *,
        state: str,
        suffix: str,
        detail: str = "",
        event: tuple[str, dict[str, Any]] | None = None,
    ) -> None:
        """Close step ``index`` ("Removing X…" becomes "Removing X… done") and save."""
        steps = [dict(s) for s in self.row.steps]
        steps[index]["text"] = f"{steps[index]['text']} {suffix}".strip()
        steps[index]["state"] = state
        if detail:
            steps[index]["detail"] = detail
        self.row.steps = steps
        self.save(event=event)

    def write_begin(self, key: str) -> None:
        self.row.pending_writes = {**self.row.pending_writes, key: timezone.now().isoformat()}
        self.save()

    def write_done(self, key: str) -> None:
        """Mark ``key`` done in memory; the caller's next save (usually step_end) persists it."""
        pending = dict(self.row.pending_writes)
        pending.pop(key, None)
        self.row.pending_writes = pending
        if key not in self.row.completed_writes:
            self.row.completed_writes = [*self.row.completed_writes, key]

    def write_abandon(self, key: str) -> None:
        pending = dict(self.row.pending_writes)
        pending.pop(key, None)
        self.row.pending_writes = pending

    def was_in_flight(self, key: str) -> datetime | None:
        raw = self.row.pending_writes.get(key)
        if not raw:
            return None
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            return None


@dataclass(frozen=True)
class _Outcome:
    status: str
    error: GraphError | None = None
    error_code: str = ""
    error_message: str = ""


def _claim(request_id: int) -> tuple[ActionRequest, bool] | None:
    """Claim the row for this worker: pending, or running with a lease run out. Returns the row
    and whether it was taken over from a dead worker; None when there is nothing to claim."""
    now = timezone.now()
    lease_cutoff = now - timedelta(seconds=settings.PORTAL_ACTION_LEASE_SECONDS)
    claimable = Q(status=Status.PENDING) | Q(status=Status.RUNNING, heartbeat_at__lt=lease_cutoff)
    with transaction.atomic():
        before = (
            ActionRequest.objects.filter(pk=request_id).values_list("status", flat=True).first()
        )
        if before is None:
            return None
        done = ActionRequest.objects.filter(claimable, pk=request_id).update(
            status=Status.RUNNING,
            started_at=Coalesce(F("started_at"), now),
            heartbeat_at=now,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
        if not done:
            return None
        row = ActionRequest.objects.get(pk=request_id)
        taken_over = before == Status.RUNNING
        portal_event_record(
            kind=PortalEvent.Kind.ACTION_STARTED,
            old_value={"status": before},
            new_value={"status": Status.RUNNING},
            detail={"attempt": row.attempts, "taken_over_from_lost_worker": taken_over},
            **_ticket_event_fields(row),
        )
    return row, taken_over


def action_request_execute(*, request_id: int) -> None:
    """Run request ``request_id`` if it can be claimed; see the module docstring.

    Returns quietly when there is nothing to claim (a redelivered or duplicate task) or when the
    lease was lost mid-run. Raises ActionDeferred when Graph throttled or failed transiently and
    the retry budget is not used up: the caller (the task) retries after ``countdown`` seconds.
    Never leaves the row ``running`` on an exception it can catch.
    """
    claimed = _claim(request_id)
    if claimed is None:
        logger.info("action request %s: nothing to claim", request_id)
        return
    row, taken_over = claimed
    from portal.graph_client import get_graph_client

    run = _Run(row=row, client=get_graph_client(), token=row.attempts)
    try:
        if taken_over:
            run.step(
                "The previous worker stopped; resuming without repeating finished Graph writes.",
                state="done",
            )
        outcome = _RUNNERS[row.kind](run)
    except _LeaseLost:
        logger.warning("action request %s: lease lost, another worker owns it", request_id)
        return
    except (GraphThrottled, GraphTransient) as exc:
        _defer_or_fail(run, exc)
        return
    except GraphError as exc:
        outcome = _Outcome(Status.FAILED, error=exc)
    except PolicyError as exc:
        outcome = _Outcome(Status.FAILED, error_code="PolicyRefused", error_message=exc.message)
    except DatabaseError as exc:
        if isinstance(exc, IntegrityError | DataError):
            raise  # a bug, not a lost connection: the task fails loudly, beat re-dispatches
        _database_lost(run, exc)
        return
    except Exception as exc:
        # Never leave the row running: record a failure the agent can see, log the trace.
        logger.exception("action request %s failed unexpectedly", request_id)
        outcome = _Outcome(
            Status.FAILED,
            error_code="UnexpectedError",
            error_message=f"The portal hit an unexpected error ({type(exc).__name__}); "
            "an administrator can find the details in the worker log.",
        )
    try:
        _finish(run, outcome)
    except _LeaseLost:
        logger.warning("action request %s: lease lost before finishing", request_id)


def _database_lost(run: _Run, exc: DatabaseError) -> None:
    """The database connection broke mid-run (server restart, failover, idle kill). Open a fresh
    one and put the row back to ``pending`` from this worker's in-memory journal (which is what
    really happened at Graph), then retry like a transient Graph error. If the database is still
    away this raises; the row stays ``running`` and beat re-dispatches it when the lease ends."""
    logger.warning("action request %s: database connection lost (%s)", run.row.pk, exc)
    try:
        connection.close()
    except DatabaseError:
        pass  # already broken: close() has dropped it all the same
    _defer_or_fail(
        run,
        GraphTransient(0, "DatabaseUnavailable", "The portal lost its database connection."),
        waiting_for="the database",
    )


def _defer_or_fail(run: _Run, exc: GraphError, *, waiting_for: str = "Graph") -> None:
    """After a throttled or transient Graph error: back to pending with a waiting step and
    raise ActionDeferred, or fail once the attempts are used up."""
    row = run.row
    if row.attempts >= settings.PORTAL_ACTION_MAX_ATTEMPTS:
        # The step Graph interrupted must not stay "running" on a failed request's page.
        row.steps = [
            {**s, "state": "failed"} if s.get("state") == "running" else s for s in row.steps
        ]
        try:
            _finish(run, _Outcome(Status.FAILED, error=exc))
        except _LeaseLost:
            pass
        return
    retry_after = getattr(exc, "retry_after", None)
    countdown = float(retry_after) if retry_after else float(min(60, 5 * 2 ** (row.attempts - 1)))
    countdown = max(1.0, countdown)
    why = "throttled" if isinstance(exc, GraphThrottled) else "temporarily unavailable"
    now = timezone.now()
    steps = [{**s, "state": "waiting"} if s.get("state") == "running" else s for s in row.steps]
    steps.append(
        {
            "at": now.isoformat(),
            "text": f"Waiting for {waiting_for} ({why}), retrying in {countdown:.0f} s",
            "state": "waiting",
            "detail": f"{exc.code}: {exc.message} (request-id {exc.request_id or 'none'})",
        }
    )
    with transaction.atomic():
        done = run._fenced().update(
            status=Status.PENDING,
            steps=steps,
            result=row.result,
            completed_writes=row.completed_writes,
            pending_writes=row.pending_writes,
            # Beat leaves it alone until the retry is due (plus its usual grace).
            enqueued_at=now + timedelta(seconds=countdown),
            heartbeat_at=now,
            updated_at=now,
        )
        if not done:
            return
        portal_event_record(
            kind=PortalEvent.Kind.ACTION_RETRY_SCHEDULED,
            detail={
                "attempt": row.attempts,
                "countdown_seconds": countdown,
                "graph_code": exc.code,
                "graph_request_id": exc.request_id or "",
            },
            **_ticket_event_fields(row),
        )
    raise ActionDeferred(countdown)


def _finish(run: _Run, outcome: _Outcome) -> None:
    row = run.row
    now = timezone.now()
    code, message, request_id = outcome.error_code, outcome.error_message, ""
    if outcome.error is not None:
        code = outcome.error.code
        message = outcome.error.message
        request_id = outcome.error.request_id or ""
    if not code and outcome.status != Status.SUCCEEDED:
        first = next(iter(row.result.get("failed") or []), None)
        if first:
            code = str(first.get("code", ""))
            message = str(first.get("message", ""))
            request_id = str(first.get("request_id", ""))
    with transaction.atomic():
        done = run._fenced().update(
            status=outcome.status,
            steps=row.steps,
            result=row.result,
            completed_writes=row.completed_writes,
            pending_writes=row.pending_writes,
            error_code=code[:128],
            error_message=message,
            error_request_id=request_id[:64],
            finished_at=now,
            heartbeat_at=now,
            open_slot=None,
            updated_at=now,
        )
        if not done:
            raise _LeaseLost()
        portal_event_record(
            kind=_FINAL_EVENT[outcome.status],
            old_value={"status": Status.RUNNING},
            new_value={"status": outcome.status},
            detail={
                "result": {k: v for k, v in row.result.items() if k != "plan"},
                "graph_code": code,
                "graph_message": message,
                "graph_request_id": request_id,
                "writes": list(row.completed_writes),
            },
            **_ticket_event_fields(row),
        )
        if row.completed_writes:
            from mfa.notifications import action_request_notify

            request_pk = row.pk
            transaction.on_commit(lambda: action_request_notify(request_id=request_pk))


def _abandon_if_unprocessed(run: _Run, key: str, exc: GraphError) -> None:
    """Take ``key`` off the in-flight journal when the write surely did not happen: Graph answered
    429 or 503 (refused before processing), or no token could be had (nothing was sent). A failed
    request must not claim that such a write's outcome is unknown."""
    if exc.status in (429, 503) or isinstance(exc, GraphTokenUnavailable):
        run.write_abandon(key)


def _graph_failure(exc: GraphError) -> dict[str, str]:
    return {"code": exc.code, "message": exc.message, "request_id": exc.request_id or ""}


# --- the kinds -----------------------------------------------------------------------------------


def _run_reregister(run: _Run) -> _Outcome:
    """List, delete every deletable method (default last), optionally revoke, list again."""
    row = run.row
    user_id = row.target_id
    result = dict(row.result)
    if "plan" not in result:
        index = run.step("Listing registered methods…")
        methods = graph_methods.list_methods(run.client, user_id)
        run.step_end(index, state="done", suffix="done")
        default_id, default_source = _read_default(run, methods)
        deletable = _deletion_plan(methods, default_id)
        result.update(
            {
                "plan": [_method_entry(m) for m in deletable],
                "before": [method_label(m) for m in methods],
                "removed": [],
                "failed": [],
                # "signInPreferences" (the default is known and goes last) or "fallback"
                # (usual order, and what Graph refuses as the default is retried once).
                "default_source": default_source,
                "default_method_id": default_id,
            }
        )
        row.result = result
        names = ", ".join(method_label(m) for m in deletable) or "none"
        run.step(f"To remove, in this order: {names}", state="done")
        present: set[str] | None = {m.id for m in methods}
    else:
        # A re-run (retry or a dead worker's request): Graph says what is still there.
        present = None

    plan: list[dict[str, Any]] = list(result["plan"])
    done_ids = {e["id"] for e in result.get("removed", [])} | {
        e["id"] for e in result.get("failed", [])
    }
    queue = [e for e in plan if e["id"] not in done_ids]
    if queue and present is None:
        index = run.step("Checking which methods are still registered…")
        present = {m.id for m in graph_methods.list_methods(run.client, user_id)}
        run.step_end(index, state="done", suffix="done")
    retried: set[str] = set()
    while queue:
        entry = queue.pop(0)
        key = f"delete:{entry['id']}"
        if key in row.completed_writes:
            continue
        if present is not None and entry["id"] not in present:
            # Gone already: removed by our own write before a crash (or by someone else).
            row.result = {**row.result, "removed": [*row.result["removed"], entry]}
            run.write_done(key)
            run.step(f"{entry['label']} was already removed", state="done")
            continue
        index = run.step(f"Removing {entry['label']}…")
        run.write_begin(key)
        try:
            graph_methods.delete_method(run.client, user_id, _method_from_entry(entry))
        except GraphNotFound:
            pass  # deleted by an earlier attempt whose answer was lost
        except GraphBadRequest as exc:
            run.write_abandon(key)
            if entry["id"] not in retried and queue:
                # Most likely the default method, refused while others remain: retry it last.
                retried.add(entry["id"])
                queue.append(entry)
                run.step_end(
                    index,
                    state="waiting",
                    suffix="refused for now; trying again after the others",
                    detail=f"{exc.code}: {exc.message}",
                )
                continue
            _record_method_failure(run, index, entry, exc)
            continue
        except (GraphThrottled, GraphTransient) as exc:
            _abandon_if_unprocessed(run, key, exc)
            raise
        except GraphError as exc:
            run.write_abandon(key)
            _record_method_failure(run, index, entry, exc)
            continue
        run.write_done(key)
        row.result = {**row.result, "removed": [*row.result["removed"], entry]}
        run.step_end(
            index,
            state="done",
            suffix="done",
            event=(
                PortalEvent.Kind.ACTION_STEP,
                {"step": "method_removed", "method": entry["label"], "method_id": entry["id"]},
            ),
        )

    revoke_ok = True
    if row.params.get("revoke_sessions"):
        revoke_ok = _revoke_step(run)

    index = run.step("Checking what remains…")
    after = graph_methods.list_methods(run.client, user_id)
    after_ids = {m.id for m in after}
    removed = [e for e in row.result["removed"] if e["id"] not in after_ids]
    not_removed = [e for e in row.result["removed"] if e["id"] in after_ids]
    failed = list(row.result["failed"]) + [
        {
            **e,
            "code": "StillRegistered",
            "message": "Graph still lists this method after the delete.",
            "request_id": "",
        }
        for e in not_removed
    ]
    remaining = [method_label(m) for m in after if m.kind.deletable]
    kept = [method_label(m) for m in after if not m.kind.deletable]
    row.result = {
        **row.result,
        "removed": removed,
        "failed": failed,
        "remaining": remaining,
        "kept": kept,
    }
    run.step_end(
        index,
        state="done" if not remaining else "failed",
        suffix="done",
        detail=("Still registered: " + ", ".join(remaining))
        if remaining
        else "Nothing remains but the password.",
    )
    if not remaining and not failed and revoke_ok:
        return _Outcome(Status.SUCCEEDED)
    if removed or row.result.get("sessions_revoked"):
        return _Outcome(Status.PARTIALLY_SUCCEEDED)
    return _Outcome(Status.FAILED)


def _read_default(run: _Run, methods: list[AuthenticationMethod]) -> tuple[str | None, str]:
    """The id of the user's default method, from Graph's sign-in preferences, and where the
    deletion order comes from: ``("<id>", "signInPreferences")``, or ``(None, "fallback")`` when
    the preferences cannot be read or name no registered method (a visible step says which).

    A Graph failure here never fails the request: the fallback order plus the retry-once of a
    refused delete still removes the default last.
    """
    if not any(m.kind.deletable for m in methods):
        return None, "fallback"
    index = run.step("Reading the default method…")
    try:
        preferences = graph_requirements.get_sign_in_preferences(run.client, run.row.target_id)
    except GraphError as exc:
        run.step_end(
            index,
            state="done",
            suffix="not available; using the usual order and retrying what Graph refuses",
            detail=f"{exc.code}: {exc.message} (request-id {exc.request_id or 'none'})",
        )
        return None, "fallback"
    default_id = graph_requirements.default_method_id(methods, preferences)
    default = next((m for m in methods if m.id == default_id), None)
    if default is None:
        raw = preferences.raw_preferred_method or "none"
        run.step_end(
            index,
            state="done",
            suffix="done",
            detail=f"Entra's default ({raw}) matches no single registered method; using the "
            "usual order and retrying what Graph refuses.",
        )
        return None, "fallback"
    run.step_end(
        index, state="done", suffix="done", detail=f"{method_label(default)}: removed last"
    )
    return default.id, "signInPreferences"


def _record_method_failure(run: _Run, index: int, entry: dict[str, Any], exc: GraphError) -> None:
    failure = {**entry, **_graph_failure(exc)}
    run.row.result = {**run.row.result, "failed": [*run.row.result["failed"], failure]}
    run.step_end(
        index,
        state="failed",
        suffix="failed",
        detail=f"{exc.code}: {exc.message} (request-id {exc.request_id or 'none'})",
        event=(
            PortalEvent.Kind.ACTION_STEP,
            {"step": "method_failed", "method": entry["label"], **_graph_failure(exc)},
        ),
    )


def _revoke_step(run: _Run) -> bool:
    """Revoke the sign-in sessions once (a re-run checks Graph's timestamp instead of repeating
    a revoke that was in flight). Returns False when Graph refused (recorded in the result)."""
    row = run.row
    key = "revoke_sessions"
    if key in row.completed_writes:
        return True
    started = run.was_in_flight(key)
    if started is not None:
        user = graph_users.get_user(run.client, row.target_id)
        valid_from = user.sign_in_sessions_valid_from
        # Graph stamps the revoke with its own clock: allow a minute of skew.
        if valid_from is not None and valid_from >= started - timedelta(seconds=60):
            run.write_done(key)
            row.result = {**row.result, "sessions_revoked": valid_from.isoformat()}
            run.step("Sign-in sessions were already revoked", state="done")
            return True
    index = run.step("Revoking sign-in sessions…")
    run.write_begin(key)
    try:
        graph_sessions.revoke_sign_in_sessions(run.client, row.target_id)
    except (GraphThrottled, GraphTransient) as exc:
        _abandon_if_unprocessed(run, key, exc)
        raise
    except GraphError as exc:
        run.write_abandon(key)
        row.result = {**row.result, "revoke_failed": _graph_failure(exc)}
        failed = list(row.result.get("failed") or [])
        failed.append({"id": "sessions", "label": "Sign-in sessions", **_graph_failure(exc)})
        row.result = {**row.result, "failed": failed}
        run.step_end(
            index,
            state="failed",
            suffix="failed",
            detail=f"{exc.code}: {exc.message} (request-id {exc.request_id or 'none'})",
        )
        return False
    run.write_done(key)
    row.result = {**row.result, "sessions_revoked": timezone.now().isoformat()}
    run.step_end(
        index,
        state="done",
        suffix="done",
        detail="Apps and browsers must sign in again; this takes a few minutes to apply.",
        event=(PortalEvent.Kind.ACTION_STEP, {"step": "sessions_revoked"}),
    )
    return True


def _run_revoke_sessions(run: _Run) -> _Outcome:
    run.row.result = {**run.row.result, "failed": list(run.row.result.get("failed") or [])}
    if _revoke_step(run):
        return _Outcome(Status.SUCCEEDED)
    failure = run.row.result["revoke_failed"]
    return _Outcome(
        Status.FAILED,
        error_code=failure["code"],
        error_message=failure["message"],
    )


def _run_issue_tap(run: _Run) -> _Outcome:
    """Create the pass within the tenant policy, put it in the vault, never anywhere else."""
    row = run.row
    key = "issue_tap"
    if key in row.completed_writes:
        return _Outcome(Status.SUCCEEDED)
    if run.was_in_flight(key) is not None:
        run.step("The worker stopped while the pass was being issued", state="failed")
        return _Outcome(
            Status.FAILED,
            error_code="OutcomeUnknown",
            error_message="The worker stopped while Graph was issuing the pass, so the pass "
            "cannot be shown. Check the person's methods, and request a new pass if needed.",
        )
    lifetime = int(row.params["lifetime_minutes"])
    usable_once = bool(row.params["usable_once"])
    kind_text = "one-time" if usable_once else "multi-use"
    index = run.step(f"Issuing a {kind_text} Temporary Access Pass for {lifetime} minutes…")
    run.write_begin(key)
    try:
        tap = graph_methods.create_temporary_access_pass(
            run.client, row.target_id, lifetime_in_minutes=lifetime, is_usable_once=usable_once
        )
    except GraphTransient as exc:
        if exc.code == "OutcomeUnknown":
            # The POST may have reached Graph: issuing again could hand out a second pass.
            run.write_done(key)  # never retried
            run.step_end(index, state="failed", suffix="outcome unknown")
            return _Outcome(Status.FAILED, error=exc)
        run.write_abandon(key)  # Graph did not process it: safe to retry later
        raise
    except GraphError:
        run.write_abandon(key)
        run.step_end(index, state="failed", suffix="failed")
        raise
    try:
        tap_vault.tap_store(
            public_id=row.public_id, requester_id=row.requester_id, pass_value=tap.pass_value
        )
    except tap_vault.TapVaultError:
        # A pass nobody can read must not stay usable: remove it from the account.
        run.write_done(key)
        withdrawn = _withdraw_tap(run, tap.id)
        run.step_end(index, state="failed", suffix="failed")
        return _Outcome(
            Status.FAILED,
            error_code="VaultUnavailable",
            error_message="The pass was issued but could not be kept for you to read, so it was "
            + (
                "withdrawn." if withdrawn else "NOT withdrawn: delete it from the person's methods."
            ),
        )
    run.write_done(key)
    expires = (tap.start or timezone.now()) + timedelta(minutes=tap.lifetime_in_minutes or lifetime)
    row.result = {
        **row.result,
        "tap_id": tap.id,
        "lifetime_minutes": tap.lifetime_in_minutes or lifetime,
        "usable_once": tap.is_usable_once if tap.is_usable_once is not None else usable_once,
        "valid_from": (tap.start or timezone.now()).isoformat(),
        "valid_until": expires.isoformat(),
        "reveal_until": (
            timezone.now() + timedelta(seconds=settings.PORTAL_TAP_REVEAL_TTL_SECONDS)
        ).isoformat(),
    }
    del tap
    run.step_end(
        index,
        state="done",
        suffix="done",
        detail="The pass is waiting, encrypted, for the requester to view it once.",
        event=(
            PortalEvent.Kind.ACTION_STEP,
            {"step": "tap_issued", "tap_id": row.result["tap_id"]},
        ),
    )
    return _Outcome(Status.SUCCEEDED)


def _withdraw_tap(run: _Run, tap_id: str) -> bool:
    method = AuthenticationMethod(
        id=tap_id,
        kind=MethodKind.TEMPORARY_ACCESS_PASS,
        odata_type="microsoft.graph.temporaryAccessPassAuthenticationMethod",
        detail="",
    )
    try:
        graph_methods.delete_method(run.client, run.row.target_id, method)
    except GraphNotFound:
        return True
    except GraphError:
        logger.warning("could not withdraw an undeliverable TAP for request %s", run.row.pk)
        return False
    return True


def _run_set_mfa_state(run: _Run) -> _Outcome:
    """Read the per-user MFA state, set it unless it already is so, read it back."""
    row = run.row
    desired = PerUserMfa(row.params["state"])
    key = f"mfa_state:{desired.value}"
    index = run.step("Reading the per-user MFA state…")
    before = graph_requirements.get_per_user_mfa_state(run.client, row.target_id)
    first_before = row.result.get("before", before.raw_state)
    run.step_end(index, state="done", suffix=before.raw_state or "unknown")
    accepted = {desired}
    if desired is PerUserMfa.ENABLED:
        accepted.add(PerUserMfa.ENFORCED)  # Graph's own promotion for users with methods
    # A write that was in flight when a worker died counts as done if Graph shows its effect.
    landed = key in row.completed_writes or (
        run.was_in_flight(key) is not None and before.state in accepted
    )
    if landed or before.state is desired:
        if landed:
            run.write_done(key)
        row.result = {**row.result, "before": first_before, "after": before.raw_state}
        note = "is now" if landed else "was already"
        run.step(f"Per-user MFA {note} {before.raw_state}", state="done")
        return _Outcome(Status.SUCCEEDED)
    index = run.step(f"Setting per-user MFA to {desired.value}…")
    run.write_begin(key)
    try:
        graph_requirements.set_per_user_mfa_state(run.client, row.target_id, desired)
    except GraphTransient as exc:
        if exc.code != "OutcomeUnknown":
            run.write_abandon(key)
        raise  # OutcomeUnknown stays in flight: the re-run reads the state first
    except GraphError:
        run.write_abandon(key)
        run.step_end(index, state="failed", suffix="failed")
        raise
    run.write_done(key)
    after = graph_requirements.get_per_user_mfa_state(run.client, row.target_id)
    row.result = {**row.result, "before": first_before, "after": after.raw_state}
    if after.state in accepted:
        detail = ""
        if after.state is not desired:
            detail = "Graph set it to enforced because the person already has methods registered."
        run.step_end(
            index,
            state="done",
            suffix=f"done ({after.raw_state})",
            detail=detail,
            event=(
                PortalEvent.Kind.ACTION_STEP,
                {"step": "mfa_state_set", "before": first_before, "after": after.raw_state},
            ),
        )
        return _Outcome(Status.SUCCEEDED)
    run.step_end(index, state="failed", suffix=f"still {after.raw_state}")
    return _Outcome(
        Status.FAILED,
        error_code="NotApplied",
        error_message=f"Graph accepted the change but still reports {after.raw_state}.",
    )


def _run_delete_method(run: _Run) -> _Outcome:
    row = run.row
    entry = {
        "id": row.params["method_id"],
        "type": row.params["method_type"],
        "phone_type": None,
        "label": row.params.get("method_label") or "method",
    }
    if entry["type"].endswith("phoneAuthenticationMethod"):
        # Phone method ids are fixed per phone type (GRAPH.md).
        entry["phone_type"] = {
            "3179e48a-750b-4051-897c-87b9720928f7": "mobile",
            "b6332ec1-7057-4abe-9331-3d72feddfe41": "alternateMobile",
            "e37fc753-ff3b-4958-9484-eaa9425c82bc": "office",
        }.get(entry["id"])
    key = f"delete:{entry['id']}"
    row.result = {"removed": [], "failed": [], **row.result}
    if key in row.completed_writes:
        return _Outcome(Status.SUCCEEDED)
    in_flight = run.was_in_flight(key) is not None
    index = run.step(f"Removing {entry['label']}…")
    run.write_begin(key)
    try:
        graph_methods.delete_method(run.client, row.target_id, _method_from_entry(entry))
    except GraphNotFound as exc:
        if not in_flight:
            run.write_abandon(key)
            run.step_end(index, state="failed", suffix="failed", detail="It is not registered.")
            row.result = {**row.result, "failed": [{**entry, **_graph_failure(exc)}]}
            return _Outcome(Status.FAILED, error=exc)
    except (GraphThrottled, GraphTransient) as exc:
        _abandon_if_unprocessed(run, key, exc)
        raise
    except GraphError as exc:
        run.write_abandon(key)
        row.result = {**row.result, "failed": [{**entry, **_graph_failure(exc)}]}
        run.step_end(
            index,
            state="failed",
            suffix="failed",
            detail=f"{exc.code}: {exc.message} (request-id {exc.request_id or 'none'})",
        )
        return _Outcome(Status.FAILED, error=exc)
    run.write_done(key)
    row.result = {**row.result, "removed": [entry]}
    run.step_end(
        index,
        state="done",
        suffix="done",
        event=(
            PortalEvent.Kind.ACTION_STEP,
            {"step": "method_removed", "method": entry["label"], "method_id": entry["id"]},
        ),
    )
    return _Outcome(Status.SUCCEEDED)


_RUNNERS: dict[str, Callable[[_Run], _Outcome]] = {
    ActionKind.REREGISTER: _run_reregister,
    ActionKind.REVOKE_SESSIONS: _run_revoke_sessions,
    ActionKind.ISSUE_TAP: _run_issue_tap,
    ActionKind.SET_MFA_STATE: _run_set_mfa_state,
    ActionKind.DELETE_METHOD: _run_delete_method,
}


# --- beat ----------------------------------------------------------------------------------------


def requests_redispatch() -> int:
    """Enqueue again every request no worker has picked up: ``pending`` rows enqueued more than
    ``PORTAL_REDISPATCH_AFTER_SECONDS`` ago, and ``running`` rows whose worker's lease ran out.
    Returns how many were dispatched (each with an ``action_redispatched`` event)."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.PORTAL_REDISPATCH_AFTER_SECONDS)
    lease_cutoff = now - timedelta(seconds=settings.PORTAL_ACTION_LEASE_SECONDS)
    stale = ActionRequest.objects.filter(
        Q(status=Status.PENDING, enqueued_at__lt=cutoff)
        | Q(status=Status.PENDING, enqueued_at__isnull=True)
        | Q(status=Status.RUNNING, heartbeat_at__lt=lease_cutoff, enqueued_at__lt=cutoff)
    ).values_list("pk", "status", "enqueued_at")
    count = 0
    for pk, status, enqueued_at in stale:
        with transaction.atomic():
            done = ActionRequest.objects.filter(
                pk=pk, status=status, enqueued_at=enqueued_at
            ).update(enqueued_at=now, updated_at=now)
            if not done:
                continue
            row = ActionRequest.objects.get(pk=pk)
            portal_event_record(
                kind=PortalEvent.Kind.ACTION_REDISPATCHED,
                detail={
                    "status": status,
                    "enqueued_at": enqueued_at.isoformat() if enqueued_at else None,
                },
                **_ticket_event_fields(row),
            )
            _enqueue_on_commit(pk)
        count += 1
    return count


def requests_expire_stale() -> int:
    """Expire requests that waited for approval longer than ``PORTAL_APPROVAL_TTL_MINUTES``.
    Returns how many (each with an ``action_expired`` event)."""
    now = timezone.now()
    cutoff = now - timedelta(minutes=settings.PORTAL_APPROVAL_TTL_MINUTES)
    count = 0
    for row in ActionRequest.objects.filter(status=Status.AWAITING_APPROVAL, created_at__lt=cutoff):
        if _expire_if_due(row, now):
            count += 1
    return count


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
